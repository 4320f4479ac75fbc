"""
Safety rules on one command, as pure functions (no rclpy, no state).

Each rule is one named function that takes the command (and what it needs to judge it) and
returns a :class:`RuleResult`: the command, possibly modified (``None`` when the rule
rejects it), whether the rule fired, and why. :func:`filter_command` runs the rules in the
fixed order of :data:`RULE_ORDER` and folds them into a :class:`Decision`.

Rules (names as they appear in counters and diagnostics):

``finite``        reject a command holding NaN or +-inf.
``names``         reject unknown, missing or duplicate joint names and a names/values length
                  mismatch; reorder a command given in another order into spec command order.
``age``           reject a command whose stamp (the observation it came from) is older than
                  the budget, or newer than ``now`` by more than the future tolerance.
``stale_state``   reject when no valid ``joint_states`` arrived within the state timeout
                  (every clamp below is relative to the measured state).
``position_box``  position robots: clamp to [lower, upper]. Velocity robots: zero the
                  components that would drive a joint further past a finite position limit.
``step``          position robots: clamp |cmd - measured| <= min(max_step, velocity * dt).
                  Velocity robots: clamp |cmd - measured velocity| <= max_step, then
                  |cmd| <= velocity.

Shapes: m = number of actuated joints (command length); every array is float64, command
order (``RobotSpec.command_names``). Times are integer nanoseconds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from dexmpc_ros.core.robot_spec import RobotSpec

RULES = ('finite', 'names', 'age', 'stale_state', 'position_box', 'step')
REJECT_RULES = ('finite', 'names', 'age', 'stale_state')

#: Rule order per command interface. Rejections come first and all run, so every reason
#: is reported. Of the two clamps the one applied last is the one that holds when they
#: disagree (only possible when the measured state lies outside the limits):
#: both end with ``position_box``, so no command ever leaves the limits of the robot YAML,
#: even when the measured state sits slightly outside them (MuJoCo's soft limits, a servo
#: pushed by contact): the joint is then sent to the box edge, a jump no larger than the
#: step limit plus how far it already was outside. Velocity robots: ``step`` ends with
#: the speed limit, and the box rule zeroes speeds that push further out.
RULE_ORDER = {
    'position': ('finite', 'names', 'age', 'stale_state', 'step', 'position_box'),
    'velocity': ('finite', 'names', 'age', 'stale_state', 'step', 'position_box'),
}

_MAX_JOINTS_IN_REASON = 4


class RuleResult(NamedTuple):
    """Outcome of one rule: values (m,) or None when rejected, whether it fired, why."""

    values: np.ndarray | None
    fired: bool
    reason: str = ''


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
    """

    action: str
    values: np.ndarray | None
    fired: tuple[str, ...] = ()
    reason: str = ''

    @property
    def accepted(self) -> bool:
        """True when there is a command to send (passed or clamped)."""
        return self.values is not None


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
        period_s: control period dt [s].
        step_bound: (m,) position robots' per-step bound min(max_step, velocity * dt).
        index: joint name -> position in the command.
    """

    names: tuple[str, ...]
    interface: str
    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray
    max_step: np.ndarray
    period_s: float
    step_bound: np.ndarray = field(init=False)
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, 'step_bound',
                           np.minimum(self.max_step, self.velocity * self.period_s))
        object.__setattr__(self, 'index', {n: i for i, n in enumerate(self.names)})

    @classmethod
    def from_spec(cls, spec: RobotSpec) -> CommandLimits:
        """Command limits of the actuated joints of ``spec``."""
        return cls(names=tuple(spec.command_names), interface=spec.command_interface,
                   lower=spec.limits_array('lower'), upper=spec.limits_array('upper'),
                   velocity=spec.limits_array('velocity'),
                   max_step=spec.limits_array('max_step'), period_s=spec.period_s)


@dataclass(frozen=True, eq=False)
class MeasuredState:
    """
    The newest measured state of the actuated joints.

    Attributes:
        position: (m,) measured positions [rad or m], command order.
        velocity: (m,) measured velocities [rad/s or m/s], command order (NaN if unknown).
        stamp_ns: stamp of the ``joint_states`` message [ns].
    """

    position: np.ndarray
    velocity: np.ndarray
    stamp_ns: int


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


def check_age(stamp_ns: int, now_ns: int, budget_ns: int, future_tolerance_ns: int
              ) -> RuleResult:
    """
    Rule ``age``: now - stamp must lie in [-future_tolerance, budget] (both ends allowed).

    Returns values None on rejection and an empty array otherwise: the rule judges
    the stamp only.
    """
    age = now_ns - stamp_ns
    if age > budget_ns:
        return RuleResult(None, True, f'age: command {age * 1e-9:.3f} s old > budget '
                                      f'{budget_ns * 1e-9:.3f} s')
    if -age > future_tolerance_ns:
        return RuleResult(None, True, f'age: command stamped {-age * 1e-9:.3f} s in the '
                                      f'future > tolerance {future_tolerance_ns * 1e-9:.3f} s')
    return RuleResult(np.empty(0), False)


def check_stale_state(state: MeasuredState | None, now_ns: int, timeout_ns: int,
                      future_tolerance_ns: int, interface: str) -> RuleResult:
    """
    Rule ``stale_state``: a valid measured state newer than the timeout must exist.

    Valid means finite positions, and finite velocities for velocity robots (whose step
    rule is relative to the measured velocity).
    """
    if state is None:
        return RuleResult(None, True, 'stale_state: no joint_states received yet')
    age = now_ns - state.stamp_ns
    if age > timeout_ns:
        return RuleResult(None, True, f'stale_state: joint_states {age * 1e-9:.3f} s old > '
                                      f'timeout {timeout_ns * 1e-9:.3f} s')
    if -age > future_tolerance_ns:
        return RuleResult(None, True, f'stale_state: joint_states stamped {-age * 1e-9:.3f} s '
                                      'in the future')
    if not np.isfinite(state.position).all():
        return RuleResult(None, True, 'stale_state: joint_states position not finite')
    if interface == 'velocity' and not np.isfinite(state.velocity).all():
        return RuleResult(None, True, 'stale_state: joint_states velocity missing or not '
                                      'finite')
    return RuleResult(np.empty(0), False)


# Clamping rules --------------------------------------------------------------------------
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


def clamp_step(values: np.ndarray, limits: CommandLimits, state: MeasuredState
               ) -> RuleResult:
    """
    Rule ``step``: bound the change per control step relative to the measured state.

    Position robots: |cmd - q| <= min(max_step, velocity * dt). Velocity robots:
    |cmd - qdot| <= max_step, then |cmd| <= velocity (the speed limit wins).
    """
    if limits.interface == 'position':
        out = np.clip(values, state.position - limits.step_bound,
                      state.position + limits.step_bound)
    else:
        out = np.clip(values, state.velocity - limits.max_step,
                      state.velocity + limits.max_step)
        out = np.clip(out, -limits.velocity, limits.velocity)
    return _clamp_result('step', values, out, limits.names)


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


# The filter ------------------------------------------------------------------------------
def filter_command(limits: CommandLimits, names: Sequence[str], values: np.ndarray,
                   stamp_ns: int, now_ns: int, state: MeasuredState | None, *,
                   age_budget_ns: int, future_tolerance_ns: int, state_timeout_ns: int
                   ) -> Decision:
    """
    Run every rule on one command, in the order of ``RULE_ORDER[limits.interface]``.

    The rejection rules (``finite``, ``names``, ``age``, ``stale_state``) all run, so a
    rejected command reports every reason; the clamps run only on a command none of them
    rejected, each on the output of the previous one, so the most restrictive wins.

    Args:
        limits: the robot's command limits.
        names: joint names as the command gives them.
        values: command values (any length; checked here), positions or velocities.
        stamp_ns: command stamp = stamp of the observation it was computed from [ns].
        now_ns: current time on the supervisor's clock [ns].
        state: newest measured state, or None if none arrived yet.
        age_budget_ns: largest allowed command age [ns].
        future_tolerance_ns: largest allowed stamp ahead of ``now_ns`` [ns].
        state_timeout_ns: largest allowed age of the measured state [ns].

    Returns:
        The decision; its ``values`` (m,) float64 in command order when accepted.
    """
    values = np.array(values, dtype=np.float64).reshape(-1)  # a copy: never alias input
    by_name = check_names(names, values, limits)
    verdicts = (
        ('finite', check_finite(values)),
        ('names', by_name),
        ('age', check_age(stamp_ns, now_ns, age_budget_ns, future_tolerance_ns)),
        ('stale_state', check_stale_state(state, now_ns, state_timeout_ns,
                                          future_tolerance_ns, limits.interface)),
    )
    fired = [rule for rule, result in verdicts if result.fired]
    reasons = [result.reason for _, result in verdicts if result.fired]
    if any(result.values is None for _, result in verdicts):
        return Decision('reject', None, tuple(fired), '; '.join(reasons))
    command = by_name.values
    for rule in RULE_ORDER[limits.interface][len(REJECT_RULES):]:
        result = _CLAMPS[rule](command, limits, state)
        if result.fired:
            fired.append(rule)
            reasons.append(result.reason)
        command = result.values
    return Decision('clamp' if fired else 'pass', command, tuple(fired), '; '.join(reasons))


_CLAMPS = {'position_box': clamp_position_box, 'step': clamp_step}
