"""
The command filter: run every rule (``rejection_rules.py``, ``clamp_rules.py``) on one
command and decide.

Order: every rejection rule runs (so a rejected command reports all its reasons); if none
rejected, the clamps of ``RULE_ORDER[interface]`` run, each on the previous one's output,
so the most restrictive wins and ``position_box`` has the last word. The one piece of state
a rule keeps (the ``rate`` token bucket) goes in and out explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dexmpc_ros.safety.clamp_rules import (
    clamp_body_rate,
    clamp_effort,
    clamp_position_box,
    clamp_step,
    clamp_velocity,
    clamp_workspace,
    scale_for_uncertainty,
)
from dexmpc_ros.safety.limits import (
    RULE_ORDER,
    BodyRate,
    CommandLimits,
    MeasuredState,
    RateBucket,
    RuleResult,
    StampedValue,
)
from dexmpc_ros.safety.rejection_rules import (
    check_age,
    check_finite,
    check_names,
    check_plan,
    check_rate,
    check_stale_state,
    check_uncertainty,
)


@dataclass(frozen=True)
class FilterSettings:
    """
    Budgets and thresholds of the rules, in the units the rules use.

    Attributes:
        age_budget_ns: largest command age [ns].
        future_tolerance_ns: largest stamp ahead of now [ns].
        state_timeout_ns: largest age of the measured state [ns].
        rate_hz: sustained command rate the ``rate`` rule allows [1/s].
        burst: commands the ``rate`` rule allows back to back.
        stall_fraction: fraction of the effort limit that counts as stalled.
        stall_velocity: speed below which a joint counts as not moving [rad/s or m/s].
        check_plan: the ``plan`` rule is on.
        report_lag_ns: how much older than a command its plan/uncertainty may be [ns].
        uncertainty_slow: uncertainty at which steps are scaled down (inf = off).
        uncertainty_hold: uncertainty at which commands are rejected (inf = off).
        slow_factor: step scale above ``uncertainty_slow``.
    """

    age_budget_ns: int
    future_tolerance_ns: int
    state_timeout_ns: int
    rate_hz: float = float('inf')
    burst: float = 1.0
    stall_fraction: float = 0.95
    stall_velocity: float = 0.05
    check_plan: bool = False
    report_lag_ns: int = 0
    uncertainty_slow: float = float('inf')
    uncertainty_hold: float = float('inf')
    slow_factor: float = 0.5

    @property
    def gate_uncertainty(self) -> bool:
        """True when either uncertainty threshold is set."""
        return self.uncertainty_slow < float('inf') or self.uncertainty_hold < float('inf')


@dataclass(frozen=True)
class Inputs:
    """
    What the supervisor knows when a command arrives.

    Attributes:
        now_ns: current time [ns].
        state: newest measured joint state, or None.
        body: newest measured body rate, or None.
        plan: (stamp, verdict) of the newest plan, or None.
        uncertainty: (stamp, value) of the newest uncertainty report, or None.
        bucket: the ``rate`` rule's token bucket.
    """

    now_ns: int
    state: MeasuredState | None
    body: BodyRate | None = None
    plan: StampedValue | None = None
    uncertainty: StampedValue | None = None
    bucket: RateBucket = RateBucket(0.0, None)


@dataclass(frozen=True)
class Decision:
    """
    What the supervisor does with one command.

    Attributes:
        action: ``pass`` (unchanged), ``clamp`` (modified to satisfy the limits) or
            ``reject`` (not sent).
        values: (m,) command in spec command order, or None when rejected.
        fired: names of the rules that fired, in the order they ran.
        reason: one human-readable line (empty when the command passed).
        bucket: the ``rate`` rule's token bucket after this command.
    """

    action: str
    values: np.ndarray | None
    fired: tuple[str, ...] = ()
    reason: str = ''
    bucket: RateBucket = RateBucket(0.0, None)

    @property
    def accepted(self) -> bool:
        """True when there is a command to send (passed or clamped)."""
        return self.values is not None


def filter_command(limits: CommandLimits, settings: FilterSettings, names: Sequence[str],
                   values: np.ndarray, stamp_ns: int, inputs: Inputs) -> Decision:
    """
    Run every rule on one command.

    Args:
        limits: the robot's command limits.
        settings: budgets and thresholds.
        names: joint names as the command gives them.
        values: command values as received (any length, maybe non-finite).
        stamp_ns: command stamp = stamp of the observation it was computed from [ns].
        inputs: measured state, controller reports and the token bucket.

    Returns:
        The decision; its ``values`` (m,) float64 in command order when accepted.
    """
    values = np.array(values, dtype=np.float64).reshape(-1)  # a copy: never alias input
    now = inputs.now_ns
    by_name = check_names(names, values, limits)
    rate, bucket = check_rate(inputs.bucket, now, settings.rate_hz, settings.burst)
    verdicts: list[tuple[str, RuleResult]] = [
        ('finite', check_finite(values)),
        ('names', by_name),
        ('age', check_age(stamp_ns, now, settings.age_budget_ns,
                          settings.future_tolerance_ns)),
        ('stale_state', check_stale_state(inputs.state, now, settings.state_timeout_ns,
                                          settings.future_tolerance_ns, limits, inputs.body)),
        ('rate', rate),
    ]
    if settings.check_plan:
        verdicts.append(('plan', check_plan(inputs.plan, stamp_ns, settings.report_lag_ns)))
    if settings.gate_uncertainty:
        verdicts.append(('uncertainty', check_uncertainty(
            inputs.uncertainty, stamp_ns, settings.report_lag_ns, settings.uncertainty_hold)))
    fired = [rule for rule, result in verdicts if result.fired]
    reasons = [result.reason for _, result in verdicts if result.fired]
    if any(result.values is None for _, result in verdicts):
        return Decision('reject', None, tuple(fired), '; '.join(reasons), bucket)

    command = by_name.values
    for rule in RULE_ORDER[limits.interface]:
        result = _CLAMPS[rule](command, limits, settings, inputs)
        if result.fired:
            fired.append(rule)
            reasons.append(result.reason)
        command = result.values
    return Decision('clamp' if fired else 'pass', command, tuple(fired), '; '.join(reasons),
                    bucket)


#: Clamp rules by name, each called as ``(values, limits, settings, inputs)`` (built once,
#: not per command: the filter runs at up to the fuzzers' 1 kHz).
_CLAMPS = {
    'uncertainty': lambda v, lim, cfg, inp: scale_for_uncertainty(
        v, lim, inp.state, inp.uncertainty, cfg.uncertainty_slow, cfg.slow_factor),
    'step': lambda v, lim, cfg, inp: clamp_step(v, lim, inp.state),
    'velocity': lambda v, lim, cfg, inp: clamp_velocity(v, lim, inp.state),
    'effort': lambda v, lim, cfg, inp: clamp_effort(v, lim, inp.state, cfg.stall_fraction,
                                                    cfg.stall_velocity),
    'workspace': lambda v, lim, cfg, inp: clamp_workspace(v, lim, inp.state),
    'body_rate': lambda v, lim, cfg, inp: clamp_body_rate(v, lim, inp.body),
    'position_box': lambda v, lim, cfg, inp: clamp_position_box(v, lim, inp.state),
}
