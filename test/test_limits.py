"""Safety rules (safety/limits.py): every rule at its boundaries, the filter, a seeded fuzz."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dexmpc_ros.core.robot_spec import JointLimit, RobotSpec
from dexmpc_ros.safety.limits import (
    REJECT_RULES,
    RULE_ORDER,
    RULES,
    CommandLimits,
    Decision,
    MeasuredState,
    check_age,
    check_finite,
    check_names,
    check_stale_state,
    clamp_position_box,
    clamp_step,
    filter_command,
)

INF = float('inf')
MS = 1_000_000  # ns per ms
NOW = 1_000_000 * MS  # 1000 s: stamps far from zero, like wall-clock time
BUDGETS = dict(age_budget_ns=250 * MS, future_tolerance_ns=50 * MS, state_timeout_ns=250 * MS)


def position_spec() -> RobotSpec:
    """
    Three commanded joints at 10 Hz (dt = 0.1 s) and one passive joint.

    Per-step bounds min(max_step, velocity * dt): j0 0.1 (max_step binds), j1 0.05
    (velocity binds), j2 0.1 (continuous joint).
    """
    joints = (
        JointLimit('j0', -1.0, 1.0, velocity=2.0, max_step=0.1, effort=1.0),
        JointLimit('passive', -0.5, 0.5, velocity=1.0, max_step=0.1, effort=1.0,
                   actuated=False),
        JointLimit('j1', 0.0, 2.0, velocity=0.5, max_step=0.2, effort=1.0),
        JointLimit('j2', -INF, INF, velocity=1.0, max_step=0.3, effort=1.0),
    )
    return RobotSpec('pos', joints, 'position', 10.0, (0.0, 0.0, 1.0, 0.0))


def velocity_spec() -> RobotSpec:
    """Two continuous wheels and a joint with finite position limits, velocity-commanded."""
    joints = (
        JointLimit('left', -INF, INF, velocity=50.0, max_step=20.0, effort=1.0),
        JointLimit('right', -INF, INF, velocity=50.0, max_step=20.0, effort=1.0),
        JointLimit('tilt', -1.0, 1.0, velocity=5.0, max_step=2.0, effort=1.0),
    )
    return RobotSpec('vel', joints, 'velocity', 10.0, (0.0, 0.0, 0.0))


@pytest.fixture
def pos() -> CommandLimits:
    return CommandLimits.from_spec(position_spec())


@pytest.fixture
def vel() -> CommandLimits:
    return CommandLimits.from_spec(velocity_spec())


def state(position, velocity=None, stamp_ns: int = NOW) -> MeasuredState:
    position = np.asarray(position, dtype=np.float64)
    velocity = np.zeros_like(position) if velocity is None else np.asarray(velocity, float)
    return MeasuredState(position, velocity, stamp_ns)


def run(limits: CommandLimits, values, names=None, stamp_ns: int = NOW, now_ns: int = NOW,
        measured: MeasuredState | None = None) -> Decision:
    names = list(limits.names) if names is None else names
    if measured is None:
        middle = (np.maximum(limits.lower, -1.0) + np.minimum(limits.upper, 1.0)) / 2
        measured = state(middle if limits.interface == 'position' else np.zeros(len(middle)))
    return filter_command(limits, names, np.asarray(values, dtype=np.float64), stamp_ns, now_ns,
                          measured, **BUDGETS)


# Limits derived from the spec ----------------------------------------------------------
def test_command_limits_from_spec(pos):
    assert pos.names == ('j0', 'j1', 'j2')
    np.testing.assert_array_equal(pos.lower, [-1.0, 0.0, -INF])
    np.testing.assert_array_equal(pos.upper, [1.0, 2.0, INF])
    np.testing.assert_allclose(pos.step_bound, [0.1, 0.05, 0.1])
    assert pos.index == {'j0': 0, 'j1': 1, 'j2': 2}
    assert all(a.dtype == np.float64 for a in (pos.lower, pos.upper, pos.step_bound))


def test_rule_order_covers_every_rule_rejections_first():
    for interface, order in RULE_ORDER.items():
        assert sorted(order) == sorted(RULES), interface
        assert order[:len(REJECT_RULES)] == REJECT_RULES
    # the box is applied last for both: no command ever leaves the limits
    assert RULE_ORDER['position'][-1] == 'position_box'
    assert RULE_ORDER['velocity'][-1] == 'position_box'


# finite -------------------------------------------------------------------------------
@pytest.mark.parametrize('bad', [np.nan, INF, -INF])
@pytest.mark.parametrize('index', [0, 1, 2])
def test_finite_rejects_nan_and_inf_anywhere(bad, index):
    values = np.array([0.1, 0.2, 0.3])
    values[index] = bad
    result = check_finite(values)
    assert result.values is None and result.fired
    assert f'[{index}]' in result.reason and result.reason.startswith('finite')


def test_finite_passes_finite_and_empty_and_extreme_values():
    values = np.array([0.0, -1e300, 1e300, 5e-324])
    result = check_finite(values)
    assert not result.fired and result.values is values
    assert not check_finite(np.empty(0)).fired


# names --------------------------------------------------------------------------------
def test_names_in_spec_order_pass_unchanged(pos):
    values = np.array([0.1, 0.2, 0.3])
    result = check_names(['j0', 'j1', 'j2'], values, pos)
    assert not result.fired and result.values is values


@pytest.mark.parametrize('order', list(itertools.permutations(['j0', 'j1', 'j2'])))
def test_names_any_order_is_reordered_without_firing(pos, order):
    given = {'j0': 0.1, 'j1': 0.2, 'j2': 0.3}
    result = check_names(list(order), np.array([given[n] for n in order]), pos)
    assert not result.fired
    np.testing.assert_array_equal(result.values, [0.1, 0.2, 0.3])


@pytest.mark.parametrize('names, values, needle', [
    (['j0', 'j1', 'zz'], [0.0, 0.0, 0.0], "unknown or non-actuated joints ['zz']"),
    (['j0', 'j1', 'passive'], [0.0, 0.0, 0.0], "['passive']"),
    (['j0', 'j1', 'j2', 'zz'], [0.0] * 4, "['zz']"),
    (['j0', 'j1'], [0.0, 0.0], "missing joints ['j2']"),
    (['j0', 'j0', 'j1'], [0.0, 0.0, 0.0], "duplicate joint names ['j0']"),
    (['j0', 'j1', 'j2', 'j2'], [0.0] * 4, "duplicate joint names ['j2']"),
    (['j0', 'j1', 'j2'], [0.0, 0.0], '3 joint names for 2 values'),
    (['j0', 'j1', 'j2'], [0.0] * 4, '3 joint names for 4 values'),
    (['j0', 'j1', 'j2'], [], '3 joint names for 0 values'),
    ([], [], "missing joints ['j0', 'j1', 'j2']"),
])
def test_names_rejects_malformed_commands(pos, names, values, needle):
    result = check_names(names, np.asarray(values, dtype=np.float64), pos)
    assert result.values is None and result.fired
    assert needle in result.reason


# age ----------------------------------------------------------------------------------
@pytest.mark.parametrize('age_ns, rejected', [
    (0, False), (250 * MS, False), (250 * MS + 1, True), (NOW, True),
    (-50 * MS, False), (-50 * MS - 1, True), (-NOW, True),
])
def test_age_boundaries(age_ns, rejected):
    result = check_age(NOW - age_ns, NOW, 250 * MS, 50 * MS)
    assert (result.values is None) == rejected == result.fired
    if rejected:
        assert ('future' in result.reason) == (age_ns < 0)


# stale_state --------------------------------------------------------------------------
def test_stale_state_without_any_state_rejects():
    result = check_stale_state(None, NOW, 250 * MS, 50 * MS, 'position')
    assert result.values is None and 'no joint_states' in result.reason


@pytest.mark.parametrize('age_ns, rejected', [
    (0, False), (250 * MS, False), (250 * MS + 1, True), (-50 * MS, False), (-50 * MS - 1, True),
])
def test_stale_state_age_boundaries(age_ns, rejected):
    result = check_stale_state(state([0.0], stamp_ns=NOW - age_ns), NOW, 250 * MS, 50 * MS,
                               'position')
    assert (result.values is None) == rejected == result.fired


@pytest.mark.parametrize('bad', [np.nan, INF, -INF])
def test_stale_state_rejects_non_finite_positions(bad):
    result = check_stale_state(state([0.0, bad]), NOW, 250 * MS, 50 * MS, 'position')
    assert result.values is None and 'position' in result.reason


def test_stale_state_velocity_needed_only_by_velocity_robots():
    unknown_velocity = state([0.0, 0.0], velocity=[np.nan, np.nan])
    assert not check_stale_state(unknown_velocity, NOW, 250 * MS, 50 * MS, 'position').fired
    result = check_stale_state(unknown_velocity, NOW, 250 * MS, 50 * MS, 'velocity')
    assert result.values is None and 'velocity' in result.reason


# position_box -------------------------------------------------------------------------
def test_position_box_inclusive_bounds_do_not_fire(pos):
    for values in ([-1.0, 0.0, -1e12], [1.0, 2.0, 1e12]):
        result = clamp_position_box(np.array(values), pos, state([0.0, 1.0, 0.0]))
        assert not result.fired
        np.testing.assert_array_equal(result.values, values)


@pytest.mark.parametrize('joint, value, clamped', [
    (0, 1.0 + 1e-12, 1.0), (0, -1.5, -1.0), (0, 1e300, 1.0),
    (1, -1e-9, 0.0), (1, 2.5, 2.0), (1, -1e300, 0.0),
])
def test_position_box_clamps_only_the_offending_joint(pos, joint, value, clamped):
    values = np.array([0.5, 1.0, 0.0])
    values[joint] = value
    result = clamp_position_box(values, pos, state([0.0, 1.0, 0.0]))
    expected = np.array([0.5, 1.0, 0.0])
    expected[joint] = clamped
    assert result.fired and pos.names[joint] in result.reason
    np.testing.assert_array_equal(result.values, expected)


def test_position_box_velocity_robot_stops_outward_motion_at_a_limit(vel):
    cmd = np.array([30.0, -30.0, 3.0])
    inside = clamp_position_box(cmd, vel, state([100.0, -100.0, 0.99]))
    assert not inside.fired  # continuous wheels never, tilt still inside
    at_upper = clamp_position_box(cmd, vel, state([100.0, -100.0, 1.0]))
    assert at_upper.fired and 'tilt' in at_upper.reason
    np.testing.assert_array_equal(at_upper.values, [30.0, -30.0, 0.0])
    back_in = clamp_position_box(np.array([0.0, 0.0, -3.0]), vel, state([0.0, 0.0, 1.2]))
    assert not back_in.fired  # moving back inside is always allowed
    at_lower = clamp_position_box(np.array([0.0, 0.0, -3.0]), vel, state([0.0, 0.0, -1.2]))
    np.testing.assert_array_equal(at_lower.values, [0.0, 0.0, 0.0])


# step ---------------------------------------------------------------------------------
def test_step_position_bound_is_min_of_max_step_and_velocity_dt(pos):
    measured = state([0.2, 1.0, 5.0])
    bound = pos.step_bound  # [0.1, 0.05, 0.1]
    for sign in (1.0, -1.0):
        at_bound = measured.position + sign * bound
        result = clamp_step(at_bound, pos, measured)
        assert not result.fired
        beyond = measured.position + sign * (bound + 1e-9)
        result = clamp_step(beyond, pos, measured)
        assert result.fired
        np.testing.assert_array_equal(result.values, at_bound)


@pytest.mark.parametrize('joint', [0, 1, 2])
def test_step_clamps_per_joint(pos, joint):
    measured = state([0.2, 1.0, 5.0])
    values = measured.position.copy()
    values[joint] += 10.0
    result = clamp_step(values, pos, measured)
    expected = measured.position.copy()
    expected[joint] += pos.step_bound[joint]
    np.testing.assert_allclose(result.values, expected, rtol=0, atol=1e-15)
    assert result.reason.count('->') == 1 and pos.names[joint] in result.reason


def test_step_velocity_robot_delta_then_speed_limit(vel):
    measured = state([0.0, 0.0, 0.0], velocity=[10.0, -10.0, 0.0])
    ok = np.array([30.0, -30.0, 2.0])  # |delta| = max_step exactly
    assert not clamp_step(ok, vel, measured).fired
    result = clamp_step(np.array([45.0, -45.0, 2.5]), vel, measured)
    np.testing.assert_array_equal(result.values, [30.0, -30.0, 2.0])
    fast = state([0.0, 0.0, 0.0], velocity=[45.0, -45.0, 0.0])
    result = clamp_step(np.array([80.0, -80.0, 0.0]), vel, fast)
    np.testing.assert_array_equal(result.values, [50.0, -50.0, 0.0])  # speed limit binds
    overspeed = state([0.0, 0.0, 0.0], velocity=[90.0, 0.0, 0.0])
    result = clamp_step(np.array([90.0, 0.0, 0.0]), vel, overspeed)
    assert result.values[0] == 50.0  # the speed limit wins over "no more than max_step"


# filter_command -----------------------------------------------------------------------
def test_filter_passes_a_good_command_unchanged(pos):
    decision = run(pos, [0.05, 1.02, -0.1], measured=state([0.0, 1.0, 0.0]))
    assert decision == Decision('pass', decision.values, (), '')
    assert decision.accepted
    np.testing.assert_array_equal(decision.values, [0.05, 1.02, -0.1])
    assert decision.values.dtype == np.float64


def test_filter_output_does_not_alias_input(pos):
    values = np.array([0.05, 1.02, -0.1])
    decision = run(pos, values, measured=state([0.0, 1.0, 0.0]))
    values[:] = 99.0
    np.testing.assert_array_equal(decision.values, [0.05, 1.02, -0.1])


def test_filter_most_restrictive_wins(pos):
    measured = state([0.5, 1.0, 0.0])
    # j0: box says 1.0, step says 0.6 -> 0.6. j1: box says 2.0, step says 1.05 -> 1.05.
    decision = run(pos, [5.0, 3.0, 0.0], measured=measured)
    assert decision.action == 'clamp' and decision.fired == ('step',)
    np.testing.assert_allclose(decision.values, [0.6, 1.05, 0.0], rtol=0, atol=1e-15)
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
    decision = run(pos, [np.nan, 99.0, 0.0], names=['j0', 'j1', 'j2'],
                   stamp_ns=NOW - 300 * MS, measured=stale)
    assert decision.action == 'reject' and decision.values is None
    assert decision.fired == ('finite', 'age', 'stale_state')
    for rule in decision.fired:
        assert rule in decision.reason
    decision = filter_command(pos, ['j0'], np.array([np.inf]), NOW, NOW, None, **BUDGETS)
    assert decision.fired == ('finite', 'names', 'stale_state')
    assert not decision.accepted


@pytest.mark.parametrize('bad', [np.nan, INF, -INF])
def test_filter_never_clamps_a_non_finite_value_into_range(pos, bad):
    decision = run(pos, [0.0, bad, 0.0], measured=state([0.0, 1.0, 0.0]))
    assert decision.action == 'reject' and decision.fired == ('finite',)


def test_filter_empty_command_is_rejected(pos):
    decision = run(pos, [], names=[])
    assert decision.action == 'reject' and decision.fired == ('names',)


def test_filter_velocity_robot(vel):
    measured = state([0.0, 0.0, 1.0], velocity=[40.0, 0.0, 0.0])
    decision = run(vel, [100.0, 5.0, 4.0], measured=measured)
    # left: delta to 60, speed to 50; right: fine; tilt: delta to 2, then stopped at limit
    assert decision.action == 'clamp' and decision.fired == ('step', 'position_box')
    np.testing.assert_array_equal(decision.values, [50.0, 5.0, 0.0])
    decision = run(vel, [45.0, -10.0, -1.0], measured=measured)
    assert decision.action == 'pass'
    decision = run(vel, [0.0, 0.0, 0.0], measured=state([0.0, 0.0, 0.0], [np.nan] * 3))
    assert decision.fired == ('stale_state',)


# Seeded fuzz ----------------------------------------------------------------------------
def _fuzz_values(rng: np.random.Generator, m: int, center: np.ndarray) -> np.ndarray:
    kind = rng.choice(4, p=[0.4, 0.25, 0.25, 0.1])
    if kind == 0:
        return center + rng.normal(0.0, 0.03, m)  # mostly inside the step
    if kind == 1:
        return rng.normal(0.0, 10.0, m)
    if kind == 2:
        return rng.choice([1e300, -1e300, 1e9, -1e9, 0.0], m)
    values = center + rng.normal(0.0, 1.0, m)
    values[rng.integers(m)] = rng.choice([np.nan, INF, -INF])
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


@pytest.mark.parametrize('spec_factory, trials', [(position_spec, 20_000),
                                                  (velocity_spec, 5_000)])
def test_fuzz_output_always_finite_and_within_limits(spec_factory, trials):
    spec = spec_factory()
    limits = CommandLimits.from_spec(spec)
    m = len(limits.names)
    rng = np.random.default_rng(20240611)
    lo = np.where(np.isfinite(limits.lower), limits.lower, -10.0)
    hi = np.where(np.isfinite(limits.upper), limits.upper, 10.0)
    counts = {'pass': 0, 'clamp': 0, 'reject': 0}
    for _ in range(trials):
        position = rng.uniform(lo, hi)
        velocity = rng.uniform(-limits.velocity, limits.velocity)
        state_age = int(rng.choice([0, 250 * MS, 251 * MS], p=[0.6, 0.3, 0.1]))
        measured = None if rng.random() < 0.03 else state(position, velocity, NOW - state_age)
        command_age = int(rng.choice([0, 250 * MS, -50 * MS, 251 * MS, -51 * MS],
                                     p=[0.5, 0.2, 0.2, 0.05, 0.05]))
        names, bad_names = _fuzz_names(rng, limits.names)
        values = _fuzz_values(rng, m, position if limits.interface == 'position' else velocity)
        if rng.random() < 0.03:
            values = values[:rng.integers(m)]
        given = dict(zip(names, values))
        decision = filter_command(limits, names, values, NOW - command_age, NOW, measured,
                                  **BUDGETS)
        counts[decision.action] += 1
        must_reject = (bad_names or len(values) != len(names)
                       or not np.isfinite(values).all() or measured is None
                       or state_age > 250 * MS or command_age > 250 * MS or command_age < -50 * MS)
        assert (decision.action == 'reject') == must_reject, (names, values, decision)
        if must_reject:
            assert decision.values is None and decision.fired and decision.reason
            continue
        out = decision.values
        assert out.shape == (m,) and out.dtype == np.float64 and np.isfinite(out).all()
        ordered = np.array([given[n] for n in limits.names])
        if limits.interface == 'position':
            assert np.all((out >= limits.lower) & (out <= limits.upper))
            assert np.all(np.abs(out - measured.position) <= limits.step_bound + 1e-12)
        else:
            assert np.all(np.abs(out) <= limits.velocity)
            assert np.all(np.abs(out - measured.velocity) <= limits.max_step + 1e-12)
            at_upper = measured.position >= limits.upper
            at_lower = measured.position <= limits.lower
            assert not np.any(at_upper & (out > 0)) and not np.any(at_lower & (out < 0))
        if decision.action == 'pass':
            np.testing.assert_array_equal(out, ordered)
        else:
            assert decision.fired and set(decision.fired) <= {'position_box', 'step'}
            assert not np.array_equal(out, ordered)
    assert min(counts.values()) > trials // 20, counts  # every outcome was exercised
