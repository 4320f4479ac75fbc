"""
Clamping rules: each on the output of the previous; the most restrictive wins.

Rules (names as they appear in counters and diagnostics), in the order the filter runs them
(``limits.RULE_ORDER`` picks those of the robot's command interface); types and shapes are
in ``safety/limits.py``:

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
"""

from __future__ import annotations

import numpy as np

from dexmpc_ros.safety.limits import (
    MAX_JOINTS_IN_REASON,
    BodyRate,
    CommandLimits,
    MeasuredState,
    RuleResult,
    StampedValue,
)

#: Points sampled on the joint-space line from the measured state to the command when
#: checking the workspace box (endpoints included).
WORKSPACE_SAMPLES = 17


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
                      for i in changed[:MAX_JOINTS_IN_REASON])
    more = f' (+{changed.size - MAX_JOINTS_IN_REASON} more)' \
        if changed.size > MAX_JOINTS_IN_REASON else ''
    return RuleResult(after, True, f'{rule}: {shown}{more}')
