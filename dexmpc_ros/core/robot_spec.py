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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dexmpc_ros.core.errors import ConfigError
from dexmpc_ros.core.yaml_io import load_yaml_mapping, optional, require

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
    """

    name: str
    joints: tuple[JointLimit, ...]
    command_interface: str
    control_rate_hz: float
    default_pose: tuple[float, ...]
    description: str = ''
    urdf: str = ''
    driver: dict = field(default_factory=dict)

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
        )
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f'{source}: {exc}') from exc
