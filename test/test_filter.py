"""The command filter (safety/filter.py): rule order, decisions, every rule through it, fuzz."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.safety.filter import Decision, FilterSettings, Inputs, filter_command
from dexmpc_ros.safety.limits import (
    REJECT_RULES,
    BodyRate,
    CommandLimits,
    MeasuredState,
    RateBucket,
    StampedValue,
)
from dexmpc_ros.safety.rejection_rules import plan_violation
from test_limits import (
    INF,
    MS,
    NAN,
    NEAR_TABLE,
    NOW,
    box_excess,
    floor_crossing,
    line,
    position_spec,
    state,
    velocity_spec,
)

SETTINGS = FilterSettings(age_budget_ns=250 * MS, future_tolerance_ns=50 * MS,
                          state_timeout_ns=250 * MS)
PLAN = replace(SETTINGS, check_plan=True, report_lag_ns=100 * MS)
UNCERTAIN = replace(SETTINGS, uncertainty_slow=0.5, uncertainty_hold=1.0,
                    report_lag_ns=100 * MS, slow_factor=0.5)
_DEFAULT = object()


@pytest.fixture
def pos() -> CommandLimits:
    return CommandLimits.from_spec(position_spec())


@pytest.fixture
def vel() -> CommandLimits:
    return CommandLimits.from_spec(velocity_spec())


@pytest.fixture(scope='module')
def widowx() -> CommandLimits:
    return CommandLimits.from_spec(load_robot_spec('widowx'))


@pytest.fixture(scope='module')
def roach() -> CommandLimits:
    return CommandLimits.from_spec(load_robot_spec('roach'))


def run(limits: CommandLimits, values, names=None, stamp_ns: int = NOW,
        measured: MeasuredState | None | object = _DEFAULT,
        settings: FilterSettings = SETTINGS, now_ns: int = NOW, **inputs) -> Decision:
    """filter_command with a fresh state in the middle of the box (unless given)."""
    names = list(limits.names) if names is None else names
    if measured is _DEFAULT:
        middle = (np.maximum(limits.lower, -1.0) + np.minimum(limits.upper, 1.0)) / 2
        measured = state(middle if limits.interface == 'position' else np.zeros(len(middle)))
    return filter_command(limits, settings, names, np.asarray(values, dtype=np.float64),
                          stamp_ns, Inputs(now_ns, measured, **inputs))


# Settings -----------------------------------------------------------------------------
def test_filter_settings_defaults_leave_the_opt_in_rules_off():
    assert SETTINGS.rate_hz == INF and SETTINGS.burst == 1.0
    assert (SETTINGS.stall_fraction, SETTINGS.stall_velocity) == (0.95, 0.05)
    assert not SETTINGS.check_plan and not SETTINGS.gate_uncertainty
    assert replace(SETTINGS, uncertainty_slow=3.0).gate_uncertainty
    assert replace(SETTINGS, uncertainty_hold=3.0).gate_uncertainty
    assert UNCERTAIN.gate_uncertainty


# Decisions ----------------------------------------------------------------------------
def test_filter_passes_a_good_command_unchanged(pos):
    decision = run(pos, [0.05, 1.02, -0.1], measured=state([0.0, 1.0, 0.0]))
    assert decision.action == 'pass' and decision.fired == () and decision.reason == ''
    assert decision.accepted
    np.testing.assert_array_equal(decision.values, [0.05, 1.02, -0.1])
    assert decision.values.dtype == np.float64
    assert decision.bucket == RateBucket(0.0, None)  # rate limiting off: bucket untouched


def test_filter_output_does_not_alias_input(pos):
    values = np.array([0.05, 1.02, -0.1])
    decision = run(pos, values, measured=state([0.0, 1.0, 0.0]))
    values[:] = 99.0
    np.testing.assert_array_equal(decision.values, [0.05, 1.02, -0.1])


def test_filter_most_restrictive_wins(pos):
    # j0: box 1.0, step 0.6, velocity 0.7 -> 0.6. j1: box 2.0, step 1.2, velocity 1.05 -> 1.05
    decision = run(pos, [5.0, 3.0, 0.0], measured=state([0.5, 1.0, 0.0]))
    assert decision.action == 'clamp' and decision.fired == ('step', 'velocity')
    np.testing.assert_allclose(decision.values, [0.6, 1.05, 0.0], rtol=0, atol=1e-15)
    assert decision.reason.startswith('step: j0 5->0.6, j1 3->1.2; velocity: j1 1.2->1.05')
    # near the limit the box is the tighter one: step gives 1.05, the box 1.0
    decision = run(pos, [5.0, 1.0, 0.0], measured=state([0.95, 1.0, 0.0]))
    assert decision.fired == ('step', 'position_box')
    np.testing.assert_array_equal(decision.values, [1.0, 1.0, 0.0])
    # a small move toward an out-of-box target: the box has the last word
    decision = run(pos, [-5.0, 1.0, 0.0], measured=state([-0.95, 1.0, 0.0]))
    assert decision.fired == ('step', 'position_box') and decision.values[0] == -1.0
    decision = run(pos, [-1.02, 1.0, 0.0], measured=state([-0.95, 1.0, 0.0]))
    assert decision.fired == ('position_box',) and decision.values[0] == -1.0


def test_filter_measured_outside_box_never_commands_outside_it(pos):
    measured = state([1.3, 1.0, 0.0])
    for target in (5.0, 1.3, 1.25, 0.0):
        decision = run(pos, [target, 1.0, 0.0], measured=measured)
        assert decision.values[0] == pytest.approx(1.0)  # the box edge, never beyond


def test_filter_reorders_then_clamps_per_joint(pos):
    decision = run(pos, [0.0, 9.0, 0.04], names=['j2', 'j0', 'j1'],
                   measured=state([0.0, 0.0, 0.0]))
    assert decision.action == 'clamp' and decision.fired == ('step',)
    np.testing.assert_allclose(decision.values, [0.1, 0.04, 0.0], rtol=0, atol=1e-15)


def test_filter_reports_every_rejection_and_skips_clamps(pos):
    stale = state([0.0, 1.0, 0.0], stamp_ns=NOW - 10 * 250 * MS)
    decision = run(pos, [NAN, 99.0, 0.0], stamp_ns=NOW - 300 * MS, measured=stale)
    assert decision.action == 'reject' and decision.values is None
    assert decision.fired == ('finite', 'age', 'stale_state')
    assert all(rule in decision.reason for rule in decision.fired)
    decision = run(pos, [INF], names=['j0'], measured=None)
    assert decision.fired == ('finite', 'names', 'stale_state') and not decision.accepted
    # every rejection rule at once, reported in REJECT_RULES order
    everything = replace(SETTINGS, rate_hz=10.0, check_plan=True, uncertainty_hold=1.0)
    decision = run(pos, [NAN], names=['j0'], stamp_ns=NOW - 300 * MS, measured=None,
                   settings=everything, bucket=RateBucket(0.0, NOW))
    assert decision.fired == REJECT_RULES
    assert decision.reason.count('; ') == len(REJECT_RULES) - 1


@pytest.mark.parametrize('bad', [NAN, INF, -INF])
def test_filter_never_clamps_a_non_finite_value_into_range(pos, bad):
    decision = run(pos, [0.0, bad, 0.0], measured=state([0.0, 1.0, 0.0]))
    assert decision.action == 'reject' and decision.fired == ('finite',)


def test_filter_empty_command_is_rejected(pos):
    decision = run(pos, [], names=[])
    assert decision.action == 'reject' and decision.fired == ('names',)


def test_filter_velocity_robot(vel):
    measured = state([0.0, 0.0, 1.0], velocity=[40.0, 0.0, 0.0])
    decision = run(vel, [100.0, 5.0, 4.0], measured=measured)
    # left: step to 60, speed to 50; right: fine; tilt: step to 2, then stopped at its limit
    assert decision.action == 'clamp'
    assert decision.fired == ('step', 'velocity', 'position_box')
    np.testing.assert_array_equal(decision.values, [50.0, 5.0, 0.0])
    assert run(vel, [45.0, -10.0, -1.0], measured=measured).action == 'pass'
    decision = run(vel, [0.0, 0.0, 0.0], measured=state([0.0, 0.0, 0.0], [NAN] * 3))
    assert decision.fired == ('stale_state',)


# rate ---------------------------------------------------------------------------------
def test_filter_rejects_a_burst_with_rule_rate(pos):
    settings = replace(SETTINGS, rate_hz=10.0, burst=2.0)
    measured = state([0.0, 1.0, 0.0])
    bucket = RateBucket(0.0, None)
    actions = []
    for now in (NOW, NOW, NOW, NOW + 99 * MS, NOW + 101 * MS, NOW + 101 * MS):
        decision = run(pos, [0.0, 1.0, 0.0], measured=measured, settings=settings,
                       now_ns=now, stamp_ns=now, bucket=bucket)
        bucket = decision.bucket
        actions.append(decision.fired)
    # two back to back, then one token per 100 ms: 0.99 at +99 ms is not enough, but the
    # fraction is kept, so 2 ms later there are 1.01
    assert actions == [(), (), ('rate',), ('rate',), (), ('rate',)]
    assert decision.reason == 'rate: more than 10 commands/s (burst 2)'
    assert decision.values is None


def test_filter_every_command_takes_a_token_even_a_rejected_one(pos):
    settings = replace(SETTINGS, rate_hz=10.0, burst=2.0)
    garbage = run(pos, [NAN, 0.5, 0.0], settings=settings)
    assert garbage.fired == ('finite',) and garbage.bucket == RateBucket(1.0, NOW)
    decision = run(pos, [0.0, 0.5, 0.0], settings=settings, bucket=garbage.bucket)
    assert decision.action == 'pass' and decision.bucket == RateBucket(0.0, NOW)


def test_filter_rate_is_off_by_default(pos):
    bucket = RateBucket(0.0, None)
    for _ in range(100):
        decision = run(pos, [0.0, 0.5, 0.0], bucket=bucket)
        assert decision.action == 'pass'
        bucket = decision.bucket


# effort -------------------------------------------------------------------------------
def test_filter_effort_stops_a_stalled_joint_pushing_further(pos):
    # j0 at its effort limit (2 N m), j1 at -4 N m, both still: stalled. j2 at half its limit.
    measured = state([0.2, 1.0, 5.0], effort=[2.0, -4.0, 0.5])
    decision = run(pos, [0.25, 0.97, 5.05], measured=measured)
    assert decision.fired == ('effort',)
    np.testing.assert_array_equal(decision.values, [0.2, 1.0, 5.05])
    assert run(pos, [0.15, 1.03, 4.95], measured=measured).action == 'pass'  # backing off
    moving = state([0.2, 1.0, 5.0], velocity=[0.06, -0.06, 0.0], effort=[2.0, -4.0, 0.5])
    assert run(pos, [0.25, 0.97, 5.05], measured=moving).action == 'pass'
    custom = replace(SETTINGS, stall_fraction=0.5, stall_velocity=0.1)
    decision = run(pos, [0.25, 0.97, 5.05], measured=moving, settings=custom)
    np.testing.assert_array_equal(decision.values, [0.2, 1.0, 5.0])  # j2: 0.5 >= 0.5 x 1


def test_filter_effort_velocity_robot(vel):
    measured = state([0.0, 0.0, 0.0], velocity=[0.0, 0.0, 0.0], effort=[0.5, 0.1, -2.0])
    decision = run(vel, [10.0, 10.0, -1.0], measured=measured)
    assert decision.fired == ('effort',)
    np.testing.assert_array_equal(decision.values, [0.0, 10.0, 0.0])


# workspace ----------------------------------------------------------------------------
@pytest.mark.parametrize('lower_by, fired', [(0.1, ('workspace',)), (0.4, ('step', 'workspace'))])
def test_filter_widowx_workspace_stops_the_gripper_above_the_table(widowx, lower_by, fired):
    q = np.r_[NEAR_TABLE, 0.03]
    cmd = q + [0.0, lower_by, lower_by, 0.0, 0.0, 0.0, 0.004]
    decision = run(widowx, cmd, measured=state(q))
    assert decision.action == 'clamp' and decision.fired == fired
    out = decision.values
    assert out[6] == cmd[6]  # gripper: within its step, untouched
    # the step rule first shortens the move to 0.15 rad per joint; the workspace rule then
    # keeps the part of that straight line down to the last sample above the floor
    target = np.minimum(cmd[:6], q[:6] + 0.15)
    t_kept = np.floor(floor_crossing(q[:6], target) * 16) / 16
    np.testing.assert_allclose(out[:6], q[:6] + t_kept * (target - q[:6]), rtol=0, atol=1e-15)
    assert (box_excess(line(q[:6], out[:6])) == 0.0).all()
    assert box_excess(target) > 0.0


# body_rate ----------------------------------------------------------------------------
def test_filter_roach_body_rate(roach):
    measured = state([0.0, 0.0], velocity=[40.0, 40.0])
    calm = BodyRate(np.array([1.0, -1.0, 0.5]), NOW)
    decision = run(roach, [40.0, 50.0], measured=measured, body=calm)
    assert decision.action == 'pass'
    spinning = BodyRate(np.array([1.0, -1.0, 3.5]), NOW)
    decision = run(roach, [40.0, 50.0], measured=measured, body=spinning)
    assert decision.fired == ('body_rate',)
    np.testing.assert_array_equal(decision.values, [45.0, 45.0])
    # tumbling: the legs stop at once, even though that is more than one max_step (20)
    tumbling = BodyRate(np.array([0.0, 6.5, 0.0]), NOW)
    decision = run(roach, [40.0, 40.0], measured=measured, body=tumbling)
    assert decision.fired == ('body_rate',)
    np.testing.assert_array_equal(decision.values, [0.0, 0.0])


@pytest.mark.parametrize('body, rejected', [
    (None, True),
    (BodyRate(np.zeros(3), NOW - 250 * MS - 1), True),
    (BodyRate(np.array([NAN, 0.0, 0.0]), NOW), True),
    (BodyRate(np.zeros(3), NOW - 250 * MS), False),
])
def test_filter_roach_needs_a_fresh_body_rate(roach, body, rejected):
    decision = run(roach, [10.0, 10.0], measured=state([0.0, 0.0]), body=body)
    assert decision.fired == (('stale_state',) if rejected else ())
    assert ('body rate' in decision.reason) == rejected


# plan ---------------------------------------------------------------------------------
def test_filter_plan_rule(pos):
    measured = state([0.0, 1.0, 0.0])
    spec = position_spec()
    good = plan_violation(['j0', 'j1'], np.array([[0.0, 1.0], [0.1, 1.5]]), spec.joint_names,
                          spec.limits_array('lower', False), spec.limits_array('upper', False),
                          0.0)
    bad = plan_violation(['j0', 'j1'], np.array([[0.0, 1.0], [0.1, 2.5]]), spec.joint_names,
                         spec.limits_array('lower', False), spec.limits_array('upper', False),
                         0.0)
    assert good == '' and bad == 'step 1: j1=2.5 outside [0, 2]'
    cmd = [0.0, 1.0, 0.0]
    decision = run(pos, cmd, measured=measured, settings=PLAN)
    assert decision.fired == ('plan',) and decision.reason == 'plan: no plan received'
    decision = run(pos, cmd, measured=measured, settings=PLAN, plan=StampedValue(NOW, bad))
    assert decision.fired == ('plan',)
    assert decision.reason == 'plan: step 1: j1=2.5 outside [0, 2]'
    # the lag is measured from the command's stamp, not from now
    older = NOW - 200 * MS
    decision = run(pos, cmd, stamp_ns=older, measured=measured, settings=PLAN,
                   plan=StampedValue(older - 100 * MS, good))
    assert decision.action == 'pass'
    decision = run(pos, cmd, stamp_ns=older, measured=measured, settings=PLAN,
                   plan=StampedValue(older - 100 * MS - 1, good))
    assert decision.fired == ('plan',) and 'older than the command' in decision.reason
    # off by default: no plan or a bad one does not matter
    assert run(pos, cmd, measured=measured, plan=StampedValue(NOW, bad)).action == 'pass'


# uncertainty --------------------------------------------------------------------------
@pytest.mark.parametrize('report, action', [
    (None, 'reject'),
    (StampedValue(NOW - 100 * MS - 1, 0.1), 'reject'),              # older than the lag
    (StampedValue(NOW, 1.0), 'reject'),                             # at the hold threshold
    (StampedValue(NOW, NAN), 'reject'),
    (StampedValue(NOW, float(np.nextafter(1.0, 0.0))), 'clamp'),    # just below: slowed
    (StampedValue(NOW, 0.5), 'clamp'),                              # at the slow threshold
    (StampedValue(NOW - 100 * MS, float(np.nextafter(0.5, 0.0))), 'pass'),
])
def test_filter_uncertainty_holds_or_slows(pos, report, action):
    decision = run(pos, [0.3, 0.98, 5.0], measured=state([0.2, 1.0, 5.0]),
                   settings=UNCERTAIN, uncertainty=report)
    assert decision.action == action
    assert decision.fired == (() if action == 'pass' else ('uncertainty',))
    if action == 'clamp':  # q + 0.5 (cmd - q)
        np.testing.assert_allclose(decision.values, [0.25, 0.99, 5.0], rtol=0, atol=1e-15)
    if action == 'pass':
        np.testing.assert_array_equal(decision.values, [0.3, 0.98, 5.0])


def test_filter_uncertainty_scales_before_the_step_and_for_velocity_robots(pos, vel):
    fresh = StampedValue(NOW, 0.7)
    decision = run(pos, [0.5, 1.0, 0.0], measured=state([0.0, 1.0, 0.0]),
                   settings=UNCERTAIN, uncertainty=fresh)
    assert decision.fired == ('uncertainty', 'step')  # 0.5 -> 0.25 -> 0.1
    np.testing.assert_allclose(decision.values, [0.1, 1.0, 0.0], rtol=0, atol=1e-15)
    measured = state([0.0, 0.0, 0.0], velocity=[10.0, -20.0, 1.0])
    decision = run(vel, [10.0, -20.0, 1.0], measured=measured, settings=UNCERTAIN,
                   uncertainty=fresh)
    assert decision.fired == ('uncertainty',)
    np.testing.assert_array_equal(decision.values, [5.0, -10.0, 0.5])
    # only a hold threshold: no slowing below it
    hold_only = replace(SETTINGS, uncertainty_hold=1.0, report_lag_ns=100 * MS)
    decision = run(vel, [10.0, -20.0, 1.0], measured=measured, settings=hold_only,
                   uncertainty=fresh)
    assert decision.action == 'pass'


@pytest.mark.parametrize('value', [NAN, INF])
def test_filter_uncertainty_off_ignores_any_report(pos, value):
    decision = run(pos, [0.25, 1.0, 5.0], measured=state([0.2, 1.0, 5.0]),
                   uncertainty=StampedValue(NOW, value))
    assert decision.action == 'pass'


# Seeded fuzz ----------------------------------------------------------------------------
FUZZ = replace(SETTINGS, rate_hz=10.0, burst=3.0)


def _fuzz_values(rng: np.random.Generator, m: int, center: np.ndarray) -> np.ndarray:
    kind = rng.choice(4, p=[0.4, 0.25, 0.25, 0.1])
    if kind == 0:
        return center + rng.normal(0.0, 0.03, m)  # mostly inside the step
    if kind == 1:
        return rng.normal(0.0, 10.0, m)
    if kind == 2:
        return rng.choice([1e300, -1e300, 1e9, -1e9, 0.0], m)
    values = center + rng.normal(0.0, 1.0, m)
    values[rng.integers(m)] = rng.choice([NAN, INF, -INF])
    return values


def _fuzz_names(rng: np.random.Generator, names: tuple[str, ...]) -> tuple[list[str], bool]:
    """Return (names, whether they must be rejected)."""
    good = list(names)
    kind = rng.choice(6, p=[0.35, 0.35, 0.075, 0.075, 0.075, 0.075])
    if kind == 0:
        return good, False
    if kind == 1:
        return list(rng.permutation(good)), False
    if kind == 2:
        return good[:-1], True
    if kind == 3:
        return good + ['intruder'], True
    if kind == 4:
        return [good[0]] + good[:-1], True
    return good[:-1] + ['passive'], True


def _fuzz_state(rng: np.random.Generator, limits: CommandLimits) -> tuple:
    """(position, velocity, effort or None) of a plausible measured state."""
    m = len(limits.names)
    lo = np.where(np.isfinite(limits.lower), limits.lower, -10.0)
    hi = np.where(np.isfinite(limits.upper), limits.upper, 10.0)
    position = rng.uniform(lo, hi)
    edge = (rng.random(m) < 0.15) & np.isfinite(limits.lower) & np.isfinite(limits.upper)
    if limits.interface == 'position':
        # slightly outside (soft limits), by less than any step bound (0.05)
        past = rng.uniform(0.0, 0.02, m)
    else:
        past = rng.choice([0.0, 0.0, 0.3], m)  # at the limit, or beyond it
    position = np.where(edge, np.where(rng.random(m) < 0.5, lo - past, hi + past), position)
    kind = rng.choice(3, size=m, p=[0.5, 0.4, 0.1])
    velocity = np.select([kind == 0, kind == 1],
                         [rng.uniform(-limits.velocity, limits.velocity),
                          rng.uniform(-0.05, 0.05, m)], NAN)
    if limits.interface == 'velocity':  # unknown speeds are a stale state there: rarer
        velocity = np.where(np.isnan(velocity) & (rng.random(m) < 0.8), 0.0, velocity)
    if rng.random() < 0.2:
        return position, velocity, None
    effort = rng.choice([-0.95, 0.95], m) * limits.effort
    effort = np.where(rng.random(m) < 0.7, rng.uniform(-1.2, 1.2, m) * limits.effort, effort)
    effort = np.where(rng.random(m) < 0.1, NAN, effort)
    return position, velocity, effort


@pytest.mark.parametrize('spec_factory, trials', [(position_spec, 20_000),
                                                  (velocity_spec, 8_000)])
def test_fuzz_output_always_finite_and_within_limits(spec_factory, trials):
    limits = CommandLimits.from_spec(spec_factory())
    m = len(limits.names)
    rng = np.random.default_rng(20240611)
    counts = {'pass': 0, 'clamp': 0, 'reject': 0}
    fired_counts = dict.fromkeys(('step', 'velocity', 'effort', 'position_box'), 0)
    for _ in range(trials):
        position, velocity, effort = _fuzz_state(rng, limits)
        state_age = int(rng.choice([0, 250 * MS, 251 * MS], p=[0.6, 0.3, 0.1]))
        measured = None if rng.random() < 0.03 else \
            state(position, velocity, NOW - state_age, effort)
        command_age = int(rng.choice([0, 250 * MS, -50 * MS, 251 * MS, -51 * MS],
                                     p=[0.5, 0.2, 0.2, 0.05, 0.05]))
        # rate 10 Hz, burst 3: tokens + elapsed / 100 ms, never exactly 1 unless given so
        tokens = float(rng.choice([0.0, 0.25, 1.0, 2.5], p=[0.1, 0.1, 0.2, 0.6]))
        elapsed = int(rng.choice([0, 50 * MS]))
        fresh = rng.random() < 0.3
        bucket = RateBucket(tokens, None if fresh else NOW - elapsed)
        available = 3.0 if fresh else min(3.0, tokens + elapsed / (100 * MS))
        names, bad_names = _fuzz_names(rng, limits.names)
        values = _fuzz_values(rng, m, position if limits.interface == 'position' else velocity)
        if rng.random() < 0.03:
            values = values[:rng.integers(m)]
        given = dict(zip(names, values))
        decision = filter_command(limits, FUZZ, names, values, NOW - command_age,
                                  Inputs(NOW, measured, bucket=bucket))
        counts[decision.action] += 1
        must_reject = (bad_names or len(values) != len(names)
                       or not np.isfinite(values).all() or measured is None
                       or state_age > 250 * MS or command_age > 250 * MS
                       or command_age < -50 * MS or available < 1.0
                       or (limits.interface == 'velocity' and not np.isfinite(velocity).all()))
        assert (decision.action == 'reject') == must_reject, (names, values, decision)
        left = available - (0.0 if available < 1.0 else 1.0)
        assert decision.bucket.tokens == pytest.approx(left, abs=1e-12)
        assert decision.bucket.stamp_ns == NOW
        if must_reject:
            assert decision.values is None and decision.fired and decision.reason
            continue
        out = decision.values
        assert out.shape == (m,) and out.dtype == np.float64 and np.isfinite(out).all()
        ordered = np.array([given[n] for n in limits.names])
        q, qdot = measured.position, measured.velocity
        tau = np.full(m, NAN) if effort is None else effort
        with np.errstate(invalid='ignore'):
            stalled = (np.isfinite(tau) & (np.abs(tau) >= 0.95 * limits.effort)
                       & ~(np.abs(qdot) > 0.05))
        if limits.interface == 'position':
            assert np.all((out >= limits.lower) & (out <= limits.upper))
            bound = np.minimum(limits.max_step, limits.velocity * limits.period_s)
            assert np.all(np.abs(out - q) <= bound + 1e-12)
            # a stalled joint never pushes further (where the box does not move it)
            inside = (q >= limits.lower) & (q <= limits.upper)
            assert not np.any(stalled & inside & (np.sign(out - q) * np.sign(tau) > 0))
        else:
            assert np.all(np.abs(out) <= limits.velocity)
            at_upper, at_lower = q >= limits.upper, q <= limits.lower
            assert not np.any(at_upper & (out > 0)) and not np.any(at_lower & (out < 0))
            free = ~(at_upper | at_lower)  # there the box may stop a fast joint at once
            assert np.all(np.abs(out - qdot)[free] <= limits.max_step[free] + 1e-12)
            assert not np.any(stalled & (np.sign(out) * np.sign(tau) > 0))
        if decision.action == 'pass':
            np.testing.assert_array_equal(out, ordered)
            assert decision.fired == ()
        else:
            assert decision.fired and set(decision.fired) <= set(fired_counts)
            assert not np.array_equal(out, ordered)
            for rule in decision.fired:
                fired_counts[rule] += 1
    assert min(counts.values()) > trials // 20, counts  # every outcome was exercised
    assert min(fired_counts.values()) > trials // 200, fired_counts  # and every clamp


def test_fuzz_widowx_never_leaves_the_workspace_from_inside(widowx):
    # Measured poses at least one step (0.15 rad) inside the joint limits, so position_box
    # (which runs after the workspace rule) never moves the arm; at the joint limits see
    # test_filter_widowx_workspace_holds_at_a_joint_limit.
    rng = np.random.default_rng(20240612)
    lo, hi = widowx.lower, widowx.upper
    arm_lo, arm_hi = lo[:6] + 0.16, hi[:6] - 0.16
    trials, fired = 3_000, 0
    for _ in range(trials):
        while True:  # a measured pose with the gripper inside the box, often near the table
            if rng.random() < 0.7:
                arm = np.clip(NEAR_TABLE + rng.normal(0.0, 0.3, 6), arm_lo, arm_hi)
            else:
                arm = rng.uniform(arm_lo, arm_hi)
            if box_excess(arm) == 0.0:
                break
        q = np.r_[arm, rng.uniform(lo[6], hi[6])]
        cmd = q + rng.normal(0.0, rng.choice([0.02, 0.1, 0.5]), 7)
        decision = filter_command(widowx, SETTINGS, widowx.names, cmd, NOW,
                                  Inputs(NOW, state(q)))
        assert decision.accepted, decision
        out = decision.values
        assert box_excess(out[:6]) == 0.0, (q, cmd, decision)
        assert np.all((out >= lo) & (out <= hi))
        fired += 'workspace' in decision.fired
    assert fired > trials // 30, fired


def test_filter_widowx_workspace_holds_at_a_joint_limit(widowx):
    # wrist_angle 5 cm below its upper limit; shoulder and wrist both +0.15 rad: lowering
    # the shoulder drops the gripper, raising the wrist lifts it
    q = np.r_[0.0, 0.85, -0.2, 0.0, widowx.upper[4] - 0.05, 0.0, 0.03]
    cmd = q + [0.0, 0.15, 0.0, 0.0, 0.15, 0.0, 0.0]
    assert box_excess(q[:6]) == 0.0 and box_excess(cmd[:6]) > 0.0
    decision = run(widowx, cmd, measured=state(q))
    assert 'workspace' in decision.fired
    assert decision.values[4] <= widowx.upper[4]
    # the box limit wins over the end of the line, but the gripper must stay in the box
    assert box_excess(decision.values[:6]) == 0.0


def test_fuzz_widowx_samples_of_the_shortened_move_stay_inside(widowx):
    # the end point is the safety claim; every sample of the kept move is the rule's method
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(1000):
        arm = NEAR_TABLE + rng.normal(0.0, 0.1, 6)
        if box_excess(arm) > 0.0:
            continue
        q = np.r_[arm, 0.03]
        cmd = q + np.r_[rng.normal(0.0, 0.1, 6), 0.0]
        decision = filter_command(widowx, SETTINGS, widowx.names, cmd, NOW,
                                  Inputs(NOW, state(q)))
        if 'workspace' in decision.fired:
            checked += 1
            assert (box_excess(line(q[:6], decision.values[:6])) == 0.0).all()
            assert decision.values[6] == cmd[6]
    assert checked > 60, checked
