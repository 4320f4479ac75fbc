"""
The safety supervisor: state machine, heartbeats, watchdog hold and counters around the rules.

No rclpy: ``ros/safety_node.py`` feeds it messages and publishes what it returns, so the
whole behaviour is testable with a fake clock (integer nanoseconds).

States::

    DISARMED --arm() / auto_arm on first valid state--> ARMED
    ARMED --on_estop(True) or joint_states silent for heartbeat_timeout--> ESTOPPED
    ESTOPPED --reset() (e-stop released, fresh state within limits)--> ARMED

ESTOPPED is latched: releasing the e-stop or the driver coming back does not re-arm.
Only ARMED lets commands through (after :func:`filter.filter_command`). :meth:`tick` returns
a hold command whenever no command passed for the watchdog timeout (the controller died or
hung), right after a ``stale_state``/``plan``/``uncertainty`` rejection, and always while not
ARMED: position robots hold the measured position captured when the hold started (led by
``hold_lead_s`` of the measured speed, so a moving servo brakes without springing back),
velocity robots get zeros (no thrust).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from dexmpc_ros.core.robot_spec import RobotSpec
from dexmpc_ros.safety.filter import Decision, FilterSettings, Inputs, filter_command
from dexmpc_ros.safety.limits import (
    RULES,
    BodyRate,
    CommandLimits,
    MeasuredState,
    RateBucket,
    StampedValue,
)
from dexmpc_ros.safety.rejection_rules import plan_violation

logger = logging.getLogger(__name__)

#: A watchdog shorter than this many control periods would hold between two on-time
#: commands of a slow robot (10 Hz: commands 100 ms apart), so it is raised to it.
WATCHDOG_MIN_PERIODS = 1.5

#: Pseudo-rules counted when a command is blocked because the supervisor is not armed,
#: and the heartbeat event (joint_states went silent while armed).
STATE_RULES = ('estop', 'disarmed', 'state_lost')

#: Rejections after which holding at once is safer than waiting for the watchdog.
FORCE_HOLD_RULES = ('stale_state', 'plan', 'uncertainty')


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
        state_timeout_s: joint_states older than this are stale: commands are rejected and
            the robot held at once [s].
        heartbeat_timeout_s: joint_states silent this long while armed means the driver or
            twin is gone: ESTOPPED, latched [s] (at least state_timeout_s).
        reset_tolerance: how far past a position limit [rad or m] a joint may be measured
            for safety/reset and safety/arm to re-arm (sensor noise, soft limits).
        auto_arm: arm once by itself when joint_states have arrived steadily (no gap past
            state_timeout_s) for auto_arm_after_s and are within limits; never again after
            an e-stop. False waits for safety/arm.
        auto_arm_after_s: how long the state stream must be steady before auto-arming [s].
        max_command_rate_hz: sustained command rate allowed [Hz]; 0 = 3 x the control rate.
        command_burst: commands allowed back to back before the rate limit bites.
        stall_effort_fraction: measured |effort| at this fraction of the effort limit, with
            the joint not moving, counts as stalled (rule effort).
        stall_velocity: below this measured speed a joint counts as not moving [rad/s or m/s].
        check_plan: reject commands whose controller/plan leaves the limits (rule plan).
        plan_tolerance: excursion past a position limit a plan may predict [rad or m].
        report_max_lag_s: how much older than a command its plan/uncertainty may be [s];
            0 = two control periods.
        uncertainty_slow: controller/uncertainty at which steps are scaled by slow_factor
            (inf = off).
        uncertainty_hold: controller/uncertainty at which commands are rejected and the
            robot held (inf = off).
        slow_factor: scale of the step from the measured state above uncertainty_slow.
        hold_lead_s: position robots hold where each joint will be this much later at its
            measured speed (at most max_step away), so a moving servo brakes to a stop
            instead of overshooting the hold point and springing back [s]; 0 = where it is.
    """

    command_age_budget_s: float = 0.25
    future_tolerance_s: float = 0.05
    watchdog_timeout_s: float = 0.1
    state_timeout_s: float = 0.25
    heartbeat_timeout_s: float = 0.5
    reset_tolerance: float = 0.02
    auto_arm: bool = False
    auto_arm_after_s: float = 1.0
    max_command_rate_hz: float = 0.0
    command_burst: float = 3.0
    stall_effort_fraction: float = 0.95
    stall_velocity: float = 0.05
    check_plan: bool = False
    plan_tolerance: float = 0.0
    report_max_lag_s: float = 0.0
    uncertainty_slow: float = math.inf
    uncertainty_hold: float = math.inf
    slow_factor: float = 0.5
    hold_lead_s: float = 0.02

    def __post_init__(self) -> None:
        for name in ('command_age_budget_s', 'watchdog_timeout_s', 'state_timeout_s'):
            _check(self, name, lambda v: math.isfinite(v) and v > 0, 'finite and > 0')
        _check(self, 'heartbeat_timeout_s',
               lambda v: math.isfinite(v) and v >= self.state_timeout_s,
               f'finite and >= state_timeout_s ({self.state_timeout_s})')
        for name in ('future_tolerance_s', 'reset_tolerance', 'max_command_rate_hz',
                     'plan_tolerance', 'report_max_lag_s', 'stall_velocity', 'hold_lead_s',
                     'auto_arm_after_s'):
            _check(self, name, lambda v: math.isfinite(v) and v >= 0, 'finite and >= 0')
        _check(self, 'command_burst', lambda v: math.isfinite(v) and v >= 1, 'finite and >= 1')
        _check(self, 'stall_effort_fraction', lambda v: 0 < v <= 1, 'in (0, 1]')
        _check(self, 'slow_factor', lambda v: 0 <= v <= 1, 'in [0, 1]')
        for name in ('uncertainty_slow', 'uncertainty_hold'):
            _check(self, name, lambda v: v >= 0, '>= 0 (inf = off)')
        for name in ('auto_arm', 'check_plan'):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f'{name} must be a bool, got {getattr(self, name)!r}')


