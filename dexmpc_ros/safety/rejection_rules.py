"""
Rejection rules: judge one command as a whole; all run, so every reason is reported.

Rules (names as they appear in counters and diagnostics; types and shapes in
``safety/limits.py``):

``finite``        NaN or +-inf anywhere.
``names``         unknown, missing or duplicate joint names, names/values length mismatch;
                  a command in another joint order is reordered (not a violation).
``age``           stamp (of the observation the command came from) older than the budget,
                  or ahead of now by more than the future tolerance.
``stale_state``   no valid ``joint_states`` within the state timeout (every clamp rule is
                  relative to the measured state); robots with body-rate limits also need
                  a fresh body rate (``odom`` or ``imu``).
``rate``          token bucket: commands arriving faster than the allowed rate (bursts).
``plan``          (opt-in) the controller's newest predicted trajectory leaves the limits,
                  or no recent one was published.
``uncertainty``   (opt-in) the controller's reported uncertainty is at or above the hold
                  threshold, or none was reported for this command.

:func:`check_well_formed` runs ``finite`` and ``names`` for the nodes behind the supervisor
(twin, drivers), so "is this command well-formed for this robot" has one implementation.

:func:`plan_violation` judges a controller's predicted trajectory; the ``plan`` rule checks
the newest verdict.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from dexmpc_ros.safety.limits import (
    MAX_JOINTS_IN_REASON,
    BodyRate,
    CommandLimits,
    MeasuredState,
    RateBucket,
    RuleResult,
    StampedValue,
    Workspace,
)


def check_finite(values: np.ndarray) -> RuleResult:
    """Rule ``finite``: reject any NaN or +-inf entry."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return RuleResult(values, False)
    where = np.flatnonzero(bad)
    shown = ', '.join(f'[{i}]={values[i]}' for i in where[:MAX_JOINTS_IN_REASON])
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
                                      f'{unknown[:MAX_JOINTS_IN_REASON]}')
    missing = [n for n in limits.names if n not in counts]
    if missing:
        more = ' ...' if len(missing) > MAX_JOINTS_IN_REASON else ''
        return RuleResult(None, True, f'names: missing joints '
                                      f'{missing[:MAX_JOINTS_IN_REASON]}{more}')
    if tuple(names) == limits.names:
        return RuleResult(values, False)
    where = {n: i for i, n in enumerate(names)}
    return RuleResult(values[[where[n] for n in limits.names]], False)


def check_well_formed(names: Sequence[str], values: np.ndarray, limits: CommandLimits
                      ) -> RuleResult:
    """
    Rules ``finite`` then ``names``: can the robot apply this command at all?

    What a twin or driver node re-checks behind the supervisor (which runs the two rules
    separately, to report both reasons). Returns the values in command order (a command in
    another joint order is reordered), or the first rule's rejection.
    """
    finite = check_finite(values)
    return finite if finite.fired else check_names(names, values, limits)


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
        return f'plan names unknown joints {unknown[:MAX_JOINTS_IN_REASON]}'
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
