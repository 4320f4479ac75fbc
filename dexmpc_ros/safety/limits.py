"""
Safety rules on one command, as pure functions (no rclpy, no hidden state).

Each rule is one named function that takes the command (and what it needs to judge it) and
returns a :class:`RuleResult`: the command, possibly modified (``None`` when the rule
rejects it), whether the rule fired, and why. ``safety/filter.py`` runs them in the fixed
order of :data:`RULE_ORDER` and folds them into a decision.

Rules (names as they appear in counters and diagnostics):

Rejections (judge the command as a whole; all run, so every reason is reported)

``finite``        NaN or +-inf anywhere.
``names``         unknown, missing or duplicate joint names, names/values length mismatch;
                  a command in another joint order is reordered (not a violation).
``age``           stamp (of the observation the command came from) older than the budget,
                  or ahead of now by more than the future tolerance.
``stale_state``   no valid ``joint_states`` within the state timeout (every clamp below is
                  relative to the measured state); robots with body-rate limits also need
                  a fresh body rate (``odom`` or ``imu``).
``rate``          token bucket: commands arriving faster than the allowed rate (bursts).
``plan``          (opt-in) the controller's newest predicted trajectory leaves the limits,
                  or no recent one was published.
``uncertainty``   (opt-in) the controller's reported uncertainty is at or above the hold
                  threshold, or none was reported for this command.

Clamps (each on the output of the previous; the most restrictive wins)

``uncertainty``   (opt-in) above the slow-down threshold, scale the step from the measured
                  state (velocity robots: the speed) by ``slow_factor``.
``step``          position: |cmd - q| <= max_step. Velocity: |cmd - qdot| <= max_step.
``velocity``      position: |cmd - q| <= velocity * dt. Velocity: |cmd| <= velocity.
``effort``        a joint whose measured |effort| is at the stall fraction of its effort
                  limit while (nearly) not moving is stalled against something: it may back
                  off but not push further (position: not past q; velocity: zero speed).
``workspace``     (arms with ``safety.workspace``) the end effector stays in a box: the
                  command is shortened along the straight joint-space line from q so that
                  every sampled point of that line keeps the forward kinematics inside
                  the box (or, when already outside, keeps moving back in).
``body_rate``     (floating-base robots with ``safety.body_rate``) roll/pitch rate above
                  the limit: both legs stop; yaw rate above the limit: a speed difference
                  that turns further the same way is removed.
``position_box``  position: clip to [lower, upper]. Velocity: zero a speed that drives a
                  joint further past a finite limit. Last, so no command leaves the box.

Shapes: m = number of actuated joints (command length); arrays are float64 in command order
(``RobotSpec.command_names``). Times are integer nanoseconds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from dexmpc_ros.core.errors import ConfigError
from dexmpc_ros.core.robot_spec import RobotSpec
from dexmpc_ros.robots.kinematics import KINEMATICS

REJECT_RULES = ('finite', 'names', 'age', 'stale_state', 'rate', 'plan', 'uncertainty')
CLAMP_RULES = ('uncertainty', 'step', 'velocity', 'effort', 'workspace', 'body_rate',
               'position_box')
RULES = tuple(dict.fromkeys(REJECT_RULES + CLAMP_RULES))

#: Clamp order per command interface. ``position_box`` comes last for both, so no command
#: leaves the limits of the robot YAML even when the measured state sits slightly outside
#: them (MuJoCo's soft limits, a servo pushed by contact).
RULE_ORDER = {
    'position': ('uncertainty', 'step', 'velocity', 'effort', 'workspace', 'position_box'),
    'velocity': ('uncertainty', 'step', 'velocity', 'effort', 'body_rate', 'position_box'),
}

#: Points sampled on the joint-space line from the measured state to the command when
#: checking the workspace box (endpoints included).
WORKSPACE_SAMPLES = 17

_MAX_JOINTS_IN_REASON = 4


class RuleResult(NamedTuple):
    """Outcome of one rule: values (m,) or None when rejected, whether it fired, why."""

    values: np.ndarray | None
    fired: bool
    reason: str = ''


@dataclass(frozen=True, eq=False)
class Workspace:
    """
    The end-effector box in command terms.

    Attributes:
        index: (k,) positions in the command of the joints the kinematics takes.
        ee_position: (..., k) joint positions -> (..., 3) end-effector position [m].
        lower: (3,) lower corner in the base frame [m]: the spec's box shrunk by its margin.
        upper: (3,) upper corner [m], shrunk likewise.
        brake_time: the box shrinks further by how far the end effector would travel in
            this time at the measured joint speeds [s] (the arm's overshoot when it brakes).
    """

    index: np.ndarray
    ee_position: Callable[[np.ndarray], np.ndarray]
    lower: np.ndarray
    upper: np.ndarray
    brake_time: float = 0.0

    def excess(self, joint_positions: np.ndarray, shrink: float = 0.0) -> np.ndarray:
        """
        How far (..., k) joint positions put the end effector outside the box [m], (...).

        ``shrink`` [m] moves every face inward first (never past the box's centre).
        """
        shrink = min(shrink, 0.49 * float(np.min(self.upper - self.lower)))
        ee = self.ee_position(joint_positions)
        out = (np.maximum(self.lower + shrink - ee, 0.0)
               + np.maximum(ee - self.upper + shrink, 0.0))
        return out.sum(axis=-1)

    def braking_distance(self, position: np.ndarray, velocity: np.ndarray) -> float:
        """End-effector travel [m] in ``brake_time`` at the measured joint speeds (k,)."""
        if self.brake_time <= 0.0 or not np.isfinite(velocity).all():
            return 0.0
        ee = self.ee_position(np.stack([position, position + velocity * self.brake_time]))
        return float(np.linalg.norm(ee[1] - ee[0]))


@dataclass(frozen=True)
class BodyRates:
    """Body-rate limits in command terms: thresholds [rad/s] and the left/right indices."""

    roll_pitch: float
    yaw: float
    left: int
    right: int


@dataclass(frozen=True, eq=False)
class CommandLimits:
    """
    A robot's command limits as vectors, built once from a :class:`RobotSpec`.

    Attributes:
        names: actuated joint names, command order (m,).
        interface: ``position`` or ``velocity``.
        lower: (m,) lowest position [rad or m].
        upper: (m,) highest position [rad or m].
        velocity: (m,) largest speed [rad/s or m/s].
        max_step: (m,) largest change per control step [rad, m or rad/s].
        effort: (m,) largest effort [N m or N].
        period_s: control period dt [s].
        workspace: end-effector box, or None.
        body_rate: body angular-rate limits, or None.
        index: joint name -> position in the command.
    """

    names: tuple[str, ...]
    interface: str
    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray
    max_step: np.ndarray
    effort: np.ndarray
    period_s: float
    workspace: Workspace | None = None
    body_rate: BodyRates | None = None
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, 'index', {n: i for i, n in enumerate(self.names)})

    @classmethod
    def from_spec(cls, spec: RobotSpec) -> CommandLimits:
        """Command limits of the actuated joints of ``spec`` (+ its safety section)."""
        names = tuple(spec.command_names)
        index = {n: i for i, n in enumerate(names)}
        workspace = None
        if spec.workspace is not None:
            box = spec.workspace
            if box.kinematics not in KINEMATICS:
                raise ConfigError(f'{spec.source or spec.name}: safety.workspace.kinematics: '
                                  f'{box.kinematics!r} unknown; available: '
                                  f'{", ".join(KINEMATICS)}')
            kin = KINEMATICS[box.kinematics]
            missing = [j for j in kin.joints if j not in index]
            if missing:
                raise ValueError(f'robot {spec.name}: workspace kinematics {box.kinematics} '
                                 f'needs actuated joints {missing}')
            workspace = Workspace(np.array([index[j] for j in kin.joints]), kin.ee_position,
                                  np.array(box.lower) + box.margin,
                                  np.array(box.upper) - box.margin, box.brake_time)
        body_rate = None
        if spec.body_rate is not None:
            rate = spec.body_rate
            body_rate = BodyRates(rate.roll_pitch, rate.yaw, index[rate.left],
                                  index[rate.right])
        return cls(names=names, interface=spec.command_interface,
                   lower=spec.limits_array('lower'), upper=spec.limits_array('upper'),
                   velocity=spec.limits_array('velocity'),
                   max_step=spec.limits_array('max_step'), effort=spec.limits_array('effort'),
                   period_s=spec.period_s, workspace=workspace, body_rate=body_rate)


@dataclass(frozen=True, eq=False)
class MeasuredState:
    """
    The newest measured state of the actuated joints.

    Attributes:
        position: (m,) measured positions [rad or m], command order.
        velocity: (m,) measured velocities [rad/s or m/s] (NaN if unknown).
        stamp_ns: stamp of the ``joint_states`` message [ns].
        effort: (m,) measured efforts [N m or N] (NaN if unknown); None = all unknown.
    """

    position: np.ndarray
    velocity: np.ndarray
    stamp_ns: int
    effort: np.ndarray | None = None


class BodyRate(NamedTuple):
    """Measured body angular velocity (roll, pitch, yaw rate) (3,) [rad/s], body frame."""

    angular: np.ndarray
    stamp_ns: int


class StampedValue(NamedTuple):
    """A controller's report for the observation at ``stamp_ns``: a plan verdict or a figure."""

    stamp_ns: int
    value: float | str


class RateBucket(NamedTuple):
    """Token bucket state of the ``rate`` rule: tokens left and when it was last filled."""

    tokens: float
    stamp_ns: int | None


# Rejection rules -------------------------------------------------------------------------
def check_finite(values: np.ndarray) -> RuleResult:
    """Rule ``finite``: reject any NaN or +-inf entry."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return RuleResult(values, False)
    where = np.flatnonzero(bad)
    shown = ', '.join(f'[{i}]={values[i]}' for i in where[:_MAX_JOINTS_IN_REASON])
    return RuleResult(None, True, f'finite: non-finite value(s) {shown}')


def check_names(names: Sequence[str], values: np.ndarray, limits: CommandLimits
                ) -> RuleResult:
    """
    Rule ``names``: exactly the spec's command joints, each once; reorder to spec order.

    A command that names the right joints in another order is reordered; that is not a
    violation, so the rule does not fire for it.
    """
    if len(names) != len(values):
        return RuleResult(None, True, f'names: {len(names)} joint names for '
                                      f'{len(values)} values')
    counts = Counter(names)
    duplicates = sorted(n for n, c in counts.items() if c > 1)
    if duplicates:
        return RuleResult(None, True, f'names: duplicate joint names {duplicates}')
    unknown = [n for n in names if n not in limits.index]
    if unknown:
        return RuleResult(None, True, f'names: unknown or non-actuated joints '
                                      f'{unknown[:_MAX_JOINTS_IN_REASON]}')
    missing = [n for n in limits.names if n not in counts]
    if missing:
        more = ' ...' if len(missing) > _MAX_JOINTS_IN_REASON else ''
        return RuleResult(None, True, f'names: missing joints '
                                      f'{missing[:_MAX_JOINTS_IN_REASON]}{more}')
    if tuple(names) == limits.names:
        return RuleResult(values, False)
    where = {n: i for i, n in enumerate(names)}
    return RuleResult(values[[where[n] for n in limits.names]], False)


def _judged(fired_reason: str) -> RuleResult:
    """A stamp/state rule's result: rejected with the reason, or an empty 'ok'."""
    if fired_reason:
        return RuleResult(None, True, fired_reason)
    return RuleResult(np.empty(0), False)


def check_age(stamp_ns: int, now_ns: int, budget_ns: int, future_tolerance_ns: int
              ) -> RuleResult:
    """Rule ``age``: now - stamp must lie in [-future_tolerance, budget] (both ends allowed)."""
    age = now_ns - stamp_ns
    if age > budget_ns:
        return _judged(f'age: command {age * 1e-9:.3f} s old > budget {budget_ns * 1e-9:.3f} s')
    if -age > future_tolerance_ns:
        return _judged(f'age: command stamped {-age * 1e-9:.3f} s in the future > tolerance '
                       f'{future_tolerance_ns * 1e-9:.3f} s')
    return _judged('')


def check_stale_state(state: MeasuredState | None, now_ns: int, timeout_ns: int,
                      future_tolerance_ns: int, limits: CommandLimits,
                      body: BodyRate | None = None) -> RuleResult:
    """
    Rule ``stale_state``: a valid measured state newer than the timeout must exist.

    Valid means finite positions, finite velocities for velocity robots (whose step rule is
    relative to the measured velocity), and for robots with body-rate limits a finite body
    rate within the same timeout.
    """
    if state is None:
        return _judged('stale_state: no joint_states received yet')
    age = now_ns - state.stamp_ns
    if age > timeout_ns:
        return _judged(f'stale_state: joint_states {age * 1e-9:.3f} s old > timeout '
                       f'{timeout_ns * 1e-9:.3f} s')
    if -age > future_tolerance_ns:
        return _judged(f'stale_state: joint_states stamped {-age * 1e-9:.3f} s in the future')
    if not np.isfinite(state.position).all():
        return _judged('stale_state: joint_states position not finite')
    if limits.interface == 'velocity' and not np.isfinite(state.velocity).all():
        return _judged('stale_state: joint_states velocity missing or not finite')
    if limits.body_rate is not None:
        if body is None:
            return _judged('stale_state: no body rate (odom or imu) received yet')
        body_age = now_ns - body.stamp_ns
        if body_age > timeout_ns:
            return _judged(f'stale_state: body rate {body_age * 1e-9:.3f} s old')
        if -body_age > future_tolerance_ns:
            return _judged(f'stale_state: body rate stamped {-body_age * 1e-9:.3f} s in the '
                           'future')
        if not np.isfinite(body.angular).all():
            return _judged('stale_state: body rate not finite')
    return _judged('')


def check_rate(bucket: RateBucket, now_ns: int, rate_hz: float, burst: float
               ) -> tuple[RuleResult, RateBucket]:
    """
    Rule ``rate``: a token bucket of ``burst`` tokens refilled at ``rate_hz``.

    Every command takes one token; with none left it is rejected. Returns the result and
    the new bucket state (the caller keeps it).
    """
    if not np.isfinite(rate_hz):
        return _judged(''), bucket  # rate limiting off
    if bucket.stamp_ns is None:
        tokens = burst
    else:
        elapsed_s = max(now_ns - bucket.stamp_ns, 0) * 1e-9
        tokens = min(burst, bucket.tokens + elapsed_s * rate_hz)
    if tokens < 1.0:
        return (_judged(f'rate: more than {rate_hz:g} commands/s (burst {burst:g})'),
                RateBucket(tokens, now_ns))
    return _judged(''), RateBucket(tokens - 1.0, now_ns)


def _report_for(report: StampedValue | None, stamp_ns: int, max_lag_ns: int,
                what: str, rule: str) -> str:
    """Why ``report`` cannot vouch for the command stamped ``stamp_ns`` ('' if it can)."""
    if report is None:
        return f'{rule}: no {what} received'
    lag = stamp_ns - report.stamp_ns
    if lag > max_lag_ns:
        return f'{rule}: newest {what} is {lag * 1e-9:.3f} s older than the command'
    return ''


def check_plan(verdict: StampedValue | None, stamp_ns: int, max_lag_ns: int) -> RuleResult:
    """
    Rule ``plan``: the newest plan (verdict of :func:`plan_violation`) must be recent and clean.

    Args:
        verdict: (plan stamp, '' or the violation) of the newest plan, or None.
        stamp_ns: the command's stamp [ns].
        max_lag_ns: how much older than the command the plan may be [ns].
    """
    missing = _report_for(verdict, stamp_ns, max_lag_ns, 'plan', 'plan')
    if missing:
        return _judged(missing)
    return _judged(f'plan: {verdict.value}' if verdict.value else '')


def check_uncertainty(report: StampedValue | None, stamp_ns: int, max_lag_ns: int,
                      hold_threshold: float) -> RuleResult:
    """Rule ``uncertainty`` (reject): a recent report below ``hold_threshold`` must exist."""
    missing = _report_for(report, stamp_ns, max_lag_ns, 'uncertainty', 'uncertainty')
    if missing:
        return _judged(missing)
    value = float(report.value)
    if np.isfinite(hold_threshold) and not value < hold_threshold:  # NaN holds too
        return _judged(f'uncertainty: {value:.4g} >= hold threshold {hold_threshold:.4g}')
    return _judged('')


def plan_violation(names: Sequence[str], positions: np.ndarray, spec_names: Sequence[str],
                   lower: np.ndarray, upper: np.ndarray, tolerance: float,
                   workspace: Workspace | None = None,
                   command_names: Sequence[str] = ()) -> str:
    """
    Check a predicted joint trajectory against the position limits (and workspace box).

    Args:
        names: joint names of the plan's columns.
        positions: (T, len(names)) predicted positions [rad or m].
        spec_names: every joint of the robot, ``joint_states`` order (n,).
        lower: (n,) lower position limits, same order.
        upper: (n,) upper position limits.
        tolerance: allowed excursion past a limit [rad or m].
        workspace: the end-effector box, checked when the plan holds all its joints.
        command_names: actuated joint names (the order ``workspace.index`` refers to).

    Returns:
        '' when the plan stays inside, else one line naming the first offending step/joint.
    """
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != len(names):
        return f'plan has shape {positions.shape} for {len(names)} joint names'
    if positions.shape[0] == 0:
        return 'plan has no points'
    where = {n: i for i, n in enumerate(spec_names)}
    unknown = [n for n in names if n not in where]
    if unknown:
        return f'plan names unknown joints {unknown[:_MAX_JOINTS_IN_REASON]}'
    if not np.isfinite(positions).all():
        return 'plan holds non-finite positions'
    cols = np.array([where[n] for n in names], dtype=np.int64)
    low, high = lower[cols] - tolerance, upper[cols] + tolerance
    bad = (positions < low) | (positions > high)
    if bad.any():
        step, col = np.argwhere(bad)[0]
        return (f'step {step}: {names[col]}={positions[step, col]:.4g} outside '
                f'[{lower[cols][col]:.4g}, {upper[cols][col]:.4g}]')
    if workspace is not None:
        column = {n: i for i, n in enumerate(names)}
        needed = [command_names[i] for i in workspace.index]
        if all(n in column for n in needed):
            excess = workspace.excess(positions[:, [column[n] for n in needed]])
            if (excess > tolerance).any():
                step = int(np.argmax(excess > tolerance))
                return f'step {step}: end effector {excess[step]:.3f} m outside the workspace'
    return ''


# Clamping rules --------------------------------------------------------------------------
def scale_for_uncertainty(values: np.ndarray, limits: CommandLimits, state: MeasuredState,
                          report: StampedValue | None, slow_threshold: float,
                          slow_factor: float) -> RuleResult:
    """Rule ``uncertainty`` (clamp): at or above ``slow_threshold``, shrink the step/speed."""
    if report is None or not np.isfinite(slow_threshold) or float(report.value) < slow_threshold:
        return RuleResult(values, False)
    if limits.interface == 'position':
        out = state.position + slow_factor * (values - state.position)
    else:
        out = slow_factor * values
    result = _clamp_result('uncertainty', values, out, limits.names)
    if not result.fired:
        return result
    return RuleResult(result.values, True, f'uncertainty: {float(report.value):.4g} >= '
                                           f'{slow_threshold:.4g}, x{slow_factor:g}; '
                                           + result.reason.split(': ', 1)[1])


def clamp_step(values: np.ndarray, limits: CommandLimits, state: MeasuredState
               ) -> RuleResult:
    """Rule ``step``: position |cmd - q| <= max_step; velocity |cmd - qdot| <= max_step."""
    centre = state.position if limits.interface == 'position' else state.velocity
    out = np.clip(values, centre - limits.max_step, centre + limits.max_step)
    return _clamp_result('step', values, out, limits.names)


def clamp_velocity(values: np.ndarray, limits: CommandLimits, state: MeasuredState
                   ) -> RuleResult:
    """Rule ``velocity``: position |cmd - q| <= velocity * dt; velocity |cmd| <= velocity."""
    if limits.interface == 'position':
        bound = limits.velocity * limits.period_s
        out = np.clip(values, state.position - bound, state.position + bound)
    else:
        out = np.clip(values, -limits.velocity, limits.velocity)
    return _clamp_result('velocity', values, out, limits.names)


def clamp_effort(values: np.ndarray, limits: CommandLimits, state: MeasuredState,
                 stall_fraction: float, stall_velocity: float) -> RuleResult:
    """
    Rule ``effort``: a stalled joint may back off but not push further.

    Stalled: measured |effort| >= ``stall_fraction`` x its effort limit and measured
    |velocity| <= ``stall_velocity`` (unknown velocity counts as not moving). Pushing means
    commanding further in the direction of the measured effort: position robots get the
    command limited to the measured position on that side, velocity robots zero speed.
    Joints without a measured effort are not judged.
    """
    if state.effort is None:
        return RuleResult(values, False)
    tau = state.effort
    slow = ~(np.abs(state.velocity) > stall_velocity)
    with np.errstate(invalid='ignore'):
        stalled = np.isfinite(tau) & (np.abs(tau) >= stall_fraction * limits.effort) & slow
    if not stalled.any():
        return RuleResult(values, False)
    if limits.interface == 'position':
        pushing = np.sign(values - state.position) * np.sign(tau) > 0
        out = np.where(stalled & pushing, state.position, values)
    else:
        pushing = np.sign(values) * np.sign(tau) > 0
        out = np.where(stalled & pushing, 0.0, values)
    return _clamp_result('effort', values, out, limits.names)


def clamp_workspace(values: np.ndarray, limits: CommandLimits, state: MeasuredState
                    ) -> RuleResult:
    """
    Rule ``workspace``: keep the end effector in the box along the way to the command.

    Clips the arm joints' target into the joint box, samples :data:`WORKSPACE_SAMPLES`
    points on the joint-space line q -> target and keeps the longest prefix where each point
    is inside the box or closer to it than the point before; the command becomes the last
    point of that prefix. From inside the box that stops at the face; from outside it allows
    only moves back toward the box. The box is the spec's, shrunk by its margin and by the
    braking distance at the measured speed, so a fast arm stops short of the face it heads
    for. Between samples (at most 1/16 of one step apart) the end effector may dip out by a
    fraction of a millimetre.
    """
    box = limits.workspace
    if box is None:
        return RuleResult(values, False)
    # The search runs on the target clipped into the joint box: position_box comes after
    # this rule, and clipping a point it chose could move the end effector out again.
    q = state.position[box.index]
    cmd = np.clip(values[box.index], limits.lower[box.index], limits.upper[box.index])
    t = np.linspace(0.0, 1.0, WORKSPACE_SAMPLES)
    shrink = box.braking_distance(q, state.velocity[box.index])
    excess = box.excess(q + t[:, None] * (cmd - q), shrink)
    ok = (excess[1:] == 0.0) | (excess[1:] < excess[:-1])
    bad = np.flatnonzero(~ok)
    if bad.size == 0:
        return RuleResult(values, False)
    t_ok = t[bad[0]]
    out = values.copy()
    out[box.index] = q + t_ok * (cmd - q)
    result = _clamp_result('workspace', values, out, limits.names)
    if not result.fired:
        return RuleResult(values, False)
    return RuleResult(out, True, f'workspace: end effector would leave the box by '
                                 f'{excess[bad[0] + 1]:.3f} m; {t_ok:.0%} of the step kept '
                                 f'({result.reason.split(": ", 1)[1]})')


def clamp_body_rate(values: np.ndarray, limits: CommandLimits, body: BodyRate | None
                    ) -> RuleResult:
    """
    Rule ``body_rate``: react to measured body rates (velocity robots with body-rate limits).

    |roll rate| or |pitch rate| above ``roll_pitch``: the body is tumbling, all joints stop.
    |yaw rate| above ``yaw``: if right - left speed turns the same way (right faster turns
    counter-clockwise, positive yaw), both sides get their mean speed.
    """
    rates = limits.body_rate
    if rates is None or body is None:
        return RuleResult(values, False)
    roll, pitch, yaw = (float(v) for v in body.angular)
    if max(abs(roll), abs(pitch)) > rates.roll_pitch:
        out = np.zeros_like(values)
        fired = bool((out != values).any())
        return RuleResult(out, fired, f'body_rate: roll/pitch rate {roll:.2f}/{pitch:.2f} '
                                      f'rad/s > {rates.roll_pitch:g}, legs stopped'
                          if fired else '')
    diff = values[rates.right] - values[rates.left]
    if abs(yaw) > rates.yaw and diff * yaw > 0.0:
        out = values.copy()
        out[[rates.left, rates.right]] = 0.5 * (values[rates.left] + values[rates.right])
        return RuleResult(out, True, f'body_rate: yaw rate {yaw:.2f} rad/s > {rates.yaw:g}, '
                                     f'turn not tightened (difference {diff:.3g} -> 0)')
    return RuleResult(values, False)


def clamp_position_box(values: np.ndarray, limits: CommandLimits, state: MeasuredState
                       ) -> RuleResult:
    """
    Rule ``position_box``: keep joints inside [lower, upper].

    Position robots: clip the target. Velocity robots: a joint at or past a finite
    limit gets zero velocity instead of one that drives it further out.
    """
    if limits.interface == 'position':
        out = np.clip(values, limits.lower, limits.upper)
    else:
        outward = (((state.position >= limits.upper) & (values > 0.0))
                   | ((state.position <= limits.lower) & (values < 0.0)))
        out = np.where(outward, 0.0, values)
    return _clamp_result('position_box', values, out, limits.names)


def _clamp_result(rule: str, before: np.ndarray, after: np.ndarray,
                  names: tuple[str, ...]) -> RuleResult:
    changed = np.flatnonzero(after != before)
    if changed.size == 0:
        return RuleResult(before, False)
    shown = ', '.join(f'{names[i]} {before[i]:.4g}->{after[i]:.4g}'
                      for i in changed[:_MAX_JOINTS_IN_REASON])
    more = f' (+{changed.size - _MAX_JOINTS_IN_REASON} more)' \
        if changed.size > _MAX_JOINTS_IN_REASON else ''
    return RuleResult(after, True, f'{rule}: {shown}{more}')