def _check(config: SupervisorConfig, name: str, ok, what: str) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
        raise ValueError(f'{name} must be {what}, got {value!r}')


def _ns(seconds: float) -> int:
    return int(round(seconds * 1e9))


class Supervisor:
    """
    Filters commands for one robot and decides when to hold it.

    Args:
        spec: the robot (joint limits, command interface, control rate, safety section).
        config: budgets, timeouts and the opt-in hooks.

    Shapes: n = len(spec.joints) (``joint_states`` order), m = actuated joints (command
    order). Times are integer nanoseconds on the caller's clock (node time or sim time).
    """

    def __init__(self, spec: RobotSpec, config: SupervisorConfig | None = None) -> None:
        self.spec = spec
        self.config = cfg = config or SupervisorConfig()
        self.limits = CommandLimits.from_spec(spec)
        self.watchdog_ns = _ns(max(cfg.watchdog_timeout_s, WATCHDOG_MIN_PERIODS * spec.period_s))
        if self.watchdog_ns > _ns(cfg.watchdog_timeout_s):
            logger.info('watchdog raised from %.3f s to %.3f s (%.1f control periods of %s)',
                        cfg.watchdog_timeout_s, self.watchdog_ns * 1e-9,
                        WATCHDOG_MIN_PERIODS, spec.name)
        self.settings = FilterSettings(
            age_budget_ns=_ns(cfg.command_age_budget_s),
            future_tolerance_ns=_ns(cfg.future_tolerance_s),
            state_timeout_ns=_ns(cfg.state_timeout_s),
            rate_hz=cfg.max_command_rate_hz or 3.0 * spec.control_rate_hz,
            burst=cfg.command_burst, stall_fraction=cfg.stall_effort_fraction,
            stall_velocity=cfg.stall_velocity, check_plan=cfg.check_plan,
            report_lag_ns=_ns(cfg.report_max_lag_s or 2.0 * spec.period_s),
            uncertainty_slow=cfg.uncertainty_slow, uncertainty_hold=cfg.uncertainty_hold,
            slow_factor=cfg.slow_factor)
        self._heartbeat_ns = _ns(cfg.heartbeat_timeout_s)
        self._lower = spec.limits_array('lower', actuated_only=False)
        self._upper = spec.limits_array('upper', actuated_only=False)
        self._actuated = spec.actuated_index

        self.state = SafetyState.DISARMED
        self._auto_arm_pending = cfg.auto_arm
        self._measured: MeasuredState | None = None
        self._measured_all: np.ndarray | None = None  # (n,) positions, joint_states order
        self._body: BodyRate | None = None
        self._plan: StampedValue | None = None
        self._uncertainty: StampedValue | None = None
        self._bucket = RateBucket(0.0, None)
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
        self.estop_reason = ''
        self._recapture_on_state = False
        self._steady_since_ns: int | None = None

    # Inputs ------------------------------------------------------------------------------
    def on_state(self, position: np.ndarray, velocity: np.ndarray, stamp_ns: int,
                 effort: np.ndarray | None = None, now_ns: int | None = None) -> None:
        """
        Take a measured state; arms the supervisor if ``auto_arm`` is still pending.

        Args:
            position: (n,) joint positions, ``joint_states`` order [rad or m].
            velocity: (n,) joint velocities [rad/s or m/s]; NaN where unknown.
            stamp_ns: the ``joint_states`` stamp [ns].
            effort: (n,) measured efforts [N m or N], NaN where unknown; None if absent.
            now_ns: current time [ns] for the auto-arm freshness check (default: stamp).

        Raises:
            ValueError: an array does not have n entries.
        """
        n = len(self.spec.joints)
        position = np.array(position, dtype=np.float64).reshape(-1)
        velocity = np.array(velocity, dtype=np.float64).reshape(-1)
        effort = None if effort is None else np.array(effort, dtype=np.float64).reshape(-1)
        if position.shape != (n,) or velocity.shape != (n,) or \
                (effort is not None and effort.shape != (n,)):
            raise ValueError(f'{self.spec.name}: state needs {n} positions, velocities (and '
                             f'efforts), got {position.shape}, {velocity.shape}'
                             f'{"" if effort is None else f" and {effort.shape}"}')
        previous = self._measured.stamp_ns if self._measured is not None else None
        if previous is None or stamp_ns - previous > self.settings.state_timeout_ns:
            self._steady_since_ns = int(stamp_ns)  # the stream (re)starts here
        if self._recapture_on_state:
            # the state came back after a silence: hold where the robot is now, not where
            # it was before (a driver reconnecting after a power cycle, a sagging arm)
            self._hold = None
            self._recapture_on_state = False
        self._measured_all = position
        self._measured = MeasuredState(
            position[self._actuated], velocity[self._actuated], int(stamp_ns),
            None if effort is None else effort[self._actuated])
        if self._auto_arm_pending and self.state is SafetyState.DISARMED:
            self._try_auto_arm(int(stamp_ns), int(stamp_ns) if now_ns is None else now_ns)

    def _try_auto_arm(self, stamp_ns: int, now_ns: int) -> None:
        steady_ns = stamp_ns - self._steady_since_ns
        if steady_ns < _ns(self.config.auto_arm_after_s):
            self.last_reason = (f'auto-arm: joint_states steady for {steady_ns * 1e-9:.2f} s '
                                f'of {self.config.auto_arm_after_s:g} s')
            return
        ok, message = self._arm_if_safe(now_ns, 'auto-arm')
        if ok:
            self._auto_arm_pending = False
        else:
            self.last_reason = message

    def on_body_rate(self, angular: np.ndarray, stamp_ns: int) -> None:
        """Take the measured body angular velocity (3,) [rad/s], body frame (odom or imu)."""
        self._body = BodyRate(np.array(angular, dtype=np.float64).reshape(3), int(stamp_ns))

    def on_plan(self, names: Sequence[str], positions: np.ndarray, stamp_ns: int) -> str:
        """
        Take the controller's predicted trajectory and judge it once, now.

        Args:
            names: joint names of the plan's columns (any subset of the robot's joints).
            positions: (T, len(names)) predicted positions [rad or m].
            stamp_ns: stamp of the observation the plan starts from [ns].

        Returns:
            '' when the plan stays within the limits, else why not.
        """
        verdict = plan_violation(names, positions, self.spec.joint_names, self._lower,
                                 self._upper, self.config.plan_tolerance,
                                 self.limits.workspace, self.limits.names)
        self._plan = StampedValue(int(stamp_ns), verdict)
        return verdict

    def on_uncertainty(self, value: float, stamp_ns: int) -> None:
        """Take the controller's uncertainty figure for the observation at ``stamp_ns``."""
        self._uncertainty = StampedValue(int(stamp_ns), float(value))

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
                self.limits, self.settings, names, values, stamp_ns,
                Inputs(now_ns, self._measured, self._body, self._plan, self._uncertainty,
                       self._bucket))
            self._bucket = decision.bucket
        for rule in dict.fromkeys(decision.fired):
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
            if any(rule in FORCE_HOLD_RULES for rule in decision.fired):
                self._hold_forced = True  # unsafe input: hold now, not after the watchdog
        return decision

    def on_estop(self, active: bool, now_ns: int, reason: str = 'e-stop received') -> None:
        """Take the e-stop input; True latches ESTOPPED until :meth:`reset`."""
        self._estop_input = bool(active)
        if active:
            self._enter_estop(now_ns, f'estop: {reason}')

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
        Heartbeat and watchdog, called at the control rate.

        While ARMED, ``joint_states`` silent for the heartbeat timeout (driver or twin dead
        or frozen) enters ESTOPPED; a shorter silence (past the state timeout) only holds.
        Then a hold is due when not ARMED, after a forcing rejection, or when no command
        passed within the watchdog timeout.

        Returns:
            The (m,) hold command when a hold is due, else None. A position robot without
            any measured state cannot be held: None, and the reason is recorded.
        """
        if self.state is SafetyState.ARMED and self._measured is not None:
            silent = now_ns - self._measured.stamp_ns
            if silent > self._heartbeat_ns:
                self.rule_counts['state_lost'] += 1
                self._recapture_on_state = True
                self._enter_estop(now_ns, f'state_lost: joint_states silent for '
                                          f'{silent * 1e-9:.3f} s > '
                                          f'{self.config.heartbeat_timeout_s:g} s '
                                          '(driver or twin stopped?)')
        if not self.holding_due(now_ns):
            return None
        if self._hold is None:
            self._hold = self._capture_hold()
            if self._hold is None:
                self.last_reason = 'hold: no valid joint_states, no position to hold'
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
    def holding(self) -> bool:
        """True while a hold command is being sent."""
        return self._hold is not None

    @property
    def measured_stamp_ns(self) -> int | None:
        """Stamp of the newest measured state [ns], None before the first."""
        return None if self._measured is None else self._measured.stamp_ns

    def stats(self) -> dict[str, object]:
        """Counters for diagnostics: state, passed/clamped/blocked/held, rule/<name>, ..."""
        stats: dict[str, object] = {
            'state': self.state.value, 'passed': self.passed, 'clamped': self.clamped,
            'blocked': self.blocked, 'held': self.held, 'estops': self.estops,
            'holding': self.holding, 'estop_reason': self.estop_reason,
        }
        stats.update({f'rule/{rule}': count for rule, count in self.rule_counts.items()})
        stats['last_reason'] = self.last_reason
        return stats

    # Internals ---------------------------------------------------------------------------
    def _enter_estop(self, now_ns: int, reason: str) -> None:
        if self.state is SafetyState.ESTOPPED:
            return
        logger.warning('%.3f s: %s; holding until safety/reset', now_ns * 1e-9, reason)
        self.state = SafetyState.ESTOPPED
        self.estops += 1
        self.last_reason = self.estop_reason = reason
        self._hold = None  # capture the newest measured position for the hold

    def _capture_hold(self) -> np.ndarray | None:
        if self.limits.interface == 'velocity':
            return np.zeros(len(self.limits.names))
        measured = self._measured
        if measured is None or not np.isfinite(measured.position).all():
            return None
        lead = np.nan_to_num(measured.velocity * self.config.hold_lead_s, nan=0.0)
        lead = np.clip(lead, -self.limits.max_step, self.limits.max_step)
        # a joint measured a hair past its limit (soft limits, contact) is held at the limit:
        # no command leaves the box, holds included
        return np.clip(measured.position + lead, self.limits.lower, self.limits.upper)

    def _arm_if_safe(self, now_ns: int, action: str) -> tuple[bool, str]:
        problem = self._state_problem(now_ns)
        if problem:
            return False, f'{action} refused: {problem}'
        previous = self.state
        self.state = SafetyState.ARMED
        self._hold_forced = False
        self._hold = None  # a hold from before may be far from where the robot is now
        logger.info('%s: %s -> ARMED', action, previous.value)
        return True, f'{previous.value} -> ARMED'

    def _state_problem(self, now_ns: int) -> str:
        """Why the measured state does not allow arming ('' when it does)."""
        if self._measured is None or self._measured_all is None:
            return 'no joint_states received'
        age = now_ns - self._measured.stamp_ns
        if age > self.settings.state_timeout_ns:
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
