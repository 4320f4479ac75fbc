"""
Robot specification: the single source of joint names, limits and rates.

``config/robots/<robot>.yaml`` is parsed into a :class:`RobotSpec`. The URDF, the
MuJoCo twin, the hardware driver and the safety supervisor all read limits from here
(a test checks that URDF, YAML and twin agree).

YAML layout::

    name: widowx
    description: ...
    urdf: wx250s.urdf              # file in urdf/
    command_interface: position    # position | velocity
    control_rate_hz: 20.0
    joints:                        # order = joint_states order
      - name: waist
        lower: -3.14               # rad (or m for prismatic); .inf for continuous joints
        upper: 3.14
        velocity: 3.14             # rad/s, |qdot| limit
        max_step: 0.15             # rad per control step, |q_cmd - q_measured| limit
        effort: 10.0               # N m (or N)
        actuated: true             # false: coupled/passive, never commanded
    default_pose: {waist: 0.0, ...}   # rad; missing joints default to mid-range
    safety:                        # optional limits beyond the joints' (safety/clamp_rules.py)
      workspace:                   # end-effector box, robot base frame
        kinematics: wx250s         # forward kinematics (robots/kinematics.py KINEMATICS)
        lower: [-0.25, -0.65, 0.01]   # m
        upper: [0.75, 0.65, 0.80]     # m
        margin: 0.0                # m, commands stay this far inside
        brake_time: 0.1            # s, + the distance covered at the measured speed
      body_rate:                   # floating-base robots (roach), body frame
        roll_pitch: 6.0            # rad/s: above it the body tumbles, legs stop
        yaw: 3.0                   # rad/s: above it the turn is not tightened
        left: left_legs            # joints whose speed difference right - left turns the
        right: right_legs          #   body counter-clockwise (positive yaw)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dexmpc_ros.core.errors import ConfigError
from dexmpc_ros.core.yaml_io import check_type, load_yaml_mapping, optional, require

COMMAND_INTERFACES = ('position', 'velocity')


@dataclass(frozen=True)
class JointLimit:
    """
    Limits of one joint.

    Attributes:
        name: joint name, as in the URDF and in ``joint_states``.
        lower: lowest position [rad or m]; ``-inf`` for continuous joints.
        upper: highest position [rad or m]; ``+inf`` for continuous joints.
        velocity: largest speed [rad/s or m/s].
        max_step: largest change of command per control step relative to the measured
            state [rad, m, or rad/s for velocity-commanded robots].
        effort: largest effort [N m or N].
        actuated: False for coupled or passive joints that no command names.
    """

    name: str
    lower: float
    upper: float
    velocity: float
    max_step: float
    effort: float
    actuated: bool = True

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError('joint name must not be empty')
        if not self.lower < self.upper:
            raise ValueError(f'joint {self.name}: lower {self.lower} must be < upper {self.upper}')
        for attr in ('velocity', 'max_step', 'effort'):
            value = getattr(self, attr)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f'joint {self.name}: {attr} must be finite and > 0, got {value}')


@dataclass(frozen=True)
class WorkspaceBox:
    """
    Axis-aligned box the end effector must stay in (``safety.workspace``).

    Attributes:
        kinematics: name of the forward kinematics (``robots/kinematics.py: KINEMATICS``).
        lower: (x, y, z) lower corner in the robot base frame [m].
        upper: (x, y, z) upper corner [m].
        margin: commands keep the end effector this far inside the box [m].
        brake_time: and further inside by the distance the end effector covers in this
            time at the measured joint speeds [s], so the arm's overshoot while it brakes
            stays inside the box.
    """

    kinematics: str
    lower: tuple[float, float, float]
    upper: tuple[float, float, float]
    margin: float = 0.0
    brake_time: float = 0.0

    def __post_init__(self) -> None:
        if len(self.lower) != 3 or len(self.upper) != 3:
            raise ValueError(f'workspace lower/upper need 3 values each, got {self.lower} '
                             f'and {self.upper}')
        if not all(math.isfinite(v) for v in (*self.lower, *self.upper)) or \
                not all(lo < hi for lo, hi in zip(self.lower, self.upper)):
            raise ValueError(f'workspace needs finite lower < upper, got {self.lower} and '
                             f'{self.upper}')
        if not (math.isfinite(self.margin) and self.margin >= 0 and all(
                hi - lo > 2 * self.margin for lo, hi in zip(self.lower, self.upper))):
            raise ValueError(f'workspace margin must be >= 0 and leave a box inside, got '
                             f'{self.margin}')
        if not (math.isfinite(self.brake_time) and self.brake_time >= 0):
            raise ValueError(f'workspace brake_time must be finite and >= 0, got '
                             f'{self.brake_time}')


@dataclass(frozen=True)
class BodyRateLimit:
    """
    Body angular-rate limits of a floating-base robot (``safety.body_rate``).

    Attributes:
        roll_pitch: largest |roll rate| and |pitch rate| [rad/s] before the legs stop.
        yaw: largest |yaw rate| [rad/s] before a turn may not be tightened.
        left: joint on the left side (its speed minus the right's turns clockwise).
        right: joint on the right side.
    """

    roll_pitch: float
    yaw: float
    left: str
    right: str

    def __post_init__(self) -> None:
        for name in ('roll_pitch', 'yaw'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f'body_rate.{name} must be finite and > 0, got {value}')


@dataclass(frozen=True)
class RobotSpec:
    """
    One robot: joints, limits, rates, default pose.

    Attributes:
        name: robot key (``widowx``, ``hand24``, ``roach``).
        joints: every joint in ``joint_states`` order.
        command_interface: ``position`` (targets in rad/m) or ``velocity`` (rad/s).
        control_rate_hz: rate of ``command`` and ``joint_states`` [Hz].
        default_pose: position per joint at episode start [rad or m].
        description: one line for humans.
        urdf: file name under ``urdf/``.
        driver: free-form driver settings (port, baud rate, ...), read by drivers only.
        workspace: end-effector box enforced by the safety supervisor, or None.
        body_rate: body angular-rate limits enforced by the safety supervisor, or None.
        source: the YAML file it came from ('' when built in code), for error messages.
    """

    name: str
    joints: tuple[JointLimit, ...]
    command_interface: str
    control_rate_hz: float
    default_pose: tuple[float, ...]
    description: str = ''
    urdf: str = ''
    driver: dict = field(default_factory=dict)
    workspace: WorkspaceBox | None = None
    body_rate: BodyRateLimit | None = None
    source: str = ''

    def __post_init__(self) -> None:
        if self.command_interface not in COMMAND_INTERFACES:
            raise ValueError(f'robot {self.name}: command_interface must be one of '
                             f'{COMMAND_INTERFACES}, got {self.command_interface!r}')
        if not (self.control_rate_hz > 0 and math.isfinite(self.control_rate_hz)):
            raise ValueError(f'robot {self.name}: control_rate_hz must be > 0, '
                             f'got {self.control_rate_hz}')
        names = [j.name for j in self.joints]
        if len(set(names)) != len(names):
            raise ValueError(f'robot {self.name}: duplicate joint names in {names}')
        if len(self.default_pose) != len(self.joints):
            raise ValueError(f'robot {self.name}: default_pose has {len(self.default_pose)} '
                             f'values for {len(self.joints)} joints')
        if not self.actuated_joints:
            raise ValueError(f'robot {self.name}: no actuated joint')
        if self.body_rate is not None:
            for side in (self.body_rate.left, self.body_rate.right):
                if side not in self.command_names:
                    raise ValueError(f'robot {self.name}: body_rate joint {side!r} is not an '
                                     f'actuated joint')

    # Derived views, all in joint order. -----------------------------------------------
    @property
    def joint_names(self) -> list[str]:
        """All joint names, ``joint_states`` order."""
        return [j.name for j in self.joints]

    @property
    def actuated_joints(self) -> tuple[JointLimit, ...]:
        """The joints a command names, in command order."""
        return tuple(j for j in self.joints if j.actuated)

    @property
    def command_names(self) -> list[str]:
        """Joint names a ``command`` carries, in order."""
        return [j.name for j in self.actuated_joints]

    @property
    def period_s(self) -> float:
        """Control period [s]."""
        return 1.0 / self.control_rate_hz

    def limits_array(self, attr: str, actuated_only: bool = True) -> np.ndarray:
        """Return one limit attribute as a float64 vector (command order by default)."""
        joints = self.actuated_joints if actuated_only else self.joints
        return np.array([getattr(j, attr) for j in joints], dtype=np.float64)

    @property
    def actuated_index(self) -> np.ndarray:
        """Indices of the actuated joints within ``joint_names``."""
        return np.array([i for i, j in enumerate(self.joints) if j.actuated], dtype=np.int64)

    @property
    def default_command(self) -> np.ndarray:
        """The command that holds the default pose (zeros for velocity robots)."""
        if self.command_interface == 'velocity':
            return np.zeros(len(self.actuated_joints))
        return np.asarray(self.default_pose, dtype=np.float64)[self.actuated_index]


def config_dir() -> Path:
    """
    Locate the package's ``config/`` directory.

    Looks at ``$DEXMPC_CONFIG_DIR``, then the source tree (editable install or a
    checkout), then ``share/dexmpc_ros/config`` of an installed package (colcon or pip).
    """
    import os
    import sys

    env = os.environ.get('DEXMPC_CONFIG_DIR')
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / 'config')
    candidates.append(Path(sys.prefix) / 'share' / 'dexmpc_ros' / 'config')
    try:
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory('dexmpc_ros')) / 'config')
    except Exception:  # noqa: BLE001 - ament index absent or package not indexed
        pass
    for candidate in candidates:
        if (candidate / 'robots').is_dir():
            return candidate
    raise ConfigError('cannot find the dexmpc_ros config/ directory; set DEXMPC_CONFIG_DIR '
                      f'(looked in: {", ".join(str(c) for c in candidates)})')


def share_dir() -> Path:
    """The directory holding config/, urdf/ and launch/ (source tree or installed share)."""
    return config_dir().parent


def available_robots() -> list[str]:
    """Names of every robot YAML under ``config/robots``."""
    return sorted(p.stem for p in (config_dir() / 'robots').glob('*.yaml'))


def load_robot_spec(name_or_path: str | Path) -> RobotSpec:
    """
    Load a robot spec by name (``widowx``) or by YAML path.

    Raises:
        ConfigError: the robot is unknown or its YAML is malformed (file and key named).
    """
    path = Path(name_or_path)
    if path.suffix not in ('.yaml', '.yml'):
        path = config_dir() / 'robots' / f'{name_or_path}.yaml'
        if not path.is_file():
            raise ConfigError(f'unknown robot {name_or_path!r}; available: '
                              f'{", ".join(available_robots())}')
    data = load_yaml_mapping(path)
    return parse_robot_spec(data, str(path))


def parse_robot_spec(data: dict, source: str) -> RobotSpec:
    """Build a :class:`RobotSpec` from parsed YAML; errors name ``source`` and the key."""
    where = f'{source}: '
    joints_raw = require(data, 'joints', list, where)
    joints = []
    for i, raw in enumerate(joints_raw):
        jwhere = f'{source}: joints[{i}]'
        if not isinstance(raw, dict):
            raise ConfigError(f'{jwhere}: expected a mapping, got {type(raw).__name__}')
        try:
            joints.append(JointLimit(
                name=require(raw, 'name', str, jwhere),
                lower=require(raw, 'lower', float, jwhere),
                upper=require(raw, 'upper', float, jwhere),
                velocity=require(raw, 'velocity', float, jwhere),
                max_step=require(raw, 'max_step', float, jwhere),
                effort=require(raw, 'effort', float, jwhere),
                actuated=optional(raw, 'actuated', bool, jwhere, True),
            ))
        except ValueError as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f'{jwhere}: {exc}') from exc
    pose_raw = optional(data, 'default_pose', dict, where, {})
    unknown = set(pose_raw) - {j.name for j in joints}
    if unknown:
        raise ConfigError(f'{source}: default_pose names unknown joints {sorted(unknown)}')
    pose = []
    for j in joints:
        if j.name in pose_raw:
            value = require(pose_raw, j.name, float, f'{source}: default_pose')
            if not j.lower <= value <= j.upper:
                raise ConfigError(f'{source}: default_pose.{j.name}: {value} outside '
                                  f'[{j.lower}, {j.upper}]')
        else:
            value = 0.0 if not math.isfinite(j.lower + j.upper) else (j.lower + j.upper) / 2
        pose.append(float(value))
    try:
        return RobotSpec(
            name=require(data, 'name', str, where),
            joints=tuple(joints),
            command_interface=require(data, 'command_interface', str, where),
            control_rate_hz=require(data, 'control_rate_hz', float, where),
            default_pose=tuple(pose),
            description=optional(data, 'description', str, where, ''),
            urdf=optional(data, 'urdf', str, where, ''),
            driver=optional(data, 'driver', dict, where, {}),
            **_parse_safety(optional(data, 'safety', dict, where, {}), source),
            source=source,
        )
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f'{source}: {exc}') from exc


def _parse_safety(raw: dict, source: str) -> dict:
    """``safety:`` section -> RobotSpec keyword arguments (workspace, body_rate)."""
    where = f'{source}: safety'
    _only(raw, ('workspace', 'body_rate'), where)
    out: dict = {}
    box = optional(raw, 'workspace', dict, where, None)
    if box is not None:
        bwhere = f'{where}.workspace'
        _only(box, ('kinematics', 'lower', 'upper', 'margin', 'brake_time'), bwhere)
        kinematics = require(box, 'kinematics', str, bwhere)  # name checked by safety/
        corners = {key: tuple(check_type(v, float, f'{bwhere}.{key}[{i}]')
                              for i, v in enumerate(require(box, key, list, bwhere)))
                   for key in ('lower', 'upper')}
        out['workspace'] = _built(WorkspaceBox, bwhere, kinematics=kinematics,
                                  margin=optional(box, 'margin', float, bwhere, 0.0),
                                  brake_time=optional(box, 'brake_time', float, bwhere, 0.0),
                                  **corners)
    rate = optional(raw, 'body_rate', dict, where, None)
    if rate is not None:
        rwhere = f'{where}.body_rate'
        _only(rate, ('roll_pitch', 'yaw', 'left', 'right'), rwhere)
        left, right = require(rate, 'left', str, rwhere), require(rate, 'right', str, rwhere)
        if left == right:
            raise ConfigError(f'{rwhere}: left and right are both {left!r}')
        out['body_rate'] = _built(BodyRateLimit, rwhere,
                                  roll_pitch=require(rate, 'roll_pitch', float, rwhere),
                                  yaw=require(rate, 'yaw', float, rwhere),
                                  left=left, right=right)
    return out


def _only(mapping: dict, known: tuple[str, ...], where: str) -> None:
    unknown = set(mapping) - set(known)
    if unknown:
        raise ConfigError(f'{where}: unknown keys {sorted(unknown)} (known: '
                          f'{", ".join(known)})')


def _built(cls: type, where: str, **fields: object) -> object:
    try:
        return cls(**fields)
    except ValueError as exc:
        raise ConfigError(f'{where}: {exc}') from exc
