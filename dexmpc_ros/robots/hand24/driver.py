"""
The 24-DoF Shadow hand under ros2_control: joint-name map, coupled joints, state watchdog.

The real hand runs its own controller manager (Shadow's stack, hardware.md §3.2); our
hardware node is a *client*: it publishes the supervisor's ``command`` to a controller
(``<ctrl>/commands`` Float64MultiArray or ``<ctrl>/joint_trajectory``) and turns the
hand's ``joint_states`` into the twin's. This module holds everything of that except rclpy.

Names. The spec and the twin use Shadow names without side prefix (``FFJ3``, 24 joints in
``config/robots/hand24.yaml`` order); the hand uses prefixed names (``rh_FFJ3``). The map
is data: ``driver.joint_names`` (spec joint -> hand joint) in the robot YAML. A controller's
``joints:`` list may use either kind of name: hand names on the real hand, spec names on
the simulated (``mock_components``) system of ``urdf/hand24.urdf``.

Coupled distal joints. In FF, MF, RF and LF the distal J1 and middle J2 share one tendon:
J1 ~= J2 while the finger moves freely.

* twin (gymnasium's MJCF): J1 has no actuator; a fixed tendon keeps 0.00705 J1 - 0.00805 J2
  within +-1 mm, so J1 follows J2. Commands are the 20 actuated joints; J1 is never
  commanded but is measured (24 positions in ``joint_states``).
* real hand: the position controllers drive a virtual joint **J0 = J1 + J2**
  (``rh_FFJ0``, 0..180 deg); the trajectory controller names J1 and J2 separately and
  forms J0 itself. ``joint_states`` carries J1 and J2 (older setups only J0).
* mapping (``driver.coupled_joints``): a J2 command c becomes J0 = 2 c for a controller
  that lists ``rh_FFJ0`` and J1 = J2 = c for one that lists ``rh_FFJ1``/``rh_FFJ2``; a
  state with J0 only becomes J1 = J2 = J0 / 2.

Sign: ``driver.joint_signs`` (optional, default +1) flips a joint whose positive
direction differs between twin and hand (THJ1: the MuJoCo model flexes it negative); the
YAML leaves it unset until checked on the hand.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from dexmpc_ros.core.robot_spec import RobotSpec
from dexmpc_ros.robots.driver import DriverState, WrongDeviceError

SILENT_CONTROLLER = 'silent controller'


class MissingJointError(WrongDeviceError):
    """A received ``joint_states`` lacks a joint the twin needs; the message names it."""


@dataclass(frozen=True)
class ShadowHandConfig:
    """
    Settings of the hand's hardware node.

    Attributes:
        controller: the hand's controller our commands go to.
        command_mode: ``trajectory`` (``<controller>/joint_trajectory``) or ``forward``
            (``<controller>/commands``, Float64MultiArray in the controller's joint order).
        state_timeout_s: ``joint_states`` silent this long = the controller is dead [s].
        point_time_s: ``time_from_start`` of the one trajectory point we send [s]
            (the control period, so the hand arrives when the next command comes).
    """

    controller: str = 'rh_trajectory_controller'
    command_mode: str = 'trajectory'
    state_timeout_s: float = 0.5
    point_time_s: float = 0.1

    def __post_init__(self) -> None:
        if not self.controller or '/' in self.controller.strip('/'):
            raise ValueError(f'ShadowHandConfig.controller must be a controller name, got '
                             f'{self.controller!r}')
        if self.command_mode not in ('trajectory', 'forward'):
            raise ValueError(f"ShadowHandConfig.command_mode must be 'trajectory' or "
                             f"'forward', got {self.command_mode!r}")
        for name in ('state_timeout_s', 'point_time_s'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f'ShadowHandConfig.{name} must be finite and > 0, got '
                                 f'{value}')


@dataclass(frozen=True)
class HandJointMap:
    """
    Twin (spec) joint names <-> the hand's joint names, with the coupled distal joints.

    Attributes:
        twin_names: all spec joints, ``joint_states`` order (24).
        command_names: the actuated spec joints, command order (20).
        hardware_names: spec joint -> hand joint (``FFJ3`` -> ``rh_FFJ3``), all 24.
        coupled: virtual hand joint -> (distal, middle) spec joints
            (``rh_FFJ0`` -> (``FFJ1``, ``FFJ2``)); J0 = J1 + J2.
        signs: spec joint -> +1.0 or -1.0 (hand position = sign * twin position).
    """

    twin_names: tuple[str, ...]
    command_names: tuple[str, ...]
    hardware_names: Mapping[str, str]
    coupled: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    signs: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [n for n in self.twin_names if n not in self.hardware_names]
        if missing:
            raise ValueError(f'hand joint map: no hand name for spec joints {missing}')
        unknown = sorted(set(self.hardware_names) - set(self.twin_names))
        if unknown:
            raise ValueError(f'hand joint map: {unknown} are not spec joints')
        hardware = list(self.hardware_names.values())
        if len(set(hardware)) != len(hardware):
            raise ValueError(f'hand joint map: duplicate hand names in {hardware}')
        for virtual, pair in self.coupled.items():
            if len(pair) != 2:
                raise ValueError(f'hand joint map: coupled {virtual} needs [distal, middle], '
                                 f'got {pair}')
            distal, middle = pair
            if distal in self.command_names or middle not in self.command_names:
                raise ValueError(f'hand joint map: coupled {virtual}: {distal} must be '
                                 f'passive and {middle} actuated')
            if virtual in hardware:
                raise ValueError(f'hand joint map: virtual {virtual} is also a real joint')
        for name, sign in self.signs.items():
            if name not in self.twin_names or sign not in (1.0, -1.0):
                raise ValueError(f'hand joint map: sign of {name!r} must be +1 or -1 for a '
                                 f'spec joint, got {sign!r}')
        passive = set(self.twin_names) - set(self.command_names)
        driven_by = {pair[0] for pair in self.coupled.values()}
        if passive - driven_by:
            raise ValueError(f'hand joint map: passive joints {sorted(passive - driven_by)} '
                             f'are in no coupled pair')

    @classmethod
    def from_spec(cls, spec: RobotSpec) -> HandJointMap:
        """Build the map from ``spec.driver`` (``joint_names``, ``coupled_joints``, ...)."""
        driver = spec.driver
        where = f'{spec.source or spec.name}: driver'
        if 'joint_names' not in driver:
            raise ValueError(f'{where}: missing joint_names (spec joint -> hand joint)')
        coupled = {str(k): tuple(v) for k, v in driver.get('coupled_joints', {}).items()}
        signs = {str(k): float(v) for k, v in driver.get('joint_signs', {}).items()}
        try:
            return cls(tuple(spec.joint_names), tuple(spec.command_names),
                       dict(driver['joint_names']), coupled, signs)
        except ValueError as exc:
            raise ValueError(f'{where}: {exc}') from exc

    def sign(self, twin_name: str) -> float:
        """+1 or -1: hand position = sign * twin position."""
        return self.signs.get(twin_name, 1.0)

    def _twin_of(self) -> dict[str, str]:
        """Hand name and spec name -> spec name."""
        lookup = {hw: tw for tw, hw in self.hardware_names.items()}
        lookup.update({tw: tw for tw in self.twin_names})
        return lookup

    def command_values(self, command: np.ndarray, controller_joints: Sequence[str]
                       ) -> list[float]:
        """
        A twin command in a controller's joint order (``Float64MultiArray.data``).

        Args:
            command: (20,) position targets [rad], ``command_names`` order.
            controller_joints: the controller's ``joints:`` parameter: hand names
                (``rh_FFJ3``, virtual ``rh_FFJ0``) or spec names (simulated system).

        Returns:
            one target per controller joint [rad]: a virtual J0 gets 2 x the J2 target
            (J1 := J2), a passive distal J1 the J2 target, the rest their own target.

        Raises:
            ValueError: the command has the wrong length, or a controller joint is
                unknown (named).
        """
        command = np.asarray(command, dtype=np.float64)
        if command.shape != (len(self.command_names),):
            raise ValueError(f'hand command must have shape ({len(self.command_names)},), '
                             f'got {command.shape}')
        target = dict(zip(self.command_names, command.tolist()))
        for distal, middle in self.coupled.values():
            target[distal] = target[middle]                   # free-finger coupling J1 = J2
        twin_of = self._twin_of()
        values = []
        for joint in controller_joints:
            if joint in self.coupled:
                distal, middle = self.coupled[joint]
                values.append(self.sign(distal) * target[distal]
                              + self.sign(middle) * target[middle])
            elif joint in twin_of:
                twin = twin_of[joint]
                values.append(self.sign(twin) * target[twin])
            else:
                raise ValueError(f'controller joint {joint!r} is no hand joint (known: hand '
                                 f'names like {next(iter(self.hardware_names.values()))!r}, '
                                 f'virtual {sorted(self.coupled)}, or spec names)')
        return values

    def trajectory_point(self, command: np.ndarray, controller_joints: Sequence[str],
                         time_from_start_s: float) -> tuple[list[str], list[float], float]:
        """
        One JointTrajectory point for a trajectory controller.

        Returns:
            (joint_names, positions [rad], time_from_start [s]): the controller's joints in
            its order, ready for ``JointTrajectory.joint_names`` and ``points[0]``
            (no velocities: the controller's default "stop at the end" holds).
        """
        if not (math.isfinite(time_from_start_s) and time_from_start_s > 0):
            raise ValueError(f'time_from_start_s must be > 0, got {time_from_start_s}')
        names = list(controller_joints)
        return names, self.command_values(command, names), float(time_from_start_s)

    def twin_state(self, names: Sequence[str], position: Sequence[float],
                   velocity: Sequence[float] = (), effort: Sequence[float] = (),
                   stamp: float | None = None) -> DriverState:
        """
        A ros2_control ``joint_states`` (any order, hand or spec names) in the twin's order.

        Args:
            names, position, velocity, effort: the JointState fields; velocity and effort
                may be empty (-> NaN), else they must match ``names`` in length.
            stamp: time.monotonic() of receipt [s] (default: now).

        Returns:
            DriverState with the 24 spec joints, SI units, twin sign convention.

        Raises:
            MissingJointError: a spec joint is in neither its hand nor spec name nor (for
                a coupled distal/middle joint) a virtual J0; the message names it.
            ValueError: the field lengths disagree.
        """
        n = len(names)
        fields = {'position': position, 'velocity': velocity, 'effort': effort}
        arrays = {}
        for key, values in fields.items():
            if len(values) not in ((n,) if key == 'position' else (0, n)):
                raise ValueError(f'joint_states: {len(values)} {key} values for {n} names')
            arrays[key] = np.asarray(values, dtype=np.float64) if len(values) \
                else np.full(n, np.nan)
        index = {name: i for i, name in enumerate(names)}
        virtual_of = {j: v for v, pair in self.coupled.items() for j in pair}
        out = {key: np.empty(len(self.twin_names)) for key in fields}
        for k, twin in enumerate(self.twin_names):
            hw = self.hardware_names[twin]
            if hw in index or twin in index:
                i = index[hw] if hw in index else index[twin]
                for key in fields:
                    out[key][k] = self.sign(twin) * arrays[key][i]
            elif virtual_of.get(twin) in index:
                i = index[virtual_of[twin]]                   # J0 only: J1 = J2 = J0 / 2
                out['position'][k] = self.sign(twin) * arrays['position'][i] / 2
                out['velocity'][k] = self.sign(twin) * arrays['velocity'][i] / 2
                out['effort'][k] = np.nan                     # not split-able
            else:
                raise MissingJointError(
                    f'joint_states lacks {hw} (spec joint {twin})',
                    'check that the hand\'s joint_state_broadcaster runs and that the side '
                    'prefix (rh_/lh_) matches driver.joint_names in config/robots/hand24.yaml')
        return DriverState(self.twin_names, out['position'], out['velocity'], out['effort'],
                           time.monotonic() if stamp is None else stamp)


@dataclass(frozen=True)
class WatchdogStatus:
    """
    Result of one :meth:`StateWatchdog.check`.

    Attributes:
        silent: no state for longer than the timeout (or never, past the timeout).
        age_s: seconds since the last state (since start when none came yet).
        event: ``tripped`` on the second check in a row that finds it silent (the node
            sends ONE e-stop request), ``recovered`` on the first state after silence, else None.
        fault: ``'silent controller'`` while silent, else ''.
    """

    silent: bool
    age_s: float
    event: str | None
    fault: str


class StateWatchdog:
    """
    Trips when ``joint_states`` stop: the hand's controller manager is dead or wedged.

    The node calls :meth:`feed` on every ``joint_states`` and :meth:`check` on a timer; a
    ``tripped`` event becomes an e-stop request to the safety supervisor (which latches it
    until reset), ``recovered`` a diagnostics message. Times come from ``clock``.

    It trips on the second check in a row past the timeout with no state between: when a
    loaded machine stalls the node's executor, the first check after the stall runs before
    the states queued behind it, which are no silence (tripping on them, then "recovering"
    and tripping again, sent two e-stops for one silence). The cost is one check period.

    Args:
        timeout_s: longest allowed silence [s].
        clock: monotonic seconds (default time.monotonic); the silence before the first
            state is counted from construction.
    """

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic):
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f'watchdog timeout_s must be finite and > 0, got {timeout_s}')
        self.timeout_s = timeout_s
        self._clock = clock
        self._last = clock()
        self._silent = False
        self._overdue = False  # the last check found it past the timeout
        self._pending_recovery = False

    def feed(self) -> None:
        """A state arrived now."""
        self._last = self._clock()
        self._overdue = False
        if self._silent:
            self._silent = False
            self._pending_recovery = True

    def check(self) -> WatchdogStatus:
        """Whether the controller is silent, and whether that changed since the last check."""
        age = self._clock() - self._last
        event = None
        if age > self.timeout_s and not self._silent:
            if self._overdue:
                self._silent, self._pending_recovery, event = True, False, 'tripped'
            self._overdue = True
        elif self._pending_recovery:
            self._pending_recovery, event = False, 'recovered'
        return WatchdogStatus(self._silent, age, event, SILENT_CONTROLLER if self._silent else '')


def controller_joints(controllers: Mapping, controller: str) -> list[str]:
    """
    The ``joints:`` list of one controller in a parsed controllers YAML.

    Raises:
        ValueError: the controller or its joints are missing (named).
    """
    params = (controllers.get(controller) or {}).get('ros__parameters') or {}
    joints = params.get('joints')
    if not isinstance(joints, list) or not joints:
        known = sorted(k for k in controllers if k != 'controller_manager')
        raise ValueError(f'controllers YAML: {controller}.ros__parameters.joints is missing '
                         f'(controllers: {known})')
    return [str(j) for j in joints]
