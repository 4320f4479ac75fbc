"""Safety rules (safety/rejection_rules.py, clamp_rules.py), one at a time, at their boundaries."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dexmpc_ros.core.robot_spec import JointLimit, RobotSpec, load_robot_spec
from dexmpc_ros.robots.widowx.kinematics import WX250S_JOINTS, wx250s_ee_position
from dexmpc_ros.safety.clamp_rules import (
    WORKSPACE_SAMPLES,
    clamp_body_rate,
    clamp_effort,
    clamp_position_box,
    clamp_step,
    clamp_velocity,
    clamp_workspace,
    scale_for_uncertainty,
)
from dexmpc_ros.safety.limits import (
    CLAMP_RULES,
    REJECT_RULES,
    RULE_ORDER,
    RULES,
    BodyRate,
    CommandLimits,
    MeasuredState,
    RateBucket,
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
    check_well_formed,
    plan_violation,
)

INF = float('inf')
NAN = float('nan')
MS = 1_000_000  # ns per ms
NOW = 1_000_000 * MS  # 1000 s: stamps far from zero, like wall-clock time
STALL_FRACTION = 0.95
STALL_VELOCITY = 0.05


def position_spec() -> RobotSpec:
    """
    Three commanded joints at 10 Hz (dt = 0.1 s) and one passive joint.

    max_step [0.1, 0.2, 0.3] and velocity * dt [0.2, 0.05, 0.1]: the step rule binds on j0,
    the velocity rule on j1 and j2 (j2 is continuous). Effort limits [2, 4, 1].
    """
    joints = (
        JointLimit('j0', -1.0, 1.0, velocity=2.0, max_step=0.1, effort=2.0),
        JointLimit('passive', -0.5, 0.5, velocity=1.0, max_step=0.1, effort=1.0,
                   actuated=False),
        JointLimit('j1', 0.0, 2.0, velocity=0.5, max_step=0.2, effort=4.0),
        JointLimit('j2', -INF, INF, velocity=1.0, max_step=0.3, effort=1.0),
    )
    return RobotSpec('pos', joints, 'position', 10.0, (0.0, 0.0, 1.0, 0.0))


def velocity_spec() -> RobotSpec:
    """Two continuous wheels and a joint with finite position limits, velocity-commanded."""
    joints = (
        JointLimit('left', -INF, INF, velocity=50.0, max_step=20.0, effort=0.5),
        JointLimit('right', -INF, INF, velocity=50.0, max_step=20.0, effort=0.5),
        JointLimit('tilt', -1.0, 1.0, velocity=5.0, max_step=2.0, effort=2.0),
    )
    return RobotSpec('vel', joints, 'velocity', 10.0, (0.0, 0.0, 0.0))


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


def state(position, velocity=None, stamp_ns: int = NOW, effort=None) -> MeasuredState:
    position = np.asarray(position, dtype=np.float64)
    velocity = np.zeros_like(position) if velocity is None else np.asarray(velocity, float)
    effort = None if effort is None else np.asarray(effort, dtype=np.float64)
    return MeasuredState(position, velocity, stamp_ns, effort)


# The widowx workspace box, straight from the YAML, so the checks below do not go through
# Workspace.excess (the code under test).
WIDOWX_BOX = load_robot_spec('widowx').workspace
BOX_LOWER = np.array(WIDOWX_BOX.lower)
BOX_UPPER = np.array(WIDOWX_BOX.upper)

#: arm pose with the gripper 3.4 cm above the table; lowering shoulder and elbow by 0.15 rad
#: takes it to z = -5.4 cm, monotonically (both checked in the tests that use it)
NEAR_TABLE = np.array([0.3, 0.35, 0.3, 0.2, 0.5, -0.4])
#: arm pose with the gripper 6.8 mm below the table top, i.e. 1.68 cm below the box floor
BELOW_TABLE = np.array([-0.2, 0.45, 0.3, 0.0, 0.5, 0.3])


def box_excess(arm: np.ndarray) -> np.ndarray:
    """How far (..., 6) arm poses put the gripper outside the widowx box [m], (...)."""
    ee = wx250s_ee_position(arm)
    return (np.maximum(BOX_LOWER - ee, 0.0) + np.maximum(ee - BOX_UPPER, 0.0)).sum(axis=-1)


def line(start: np.ndarray, end: np.ndarray, samples: int = WORKSPACE_SAMPLES) -> np.ndarray:
    """(samples, k) evenly spaced points from start to end, both included."""
    t = np.linspace(0.0, 1.0, samples)[:, None]
    return start + t * (end - start)


def floor_crossing(start: np.ndarray, end: np.ndarray) -> float:
    """Line parameter t in (0, 1) where the gripper height falls through the box floor."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if wx250s_ee_position(start + mid * (end - start))[2] >= BOX_LOWER[2]:
            lo = mid
        else:
            hi = mid
    return lo


