"""
The safety supervisor: state machine, watchdog hold and counters around the rules.

No rclpy: ``ros/safety_node.py`` feeds it messages and publishes what it returns, so the
whole behaviour is testable with a fake clock (integer nanoseconds).

States::

    DISARMED --arm()/reset()--> ARMED --on_estop(True)--> ESTOPPED --reset()--> ARMED
                                 (estop is latched: releasing it does not re-arm)

Only ARMED lets commands through (after :func:`limits.filter_command`). Whenever no
command was let through for the watchdog timeout, after a ``stale_state`` rejection, and
always while not ARMED, :meth:`Supervisor.tick` returns a hold command: position robots
hold the measured position captured when the hold started, velocity robots get zeros.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from enum import Enum

import numpy as np

from dexmpc_ros.core.robot_spec import RobotSpec
from dexmpc_ros.safety.limits import (
    RULES,
    CommandLimits,
    Decision,
    MeasuredState,
    filter_command,
)

logger = logging.getLogger(__name__)

#: A watchdog shorter than this many control periods would hold between two on-time
#: commands of a slow robot (10 Hz: commands 100 ms apart), so it is raised to it.
WATCHDOG_MIN_PERIODS = 1.5

#: Pseudo-rules counted when a command is blocked because the supervisor is not armed.
STATE_RULES = ('estop', 'disarmed')


class SafetyState(str, Enum):
    """Supervisor states; only ARMED passes commands."""

    DISARMED = 'DISARMED'
    ARMED = 'ARMED'
    ESTOPPED = 'ESTOPPED'


@dataclass(frozen=True)
class SupervisorConfig:
    """
    Safety supervisor settings (the safety node's ROS parameters).

    Attributes:
        command_age_budget_s: largest age now - stamp of a command [s]; older ones are dropped.
        future_tolerance_s: largest amount a command or state stamp may lie ahead of now [s].
        watchdog_timeout_s: hold when no command passed for this long [s] (at least
            1.5 control periods).
        state_timeout_s: joint_states older than this are stale: reject and hold [s].
        reset_tolerance: how far past a position limit [rad or m] a joint may be measured
            for safety/reset and safety/arm to re-arm (sensor noise, soft limits).
        start_armed: start ARMED; False starts DISARMED until safety/arm.
    """

    command_age_budget_s: float = 0.25
    future_tolerance_s: float = 0.05
    watchdog_timeout_s: float = 0.1
    state_timeout_s: float = 0.25
    reset_tolerance: float = 0.02
    start_armed: bool = True

    def __post_init__(self) -> None:
        for name in ('command_age_budget_s', 'watchdog_timeout_s', 'state_timeout_s'):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f'{name} must be finite and > 0, got {value!r}')
        for name in ('future_tolerance_s', 'reset_tolerance'):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f'{name} must be finite and >= 0, got {value!r}')
        if not isinstance(self.start_armed, bool):
            raise ValueError(f'start_armed must be a bool, got {self.start_armed!r}')


def _ns(seconds: float) -> int:
    return int(round(seconds * 1e9))


class Supervisor:
    """
    Filters commands for one robot and decides when to hold it.

    Args:
        spec: the robot (joint limits, command interface, control rate).
        config: budgets and timeouts.

    Shapes: n = len(spec.joints) (``joint_states`` order), m = actuated joints (command
    order). Times are integer nanoseconds on the caller's clock (node time or sim time).
    """

    def __init__(self, spec: RobotSpec, config: SupervisorConfig | None = None) -> None:
        self.spec = spec
        self.config = config or SupervisorConfig()
        self.limits = CommandLimits.from_spec(spec)
        self.watchdog_ns = _ns(max(self.config.watchdog_timeout_s,
                                   WATCHDOG_MIN_PERIODS * spec.period_s))
        if self.watchdog_ns > _ns(self.config.watchdog_timeout_s):
            logger.info('watchdog raised from %.3f s to %.3f s (%.1f control periods of %s)',
                        self.config.watchdog_timeout_s, self.watchdog_ns * 1e-9,
                        WATCHDOG_MIN_PERIODS, spec.name)
        self._age_budget_ns = _ns(self.config.command_age_budget_s)
        self._future_ns = _ns(self.config.future_tolerance_s)
        self._state_timeout_ns = _ns(self.config.state_timeout_s)
        self._lower = spec.limits_array('lower', actuated_only=False)
        self._upper = spec.limits_array('upper', actuated_only=False)
        self._actuated = spec.actuated_index

        self.state = SafetyState.ARMED if self.config.start_armed else SafetyState.DISARMED
        self._measured: MeasuredState | None = None
        self._measured_all: np.ndarray | None = None  # (n,) positions, joint_states order
        self._estop_input = False
        self._last_pass_ns: int | None = None
        self._hold: np.ndarray | None = None
        self._hold_forced = False

        self.rule_counts = dict.fromkeys(RULES + STATE_RULES, 0)
        self.passed = 0
        self.clamped = 0
        self.blocked = 0
        self.held = 0
        self.estops = 0
        self.last_reason = ''

    # Inputs ------------------------------------------------------------------------------
    def on_state(self, position: np.ndarray, velocity: np.ndarray, stamp_ns: int) -> None:
        """
        Take a measured state.

        Args:
            position: (n,) joint positions, ``joint_states`` order [rad or m].
            velocity: (n,) joint velocities [rad/s or m/s]; NaN where unknown.
            stamp_ns: the ``joint_states`` stamp [ns].

        Raises:
            ValueError: an array does not have n entries.
        """
        position = np.array(position, dtype=np.float64).reshape(-1)
        velocity = np.array(velocity, dtype=np.float64).reshape(-1)
        n = len(self.spec.joints)
        if position.shape != (n,) or velocity.shape != (n,):
            raise ValueError(f'{self.spec.name}: state needs {n} positions and velocities, '
                             f'got {position.shape} and {velocity.shape}')
        self._measured_all = position
        self._measured = MeasuredState(position[self._actuated], velocity[self._actuated],
                                       int(stamp_ns))

    def on_command(self, names: list[str], values: np.ndarray, stamp_ns: int,
                   now_ns: int) -> Decision:
        """
        Judge one ``command_raw``.

        Args:
            names: joint names of the command.
            values: command values as received (any length, maybe non-finite).
            stamp_ns: command stamp = stamp of the observation it came from [ns].
            now_ns: current time [ns].

        Returns:
            The decision; publish ``decision.values`` (m,) when it is not None.
        """
        if self.state is not SafetyState.ARMED:
            rule = 'estop' if self.state is SafetyState.ESTOPPED else 'disarmed'
            decision = Decision('reject', None, (rule,),
                                f'{rule}: {self.state.value}, command blocked')
        else:
            decision = filter_command(
                self.limits, names, values, stamp_ns, now_ns, self._measured,
                age_budget_ns=self._age_budget_ns, future_tolerance_ns=self._future_ns,
                state_timeout_ns=self._state_timeout_ns)
        for rule in decision.fired:
            self.rule_counts[rule] += 1
        if decision.reason:
            self.last_reason = decision.reason
        if decision.accepted:
            self._last_pass_ns = now_ns
            self._hold = None
            self._hold_forced = False
            if decision.action == 'clamp':
                self.clamped += 1
            else:
                self.passed += 1
        else:
            self.blocked += 1
            if 'stale_state' in decision.fired:
                self._hold_forced = True  # stale input is unsafe: hold now, not after the watchdog
        return decision

    def on_estop(self, active: bool, now_ns: int) -> None:
        """Take the e-stop input; True latches ESTOPPED until :meth:`reset`."""
        self._estop_input = bool(active)
        if active and self.state is not SafetyState.ESTOPPED:
            logger.warning('e-stop at %.3f s: holding until reset', now_ns * 1e-9)
            self.state = SafetyState.ESTOPPED
            self.estops += 1
            self.last_reason = 'estop: e-stop received'

    def reset(self, now_ns: int) -> tuple[bool, str]:
        """
        Re-arm after an e-stop (or from DISARMED).

        Refused while the e-stop input is still asserted or while the measured state is
        missing, stale, or outside the position limits (plus ``reset_tolerance``).

        Returns:
            (ok, message for the caller).
        """
        if self.state is SafetyState.ARMED:
            return True, 'already armed'
        if self._estop_input:
            return False, 'reset refused: e-stop still asserted (publish false on safety/estop)'
        return self._arm_if_safe(now_ns, 'reset')

    def arm(self, now_ns: int) -> tuple[bool, str]:
        """DISARMED -> ARMED under the same state checks as :meth:`reset`; not from ESTOPPED."""
        if self.state is SafetyState.ARMED:
            return True, 'already armed'
        if self.state is SafetyState.ESTOPPED:
            return False, 'arm refused: e-stop latched, call safety/reset'
        return self._arm_if_safe(now_ns, 'arm')

    # Output ------------------------------------------------------------------------------
    def tick(self, now_ns: int) -> np.ndarray | None:
        """
        Watchdog, called at the control rate.

        Returns:
            The (m,) hold command when a hold is due (not ARMED, stale state, or no command
            passed within the watchdog timeout), else None. A position robot without any
            measured state cannot be held: None, and the reason is recorded.
        """
        if not self.holding_due(now_ns):
            return None
        if self._hold is None:
            self._hold = self._capture_hold()
            if self._hold is None:
                self.last_reason = 'hold: no joint_states yet, no position to hold'
                return None
            if self.state is SafetyState.ARMED and not self._hold_forced:
                self.last_reason = 'watchdog: no valid command, holding'
        self.held += 1
        return self._hold.copy()

    def holding_due(self, now_ns: int) -> bool:
        """True when :meth:`tick` at ``now_ns`` should command a hold."""
        if self.state is not SafetyState.ARMED or self._hold_forced:
            return True
        return self._last_pass_ns is None or now_ns - self._last_pass_ns > self.watchdog_ns

    @property
    def measured_stamp_ns(self) -> int | None:
        """Stamp of the newest measured state [ns], None before the first."""
        return None if self._measured is None else self._measured.stamp_ns

    def stats(self) -> dict[str, object]:
        """Counters for diagnostics: state, passed/clamped/blocked/held, rule/<name>, ..."""
        stats: dict[str, object] = {
            'state': self.state.value, 'passed': self.passed, 'clamped': self.clamped,
            'blocked': self.blocked, 'held': self.held, 'estops': self.estops,
            'holding': self._hold is not None,
        }
        stats.update({f'rule/{rule}': count for rule, count in self.rule_counts.items()})
        stats['last_reason'] = self.last_reason
        return stats

    # Internals ---------------------------------------------------------------------------
    def _capture_hold(self) -> np.ndarray | None:
        if self.limits.interface == 'velocity':
            return np.zeros(len(self.limits.names))
        if self._measured is None or not np.isfinite(self._measured.position).all():
            return None
        return self._measured.position.copy()

    def _arm_if_safe(self, now_ns: int, action: str) -> tuple[bool, str]:
        problem = self._state_problem(now_ns)
        if problem:
            return False, f'{action} refused: {problem}'
        previous = self.state
        self.state = SafetyState.ARMED
        logger.info('%s: %s -> ARMED', action, previous.value)
        return True, f'{previous.value} -> ARMED'

    def _state_problem(self, now_ns: int) -> str:
        """Why the measured state does not allow arming ('' when it does)."""
        if self._measured is None or self._measured_all is None:
            return 'no joint_states received'
        age = now_ns - self._measured.stamp_ns
        if age > self._state_timeout_ns:
            return f'joint_states {age * 1e-9:.3f} s old'
        position = self._measured_all
        if not np.isfinite(position).all():
            return 'joint_states position not finite'
        tol = self.config.reset_tolerance
        outside = np.flatnonzero((position < self._lower - tol) | (position > self._upper + tol))
        if outside.size:
            return 'outside limits: ' + ', '.join(
                f'{self.spec.joints[i].name}={position[i]:.4g} not in '
                f'[{self._lower[i]:.4g}, {self._upper[i]:.4g}]' for i in outside)
        return ''