# Limits derived from the spec ----------------------------------------------------------
def test_command_limits_from_spec(pos):
    assert pos.names == ('j0', 'j1', 'j2') and pos.interface == 'position'
    assert pos.index == {'j0': 0, 'j1': 1, 'j2': 2}
    np.testing.assert_array_equal(pos.lower, [-1.0, 0.0, -INF])
    np.testing.assert_array_equal(pos.upper, [1.0, 2.0, INF])
    np.testing.assert_array_equal(pos.velocity, [2.0, 0.5, 1.0])
    np.testing.assert_array_equal(pos.max_step, [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(pos.effort, [2.0, 4.0, 1.0])
    assert pos.period_s == 0.1
    assert pos.workspace is None and pos.body_rate is None
    arrays = (pos.lower, pos.upper, pos.velocity, pos.max_step, pos.effort)
    assert all(a.dtype == np.float64 for a in arrays)


def test_command_limits_of_the_widowx_and_roach_safety_sections(widowx, roach):
    box = widowx.workspace
    assert [widowx.names[i] for i in box.index] == list(WX250S_JOINTS)
    np.testing.assert_array_equal(box.lower, [-0.25, -0.65, 0.01])
    np.testing.assert_array_equal(box.upper, [0.75, 0.65, 0.80])
    # home pose: gripper at (0.458325, 0, 0.36065), inside; the excess is a distance in m
    assert box.excess(np.zeros(6)) == 0.0
    assert box.excess(BELOW_TABLE) == pytest.approx(0.01 - wx250s_ee_position(BELOW_TABLE)[2])
    assert widowx.body_rate is None
    rate = roach.body_rate
    assert (rate.roll_pitch, rate.yaw) == (6.0, 3.0)
    assert (roach.names[rate.left], roach.names[rate.right]) == ('left_legs', 'right_legs')
    assert roach.workspace is None and roach.interface == 'velocity'


def test_rule_sets_and_order():
    assert set(RULES) == set(REJECT_RULES) | set(CLAMP_RULES)
    assert len(RULES) == len(set(RULES))
    for interface, order in RULE_ORDER.items():
        assert set(order) <= set(CLAMP_RULES), interface
        assert len(order) == len(set(order)), interface
        # the box has the last word for both: no command ever leaves the limits
        assert order[-1] == 'position_box', interface
        assert order[0] == 'uncertainty', interface  # scale first, then bound the result
    assert set(RULE_ORDER['position']) | set(RULE_ORDER['velocity']) == set(CLAMP_RULES)
    assert 'workspace' in RULE_ORDER['position'] and 'body_rate' not in RULE_ORDER['position']
    assert 'body_rate' in RULE_ORDER['velocity'] and 'workspace' not in RULE_ORDER['velocity']


# finite -------------------------------------------------------------------------------
@pytest.mark.parametrize('bad', [NAN, INF, -INF])
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


# well_formed (finite + names, for the nodes behind the supervisor) ------------------------
def test_well_formed_reorders_a_finite_command_for_the_robots_joints(pos):
    result = check_well_formed(['j2', 'j0', 'j1'], np.array([0.3, 0.1, 0.2]), pos)
    assert not result.fired
    np.testing.assert_array_equal(result.values, [0.1, 0.2, 0.3])


@pytest.mark.parametrize('names, values, rule', [
    (['j0', 'j1', 'j2'], [0.0, NAN, 0.0], 'finite:'),
    (['j0', 'j1', 'zz'], [0.0, INF, 0.0], 'finite:'),       # finite is judged first
    (['j0', 'j1', 'zz'], [0.0, 0.0, 0.0], 'names:'),
    (['j0', 'j1', 'j2'], [], 'names:'),                     # a command without a point
])
def test_well_formed_rejects_with_the_first_rule_that_fires(pos, names, values, rule):
    result = check_well_formed(names, np.asarray(values, dtype=np.float64), pos)
    assert result.fired and result.values is None and result.reason.startswith(rule)


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
def test_stale_state_without_any_state_rejects(pos):
    result = check_stale_state(None, NOW, 250 * MS, 50 * MS, pos)
    assert result.values is None and 'no joint_states' in result.reason


@pytest.mark.parametrize('age_ns, rejected', [
    (0, False), (250 * MS, False), (250 * MS + 1, True), (-50 * MS, False), (-50 * MS - 1, True),
])
def test_stale_state_age_boundaries(pos, age_ns, rejected):
    result = check_stale_state(state([0.0, 1.0, 0.0], stamp_ns=NOW - age_ns), NOW, 250 * MS,
                               50 * MS, pos)
    assert (result.values is None) == rejected == result.fired


@pytest.mark.parametrize('bad', [NAN, INF, -INF])
def test_stale_state_rejects_non_finite_positions(pos, bad):
    result = check_stale_state(state([0.0, bad, 0.0]), NOW, 250 * MS, 50 * MS, pos)
    assert result.values is None and 'position' in result.reason


def test_stale_state_velocity_needed_only_by_velocity_robots(pos, vel):
    unknown_velocity = state([0.0, 0.0, 0.0], velocity=[NAN, NAN, NAN])
    assert not check_stale_state(unknown_velocity, NOW, 250 * MS, 50 * MS, pos).fired
    result = check_stale_state(unknown_velocity, NOW, 250 * MS, 50 * MS, vel)
    assert result.values is None and 'velocity' in result.reason


def test_stale_state_unknown_effort_is_not_stale(pos):
    measured = state([0.0, 1.0, 0.0], effort=[NAN, NAN, NAN])
    assert not check_stale_state(measured, NOW, 250 * MS, 50 * MS, pos).fired


@pytest.mark.parametrize('rate, needle', [
    (None, 'no body rate'),
    (BodyRate(np.zeros(3), NOW - 250 * MS - 1), 'body rate'),
    (BodyRate(np.zeros(3), NOW + 50 * MS + 1), 'body rate'),
    (BodyRate(np.array([0.0, NAN, 0.0]), NOW), 'not finite'),
    (BodyRate(np.array([0.0, 0.0, INF]), NOW), 'not finite'),
    (BodyRate(np.zeros(3), NOW - 250 * MS), ''),
    (BodyRate(np.zeros(3), NOW + 50 * MS), ''),
])
def test_stale_state_body_rate_needed_with_body_rate_limits(roach, vel, rate, needle):
    measured = state([0.0, 0.0], velocity=[1.0, 1.0])
    result = check_stale_state(measured, NOW, 250 * MS, 50 * MS, roach, rate)
    assert result.fired == bool(needle) == (result.values is None)
    assert needle in result.reason
    # a robot without body-rate limits never asks for one
    no_limits = state([0.0, 0.0, 0.0])
    assert not check_stale_state(no_limits, NOW, 250 * MS, 50 * MS, vel, rate).fired


# rate ---------------------------------------------------------------------------------
def test_rate_bucket_allows_a_burst_then_rejects():
    bucket = RateBucket(0.0, None)  # never used: starts full
    for left in (2.0, 1.0, 0.0):
        result, bucket = check_rate(bucket, NOW, 10.0, 3.0)
        assert not result.fired and result.values is not None
        assert bucket == RateBucket(left, NOW)
    result, bucket = check_rate(bucket, NOW, 10.0, 3.0)
    assert result.fired and result.values is None
    assert result.reason == 'rate: more than 10 commands/s (burst 3)'
    assert bucket == RateBucket(0.0, NOW)  # a rejected command takes no token


def test_rate_refills_at_rate_hz():
    # 10 Hz: one token per 100 ms; 100 ms * 10 /s is exactly 1.0 in float64
    result, bucket = check_rate(RateBucket(0.0, NOW), NOW + 100 * MS, 10.0, 3.0)
    assert not result.fired and bucket == RateBucket(0.0, NOW + 100 * MS)
    # 99 ms give 0.99 tokens: rejected, but the fraction is kept ...
    result, bucket = check_rate(RateBucket(0.0, NOW), NOW + 99 * MS, 10.0, 3.0)
    assert result.fired
    assert bucket.tokens == pytest.approx(0.99) and bucket.stamp_ns == NOW + 99 * MS
    # ... so 2 ms later there are 1.01
    result, bucket = check_rate(bucket, NOW + 101 * MS, 10.0, 3.0)
    assert not result.fired and bucket.tokens == pytest.approx(0.01)


def test_rate_sustains_exactly_rate_hz_after_the_burst():
    bucket = RateBucket(0.0, None)
    for k in range(50):  # burst 1: every 100 ms one command, forever
        result, bucket = check_rate(bucket, NOW + k * 100 * MS, 10.0, 1.0)
        assert not result.fired, k
    result, _ = check_rate(bucket, NOW + 49 * 100 * MS + 50 * MS, 10.0, 1.0)
    assert result.fired  # the 51st only 50 ms after the 50th


def test_rate_tokens_never_exceed_burst():
    # an hour idle refills 36000 tokens at 10 Hz, but the bucket holds 3
    bucket = RateBucket(0.0, NOW)
    later = NOW + 3600 * 1000 * MS
    for left in (2.0, 1.0, 0.0):
        result, bucket = check_rate(bucket, later, 10.0, 3.0)
        assert not result.fired and bucket.tokens == left
    assert check_rate(bucket, later, 10.0, 3.0)[0].fired
    result, bucket = check_rate(RateBucket(2.5, NOW), NOW + 1000 * MS, 10.0, 3.0)
    assert not result.fired and bucket.tokens == 2.0  # min(3, 2.5 + 10) - 1


def test_rate_clock_going_backwards_adds_no_tokens():
    earlier = NOW - 10_000 * MS
    result, bucket = check_rate(RateBucket(0.5, NOW), earlier, 10.0, 3.0)
    assert result.fired and bucket == RateBucket(0.5, earlier)
    result, bucket = check_rate(RateBucket(1.5, NOW), earlier, 10.0, 3.0)
    assert not result.fired and bucket == RateBucket(0.5, earlier)


# plan ---------------------------------------------------------------------------------
def test_check_plan_needs_a_recent_clean_verdict():
    lag = 100 * MS
    result = check_plan(None, NOW, lag)
    assert result.fired and result.values is None and result.reason == 'plan: no plan received'
    assert not check_plan(StampedValue(NOW - lag, ''), NOW, lag).fired
    assert not check_plan(StampedValue(NOW + lag, ''), NOW, lag).fired  # newer: fine
    old = check_plan(StampedValue(NOW - lag - 1, ''), NOW, lag)
    assert old.fired and old.values is None
    assert old.reason == 'plan: newest plan is 0.100 s older than the command'
    bad = check_plan(StampedValue(NOW, 'step 2: j1=2.5 outside [0, 2]'), NOW, lag)
    assert bad.fired and bad.values is None
    assert bad.reason == 'plan: step 2: j1=2.5 outside [0, 2]'


def _plan_args(spec: RobotSpec) -> tuple:
    return (spec.joint_names, spec.limits_array('lower', actuated_only=False),
            spec.limits_array('upper', actuated_only=False))


def test_plan_violation_inside_passes_and_tolerance_is_inclusive():
    args = _plan_args(position_spec())
    inside = np.array([[0.0, 1.0, 100.0], [-1.0, 0.0, -1e6], [1.0, 2.0, 0.0]])
    assert plan_violation(['j0', 'j1', 'j2'], inside, *args, 0.0) == ''
    # columns may be any subset, in any order, passive joints included
    assert plan_violation(['passive', 'j1'], np.array([[0.5, 2.0], [-0.5, 0.0]]), *args,
                          0.0) == ''
    at_tolerance = np.array([[-1.25, 2.25], [1.25, -0.25]])
    assert plan_violation(['j0', 'j1'], at_tolerance, *args, 0.25) == ''
    past = plan_violation(['j0', 'j1'], np.array([[0.0, 1.0], [0.0, -0.2500001]]), *args, 0.25)
    assert past == 'step 1: j1=-0.25 outside [0, 2]'


def test_plan_violation_names_the_first_step_then_joint():
    args = _plan_args(position_spec())
    plan = np.array([[0.0, 1.0, 0.0],
                     [0.0, 1.0, 0.0],
                     [0.0, 2.5, 0.0],     # j1 past its upper limit ...
                     [-1.5, 2.5, 0.0]])   # ... before j0 goes past its lower one
    assert plan_violation(['j2', 'j1', 'j0'], plan[:, ::-1], *args, 0.0) == \
        'step 2: j1=2.5 outside [0, 2]'
    plan[2, 0] = 1.01  # j0 now also fails at step 2, and comes first in the row
    assert plan_violation(['j0', 'j1', 'j2'], plan, *args, 0.0) == \
        'step 2: j0=1.01 outside [-1, 1]'


@pytest.mark.parametrize('names, positions, expected', [
    (['j0', 'zz'], [[0.0, 0.0]], "plan names unknown joints ['zz']"),
    (['j0', 'j1'], [[0.0, NAN]], 'plan holds non-finite positions'),
    (['j0', 'j1'], [[0.0, 1.0], [INF, 1.0]], 'plan holds non-finite positions'),
    (['j0', 'j1'], [0.0, 1.0], 'plan has shape (2,) for 2 joint names'),
    (['j0', 'j1'], [[0.0, 1.0, 0.0]], 'plan has shape (1, 3) for 2 joint names'),
    (['j0', 'j1'], [[[0.0, 1.0]]], 'plan has shape (1, 1, 2) for 2 joint names'),
])
def test_plan_violation_rejects_malformed_plans(names, positions, expected):
    assert plan_violation(names, positions, *_plan_args(position_spec()), 0.0) == expected


def test_plan_violation_workspace_of_the_widowx(widowx):
    spec = load_robot_spec('widowx')
    args = _plan_args(spec)
    names = list(WX250S_JOINTS)
    plan = np.stack([np.zeros(6), NEAR_TABLE, BELOW_TABLE, np.zeros(6)])
    assert (plan >= args[1][:6]).all() and (plan <= args[2][:6]).all()  # joints all fine
    excess = BOX_LOWER[2] - wx250s_ee_position(BELOW_TABLE)[2]
    assert excess == pytest.approx(0.0168, abs=1e-4)
    expected = f'step 2: end effector {excess:.3f} m outside the workspace'
    assert plan_violation(names, plan, *args, 0.0, widowx.workspace, widowx.names) == expected
    # the tolerance applies to the box too (in m)
    assert plan_violation(names, plan, *args, excess + 1e-9, widowx.workspace,
                          widowx.names) == ''
    # without the box, or with a plan missing an arm joint, only the joints are judged
    assert plan_violation(names, plan, *args, 0.0) == ''
    assert plan_violation(names[1:], plan[:, 1:], *args, 0.0, widowx.workspace,
                          widowx.names) == ''


# uncertainty --------------------------------------------------------------------------
@pytest.mark.parametrize('report, rejected, needle', [
    (None, True, 'uncertainty: no uncertainty received'),
    (StampedValue(NOW - 100 * MS, 0.2), False, ''),
    (StampedValue(NOW - 100 * MS - 1, 0.2), True, 'older than the command'),
    (StampedValue(NOW + 100 * MS, 0.2), False, ''),
    (StampedValue(NOW, float(np.nextafter(1.0, 0.0))), False, ''),
    (StampedValue(NOW, 1.0), True, 'uncertainty: 1 >= hold threshold 1'),
    (StampedValue(NOW, 7.0), True, '>= hold threshold'),
    (StampedValue(NOW, NAN), True, 'uncertainty: nan >= hold threshold 1'),
    (StampedValue(NOW, INF), True, '>= hold threshold'),
])
def test_check_uncertainty_boundaries(report, rejected, needle):
    result = check_uncertainty(report, NOW, 100 * MS, 1.0)
    assert result.fired == rejected == (result.values is None)
    assert needle in result.reason


def test_scale_for_uncertainty_position_scales_the_step_from_q(pos):
    measured = state([0.2, 1.0, 5.0])
    cmd = np.array([0.3, 0.9, 5.0])
    result = scale_for_uncertainty(cmd, pos, measured, StampedValue(NOW, 0.7), 0.5, 0.5)
    assert result.fired
    np.testing.assert_allclose(result.values, [0.25, 0.95, 5.0], rtol=0, atol=1e-15)
    assert result.reason.startswith('uncertainty: 0.7 >= 0.5, x0.5; j0 0.3->0.25, j1 0.9->0.95')
    assert 'j2' not in result.reason
    at_threshold = scale_for_uncertainty(cmd, pos, measured, StampedValue(NOW, 0.5), 0.5, 0.2)
    np.testing.assert_allclose(at_threshold.values, [0.22, 0.98, 5.0], rtol=0, atol=1e-15)
    below = float(np.nextafter(0.5, 0.0))
    for report in (StampedValue(NOW, below), None):
        result = scale_for_uncertainty(cmd, pos, measured, report, 0.5, 0.5)
        assert not result.fired and result.values is cmd


def test_scale_for_uncertainty_velocity_scales_the_speed(vel):
    measured = state([0.0, 0.0, 0.0], velocity=[30.0, -30.0, 1.0])  # not used: speed scales
    result = scale_for_uncertainty(np.array([10.0, -20.0, 1.0]), vel, measured,
                                   StampedValue(NOW, 2.0), 1.0, 0.25)
    assert result.fired
    np.testing.assert_array_equal(result.values, [2.5, -5.0, 0.25])
    standing = scale_for_uncertainty(np.zeros(3), vel, measured, StampedValue(NOW, 2.0), 1.0,
                                     0.25)
    assert not standing.fired  # nothing to scale


# step ---------------------------------------------------------------------------------
def test_step_position_bound_is_max_step(pos):
    measured = state([0.2, 1.0, 5.0])
    for sign in (1.0, -1.0):
        at_bound = measured.position + sign * pos.max_step  # [0.1, 0.2, 0.3]
        assert not clamp_step(at_bound, pos, measured).fired
        beyond = measured.position + sign * (pos.max_step + 1e-9)
        result = clamp_step(beyond, pos, measured)
        assert result.fired and result.reason.startswith('step: ')
        np.testing.assert_array_equal(result.values, at_bound)


@pytest.mark.parametrize('joint', [0, 1, 2])
def test_step_clamps_per_joint(pos, joint):
    measured = state([0.2, 1.0, 5.0])
    values = measured.position.copy()
    values[joint] += 10.0
    result = clamp_step(values, pos, measured)
    expected = measured.position.copy()
    expected[joint] += pos.max_step[joint]
    np.testing.assert_allclose(result.values, expected, rtol=0, atol=1e-15)
    assert result.reason.count('->') == 1 and pos.names[joint] in result.reason


def test_step_velocity_robot_is_relative_to_the_measured_velocity(vel):
    measured = state([0.0, 0.0, 0.0], velocity=[10.0, -10.0, 0.0])
    ok = np.array([30.0, -30.0, 2.0])  # |cmd - qdot| = max_step exactly
    assert not clamp_step(ok, vel, measured).fired
    result = clamp_step(np.array([45.0, -45.0, 2.5]), vel, measured)
    np.testing.assert_array_equal(result.values, [30.0, -30.0, 2.0])
    # the step rule alone does not bound the speed (that is the velocity rule)
    fast = state([0.0, 0.0, 0.0], velocity=[45.0, -45.0, 0.0])
    result = clamp_step(np.array([80.0, -80.0, 0.0]), vel, fast)
    np.testing.assert_array_equal(result.values, [65.0, -65.0, 0.0])


# velocity -----------------------------------------------------------------------------
def test_velocity_position_bound_is_velocity_times_dt(pos):
    measured = state([0.2, 1.0, 5.0])
    bound = pos.velocity * pos.period_s  # [0.2, 0.05, 0.1]
    np.testing.assert_allclose(bound, [0.2, 0.05, 0.1], rtol=1e-15)
    for sign in (1.0, -1.0):
        at_bound = measured.position + sign * bound
        assert not clamp_velocity(at_bound, pos, measured).fired
        result = clamp_velocity(measured.position + sign * (bound + 1e-9), pos, measured)
        assert result.fired and result.reason.startswith('velocity: ')
        np.testing.assert_array_equal(result.values, at_bound)
    # only the offending joint moves: j1 by 0.06 > 0.05, j0 by 0.15 < 0.2
    result = clamp_velocity(np.array([0.35, 1.06, 5.0]), pos, measured)
    np.testing.assert_allclose(result.values, [0.35, 1.05, 5.0], rtol=0, atol=1e-15)
    assert result.reason.count('->') == 1 and 'j1' in result.reason


def test_velocity_robot_bounds_the_speed_not_the_change(vel):
    measured = state([0.0, 0.0, 0.0], velocity=[-50.0, 50.0, 0.0])
    ok = np.array([50.0, -50.0, 5.0])  # |cmd| = velocity exactly, however far from qdot
    assert not clamp_velocity(ok, vel, measured).fired
    result = clamp_velocity(np.array([50.000001, -80.0, -6.0]), vel, measured)
    np.testing.assert_array_equal(result.values, [50.0, -50.0, -5.0])
    overspeed = state([0.0, 0.0, 0.0], velocity=[90.0, 0.0, 0.0])
    result = clamp_velocity(np.array([90.0, 0.0, 0.0]), vel, overspeed)
    np.testing.assert_array_equal(result.values, [50.0, 0.0, 0.0])


# effort -------------------------------------------------------------------------------
def effort(values, limits, measured) -> tuple:
    return clamp_effort(np.asarray(values, dtype=np.float64), limits, measured,
                        STALL_FRACTION, STALL_VELOCITY)


@pytest.mark.parametrize('tau, qdot, stalled', [
    (1.9, 0.0, True),                                   # 0.95 x 2 N m exactly
    (float(np.nextafter(1.9, 0.0)), 0.0, False),
    (-1.9, 0.0, True),
    (2.5, STALL_VELOCITY, True),                        # at the speed threshold
    (2.5, -STALL_VELOCITY, True),
    (2.5, float(np.nextafter(STALL_VELOCITY, 1.0)), False),
    (2.5, -0.5, False),
    (2.5, NAN, True),                                   # unknown speed: not moving
    (NAN, 0.0, False),                                  # unknown effort: not judged
])
def test_effort_stall_boundaries(pos, tau, qdot, stalled):
    q = [0.2, 1.0, 5.0]
    measured = state(q, velocity=[qdot, 0.0, 0.0], effort=[tau, 0.0, 0.0])
    push = 0.3 if tau > 0 else 0.1  # further along the measured effort
    result = effort([push, 1.0, 5.0], pos, measured)
    assert result.fired == stalled
    np.testing.assert_array_equal(result.values, [0.2 if stalled else push, 1.0, 5.0])
    if stalled:
        assert result.reason.startswith('effort: j0 ') and 'j1' not in result.reason


def test_effort_position_may_back_off_but_not_push(pos):
    measured = state([0.2, 1.0, 5.0], effort=[2.0, -4.0, 1.0])  # all three stalled
    # j0 backs off (tau > 0, cmd < q), j1 pushes (tau < 0, cmd < q), j2 stays
    result = effort([0.1, 0.9, 5.0], pos, measured)
    assert result.fired and result.reason == 'effort: j1 0.9->1'
    np.testing.assert_array_equal(result.values, [0.1, 1.0, 5.0])
    result = effort([0.3, 1.1, 5.0], pos, measured)
    np.testing.assert_array_equal(result.values, [0.2, 1.1, 5.0])
    assert 'j0' in result.reason and 'j1' not in result.reason
    # a step of any size in the back-off direction is allowed (the step rule bounds it)
    backing = np.array([-1.0, 2.0, 4.0])
    result = effort(backing, pos, state([0.2, 1.0, 5.0], effort=[2.0, -4.0, 1.0]))
    assert not result.fired
    np.testing.assert_array_equal(result.values, backing)


def test_effort_velocity_robot_stops_a_pushing_joint(vel):
    measured = state([0.0, 0.0, 0.0], effort=[0.5, -0.5, 2.0])  # at the limits: stalled
    result = effort([10.0, 10.0, -1.0], vel, measured)
    np.testing.assert_array_equal(result.values, [0.0, 10.0, -1.0])
    result = effort([-10.0, -10.0, 1.0], vel, measured)
    np.testing.assert_array_equal(result.values, [-10.0, 0.0, 0.0])
    assert 'left' not in result.reason and 'right' in result.reason and 'tilt' in result.reason
    moving = state([0.0, 0.0, 0.0], velocity=[1.0, -1.0, 0.1], effort=[0.5, -0.5, 2.0])
    assert not effort([10.0, -10.0, 1.0], vel, moving).fired


def test_effort_unknown_is_not_judged(pos):
    cmd = np.array([0.3, 0.9, 5.5])
    for measured in (state([0.2, 1.0, 5.0]),
                     state([0.2, 1.0, 5.0], effort=[NAN, NAN, NAN]),
                     state([0.2, 1.0, 5.0], effort=[0.0, 0.0, 0.0])):
        result = effort(cmd, pos, measured)
        assert not result.fired and result.values is cmd


# workspace ----------------------------------------------------------------------------
def test_workspace_command_staying_inside_passes_untouched(widowx):
    q = np.r_[NEAR_TABLE, 0.03]
    cmd = np.r_[NEAR_TABLE + [0.1, -0.1, -0.1, 0.1, 0.1, 0.1], 0.02]  # lifts the gripper
    assert (box_excess(line(q[:6], cmd[:6], 101)) == 0.0).all()
    result = clamp_workspace(cmd, widowx, state(q))
    assert not result.fired and result.values is cmd
    home = np.r_[np.zeros(6), 0.03]
    assert not clamp_workspace(home.copy(), widowx, state(home)).fired


def test_workspace_shortens_a_move_through_the_table(widowx):
    q = np.r_[NEAR_TABLE, 0.03]
    cmd = q + [0.0, 0.15, 0.15, 0.0, 0.0, 0.0, 0.004]  # lower shoulder and elbow
    heights = wx250s_ee_position(line(q[:6], cmd[:6], 1001))[:, 2]
    assert heights[0] == pytest.approx(0.0336, abs=1e-4)
    assert heights[-1] == pytest.approx(-0.0537, abs=1e-4)
    assert (np.diff(heights) < 0.0).all()  # straight down: one crossing of the floor
    crossing = floor_crossing(q[:6], cmd[:6])
    steps = WORKSPACE_SAMPLES - 1
    # the last of the 17 samples at or above the floor (the crossing is not on a sample)
    t_kept = np.floor(crossing * steps) / steps
    assert 0.0 < t_kept < crossing < t_kept + 1.0 / steps
    assert crossing * steps - np.floor(crossing * steps) > 1e-6

    result = clamp_workspace(cmd.copy(), widowx, state(q))
    assert result.fired and result.reason.startswith('workspace: end effector would leave')
    assert f'{t_kept:.0%} of the step kept' in result.reason
    out = result.values
    np.testing.assert_allclose(out[:6], q[:6] + t_kept * (cmd[:6] - q[:6]), rtol=0, atol=1e-15)
    assert out[6] == cmd[6]  # the gripper is not an arm joint: untouched
    # every sampled point of the shortened move keeps the gripper inside the box ...
    assert (box_excess(line(q[:6], out[:6])) == 0.0).all()
    # ... and the next sample of the original move would not have
    assert box_excess(q[:6] + (t_kept + 1.0 / steps) * (cmd[:6] - q[:6])) > 0.0


def test_workspace_from_outside_allows_only_moves_back_in(widowx):
    q = np.r_[BELOW_TABLE, 0.03]
    assert box_excess(BELOW_TABLE) == pytest.approx(0.0168, abs=1e-4)
    up = q + [0.0, -0.1, 0.0, 0.0, 0.0, 0.0, 0.002]  # shoulder back: the gripper rises
    heights = wx250s_ee_position(line(q[:6], up[:6], 1001))[:, 2]
    assert (np.diff(heights) > 0.0).all() and heights[-1] > BOX_LOWER[2]
    result = clamp_workspace(up, widowx, state(q))
    assert not result.fired and result.values is up
    # halfway back is allowed too (still outside, but every sample closer than the last)
    half = q + [0.0, -0.02, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert box_excess(half[:6]) > 0.0
    assert not clamp_workspace(half, widowx, state(q)).fired
    down = q + [0.0, 0.1, 0.0, 0.0, 0.0, 0.0, 0.002]  # shoulder forward: further down
    assert box_excess(down[:6]) > box_excess(BELOW_TABLE)
    result = clamp_workspace(down.copy(), widowx, state(q))
    assert result.fired and '; 0% of the step kept' in result.reason
    np.testing.assert_array_equal(result.values, np.r_[BELOW_TABLE, down[6]])


@pytest.mark.parametrize('gripper', [0.03, 0.02])
def test_workspace_from_outside_an_arm_that_holds_still_passes(widowx, gripper):
    # holding the arm still (moving the gripper or not) goes no further out: nothing to do
    cmd = np.r_[BELOW_TABLE, gripper]
    result = clamp_workspace(cmd, widowx, state(np.r_[BELOW_TABLE, 0.03]))
    assert not result.fired
    np.testing.assert_array_equal(result.values, cmd)


def test_workspace_without_a_box_does_nothing(pos):
    cmd = np.array([0.3, 0.9, 5.5])
    result = clamp_workspace(cmd, pos, state([0.2, 1.0, 5.0]))
    assert not result.fired and result.values is cmd


def test_workspace_checks_every_sample_even_when_both_ends_and_middle_are_inside(widowx):
    # The gripper points straight down (shoulder + elbow + wrist = pi/2), so moving only the
    # wrist swings it through a lowest point. Put that point 0.05 mm below the floor, a
    # quarter of the way along a 0.15 rad wrist move: samples 0, 8 and 16 are above it.
    def pose(shoulder: float) -> np.ndarray:
        return np.array([0.0, shoulder, 0.3, 0.0, np.pi / 2 - shoulder - 0.3, 0.0])

    lo, hi = 0.0, 1.0  # gripper height falls as the shoulder goes forward
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if wx250s_ee_position(pose(mid))[2] > 0.01 - 5e-5 else (lo, mid)
    lowest = pose(lo)
    move = np.array([0.0, 0.0, 0.0, 0.0, 0.15, 0.0])
    q, cmd = lowest - 0.25 * move, lowest + 0.75 * move
    excess = box_excess(line(q, cmd))
    assert excess[[0, 8, 16]].max() == 0.0 and excess[4] == pytest.approx(5e-5, rel=1e-3)
    result = clamp_workspace(np.r_[cmd, 0.03], widowx, state(np.r_[q, 0.03]))
    # the first sample past the floor is the third: keep 1/16 of the move
    np.testing.assert_allclose(result.values[:6], q + move / 16, rtol=0, atol=1e-15)


# body_rate ----------------------------------------------------------------------------
def body(roll: float, pitch: float, yaw: float) -> BodyRate:
    return BodyRate(np.array([roll, pitch, yaw]), NOW)


@pytest.mark.parametrize('rates, stopped', [
    ((6.0, 0.0, 0.0), False), ((-6.0, 6.0, 0.0), False),
    ((float(np.nextafter(6.0, 7.0)), 0.0, 0.0), True), ((0.0, -6.5, 0.0), True),
    ((7.0, 7.0, 10.0), True),
])
def test_body_rate_roll_or_pitch_above_the_limit_stops_the_legs(roach, rates, stopped):
    cmd = np.array([10.0, 20.0])
    result = clamp_body_rate(cmd, roach, body(*rates))
    assert result.fired == stopped
    np.testing.assert_array_equal(result.values, [0.0, 0.0] if stopped else cmd)
    if stopped:
        assert result.reason.startswith('body_rate: roll/pitch rate') and 'stopped' in \
            result.reason
    standing = clamp_body_rate(np.zeros(2), roach, body(*rates))
    assert not standing.fired  # already stopped: nothing fires


@pytest.mark.parametrize('yaw, cmd, expected', [
    (3.5, [10.0, 20.0], [15.0, 15.0]),      # turning CCW, right faster tightens it: removed
    (3.5, [20.0, 10.0], [20.0, 10.0]),      # the difference turns back: kept
    (-3.5, [20.0, 10.0], [15.0, 15.0]),     # turning CW, left faster tightens it: removed
    (-3.5, [10.0, 20.0], [10.0, 20.0]),
    (3.5, [-10.0, 20.0], [5.0, 5.0]),       # spinning on the spot
    (3.5, [12.0, 12.0], [12.0, 12.0]),      # straight: nothing to remove
    (3.0, [10.0, 20.0], [10.0, 20.0]),      # at the limit: nothing fires
    (-3.0, [20.0, 10.0], [20.0, 10.0]),
    (float(np.nextafter(3.0, 4.0)), [10.0, 20.0], [15.0, 15.0]),
])
def test_body_rate_yaw_above_the_limit_removes_a_tightening_turn(roach, yaw, cmd, expected):
    values = np.array(cmd)
    result = clamp_body_rate(values, roach, body(5.9, -5.9, yaw))
    assert result.fired == (expected != cmd)
    np.testing.assert_array_equal(result.values, expected)
    if result.fired:
        assert result.reason.startswith('body_rate: yaw rate')


def test_body_rate_needs_limits_and_a_measurement(roach, vel):
    cmd = np.array([10.0, 20.0])
    assert clamp_body_rate(cmd, roach, None).values is cmd
    cmd3 = np.array([10.0, 20.0, 1.0])
    result = clamp_body_rate(cmd3, vel, body(9.0, 9.0, 9.0))
    assert not result.fired and result.values is cmd3


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
