"""Safety supervisor (safety/supervisor.py): states, watchdog hold, e-stop latch, reset."""

from __future__ import annotations

import numpy as np
import pytest

from dexmpc_ros.core.robot_spec import JointLimit, RobotSpec
from dexmpc_ros.safety.supervisor import SafetyState, Supervisor, SupervisorConfig

INF = float('inf')
MS = 1_000_000  # ns per ms
T0 = 500_000 * MS  # 500 s on the fake clock


def arm_spec(rate_hz: float = 20.0) -> RobotSpec:
    """Two commanded joints (bound 0.1 rad/step at 20 Hz) and one passive joint in between."""
    joints = (
        JointLimit('shoulder', -1.0, 1.0, velocity=4.0, max_step=0.1, effort=1.0),
        JointLimit('finger_right', 0.0, 0.04, velocity=1.0, max_step=0.01, effort=1.0,
                   actuated=False),
        JointLimit('elbow', -2.0, 2.0, velocity=4.0, max_step=0.1, effort=1.0),
    )
    return RobotSpec('arm', joints, 'position', rate_hz, (0.0, 0.02, 0.0))


def wheel_spec() -> RobotSpec:
    joints = (JointLimit('left', -INF, INF, velocity=50.0, max_step=20.0, effort=1.0),
              JointLimit('right', -INF, INF, velocity=50.0, max_step=20.0, effort=1.0))
    return RobotSpec('wheels', joints, 'velocity', 20.0, (0.0, 0.0))


class Rig:
    """A supervisor on a fake clock, fed like the node feeds it."""

    def __init__(self, spec: RobotSpec | None = None, **config) -> None:
        self.spec = spec or arm_spec()
        self.sup = Supervisor(self.spec, SupervisorConfig(**config))
        self.now = T0

    def advance(self, ms: float) -> None:
        self.now += int(ms * MS)

    def measure(self, position, velocity=None) -> None:
        position = np.asarray(position, dtype=np.float64)
        velocity = np.zeros_like(position) if velocity is None else velocity
        self.sup.on_state(position, velocity, self.now)

    def command(self, values, names=None, age_ms: float = 0.0):
        names = self.spec.command_names if names is None else names
        return self.sup.on_command(list(names), np.asarray(values, dtype=np.float64),
                                   self.now - int(age_ms * MS), self.now)

    def tick(self):
        return self.sup.tick(self.now)


@pytest.fixture
def rig() -> Rig:
    rig = Rig()
    rig.measure([0.2, 0.02, -0.3])
    return rig


# Config ---------------------------------------------------------------------------------
def test_config_defaults():
    config = SupervisorConfig()
    assert (config.command_age_budget_s, config.watchdog_timeout_s, config.state_timeout_s,
            config.start_armed) == (0.25, 0.1, 0.25, True)


@pytest.mark.parametrize('field, value', [
    ('command_age_budget_s', 0.0), ('command_age_budget_s', -1.0),
    ('command_age_budget_s', float('nan')), ('watchdog_timeout_s', 0.0),
    ('watchdog_timeout_s', INF), ('state_timeout_s', -0.1), ('future_tolerance_s', -0.01),
    ('reset_tolerance', float('nan')), ('start_armed', 'yes'),
])
def test_config_rejects_bad_values_naming_them(field, value):
    with pytest.raises(ValueError, match=field):
        SupervisorConfig(**{field: value})


def test_watchdog_is_at_least_one_and_a_half_periods():
    assert Supervisor(arm_spec(20.0)).watchdog_ns == 100 * MS  # 0.1 s > 1.5 * 50 ms
    assert Supervisor(arm_spec(10.0)).watchdog_ns == 150 * MS  # raised for a 10 Hz robot


def test_on_state_checks_shape(rig):
    with pytest.raises(ValueError, match='3 positions'):
        rig.sup.on_state(np.zeros(2), np.zeros(2), rig.now)


# Passing, clamping, blocking -----------------------------------------------------------
def test_commands_pass_clamp_and_block_with_counters(rig):
    assert rig.sup.state is SafetyState.ARMED
    passed = rig.command([0.25, -0.35])
    assert passed.action == 'pass'
    np.testing.assert_array_equal(passed.values, [0.25, -0.35])
    clamped = rig.command([0.9, -0.3])
    assert clamped.action == 'clamp' and clamped.fired == ('step',)
    np.testing.assert_allclose(clamped.values, [0.3, -0.3])
    blocked = rig.command([np.nan, 0.0])
    assert blocked.action == 'reject' and blocked.values is None
    late = rig.command([0.2, -0.3], age_ms=251)
    assert late.fired == ('age',)
    stats = rig.sup.stats()
    assert (stats['passed'], stats['clamped'], stats['blocked'], stats['held']) == (1, 1, 2, 0)
    assert stats['rule/step'] == 1 and stats['rule/finite'] == 1 and stats['rule/age'] == 1
    assert stats['rule/position_box'] == 0 and stats['rule/names'] == 0
    assert stats['state'] == 'ARMED' and 'age' in stats['last_reason']


def test_state_uses_actuated_joints_in_command_order(rig):
    # passive finger_right sits between the two commanded joints in joint_states order
    decision = rig.command([0.2, -0.3])
    assert decision.action == 'pass'
    rig.advance(101)
    np.testing.assert_array_equal(rig.tick(), [0.2, -0.3])


# Watchdog hold ----------------------------------------------------------------------------
def test_watchdog_hold_timing_and_captured_position(rig):
    rig.command([0.25, -0.35])
    rig.advance(100)
    assert rig.tick() is None  # exactly the timeout: not yet
    rig.now += 1
    rig.measure([0.24, 0.02, -0.34])
    hold = rig.tick()
    np.testing.assert_array_equal(hold, [0.24, -0.34])  # measured when the hold started
    rig.advance(50)
    rig.measure([0.5, 0.02, 0.5])  # the robot drifts: the hold stays where it started
    np.testing.assert_array_equal(rig.tick(), [0.24, -0.34])
    assert rig.sup.held == 2 and rig.sup.stats()['holding'] is True
    assert 'watchdog' in rig.sup.last_reason
    hold[:] = 7.0  # the caller's copy is not the supervisor's
    np.testing.assert_array_equal(rig.tick(), [0.24, -0.34])
    # a valid command ends the hold; the next hold captures afresh
    assert rig.command([0.45, 0.45]).action == 'pass'
    assert rig.tick() is None and rig.sup.stats()['holding'] is False
    rig.advance(101)
    rig.measure([0.44, 0.02, 0.44])
    np.testing.assert_array_equal(rig.tick(), [0.44, 0.44])


def test_rejected_commands_do_not_feed_the_watchdog(rig):
    rig.command([0.2, -0.3])
    for _ in range(3):
        rig.advance(40)
        rig.measure([0.2, 0.02, -0.3])
        assert rig.command([np.nan, 0.0]).action == 'reject'
    np.testing.assert_array_equal(rig.tick(), [0.2, -0.3])  # 120 ms since the last pass


def test_hold_from_start_until_first_command(rig):
    np.testing.assert_array_equal(rig.tick(), [0.2, -0.3])
    rig.command([0.2, -0.3])
    assert rig.tick() is None


def test_position_robot_without_state_cannot_hold():
    rig = Rig()
    assert rig.tick() is None
    assert 'no joint_states yet' in rig.sup.last_reason
    assert rig.sup.held == 0 and rig.sup.measured_stamp_ns is None
    rig.measure([0.0, 0.02, 0.0])
    assert rig.sup.measured_stamp_ns == rig.now


def test_velocity_robot_holds_with_zeros():
    rig = Rig(wheel_spec())
    rig.measure([3.0, 4.0], velocity=np.array([10.0, -10.0]))
    assert rig.command([15.0, -15.0]).action == 'pass'
    rig.advance(101)
    np.testing.assert_array_equal(rig.tick(), [0.0, 0.0])


def test_stale_state_rejects_and_holds_the_last_measured_position(rig):
    rig.command([0.2, -0.3])
    rig.advance(60)
    rig.measure([0.21, 0.02, -0.31])
    rig.advance(251)
    decision = rig.command([0.2, -0.3])
    assert decision.fired == ('stale_state',) and 'joint_states' in decision.reason
    np.testing.assert_array_equal(rig.tick(), [0.21, -0.31])
    rig.measure([0.21, 0.02, -0.31])  # fresh state again: commands pass, the hold ends
    assert rig.command([0.22, -0.3]).action == 'pass'
    assert rig.tick() is None


def test_stale_state_forces_hold_before_watchdog_timeout():
    rig = Rig(state_timeout_s=0.02)
    rig.measure([0.2, 0.02, -0.3])
    rig.command([0.2, -0.3])
    rig.advance(30)  # well inside the 100 ms watchdog
    assert rig.tick() is None
    assert rig.command([0.2, -0.3]).fired == ('stale_state',)
    np.testing.assert_array_equal(rig.tick(), [0.2, -0.3])


# E-stop, reset, arm -------------------------------------------------------------------
def test_estop_latches_holds_and_blocks_until_reset(rig):
    rig.command([0.25, -0.3])
    rig.measure([0.23, 0.02, -0.3])
    rig.sup.on_estop(True, rig.now)
    assert rig.sup.state is SafetyState.ESTOPPED and rig.sup.estops == 1
    np.testing.assert_array_equal(rig.tick(), [0.23, -0.3])  # hold immediately, no watchdog
    blocked = rig.command([0.24, -0.3])
    assert blocked.action == 'reject' and blocked.fired == ('estop',)
    rig.sup.on_estop(False, rig.now)
    assert rig.sup.state is SafetyState.ESTOPPED  # latched
    assert rig.command([0.24, -0.3]).values is None
    rig.sup.on_estop(True, rig.now)
    assert rig.sup.estops == 1  # a repeated e-stop is the same event
    np.testing.assert_array_equal(rig.tick(), [0.23, -0.3])
    assert rig.sup.stats()['rule/estop'] == 2 and rig.sup.stats()['state'] == 'ESTOPPED'


def test_reset_refused_while_estop_asserted_then_accepted(rig):
    rig.sup.on_estop(True, rig.now)
    ok, message = rig.sup.reset(rig.now)
    assert not ok and 'still asserted' in message
    rig.sup.on_estop(False, rig.now)
    ok, message = rig.sup.reset(rig.now)
    assert ok and message == 'ESTOPPED -> ARMED'
    assert rig.sup.state is SafetyState.ARMED
    # the hold goes on until the first valid command, which then passes
    np.testing.assert_array_equal(rig.tick(), [0.2, -0.3])
    assert rig.command([0.25, -0.3]).action == 'pass'
    assert rig.tick() is None
    assert rig.sup.reset(rig.now) == (True, 'already armed')


@pytest.mark.parametrize('position, ok', [
    ([1.0, 0.02, 0.0], True), ([1.02, 0.02, 0.0], True), ([1.03, 0.02, 0.0], False),
    ([0.0, 0.02, -2.021], False), ([0.0, 0.061, 0.0], False),  # passive joints count too
    ([0.0, 0.02, np.nan], False),
])
def test_reset_requires_measured_state_within_limits(position, ok):
    rig = Rig(reset_tolerance=0.02)
    rig.measure(position)
    rig.sup.on_estop(True, rig.now)
    rig.sup.on_estop(False, rig.now)
    result, message = rig.sup.reset(rig.now)
    assert result == ok, message
    assert rig.sup.state is (SafetyState.ARMED if ok else SafetyState.ESTOPPED)
    if not ok:
        assert message.startswith('reset refused')


def test_reset_refused_without_fresh_state():
    rig = Rig()
    rig.sup.on_estop(True, rig.now)
    rig.sup.on_estop(False, rig.now)
    assert 'no joint_states' in rig.sup.reset(rig.now)[1]
    rig.measure([0.0, 0.02, 0.0])
    rig.advance(251)
    ok, message = rig.sup.reset(rig.now)
    assert not ok and 'old' in message
    rig.measure([0.0, 0.02, 0.0])
    assert rig.sup.reset(rig.now)[0]


def test_out_of_limit_message_names_the_joint():
    rig = Rig()
    rig.measure([0.0, 0.02, 2.5])
    rig.sup.on_estop(True, rig.now)
    rig.sup.on_estop(False, rig.now)
    ok, message = rig.sup.reset(rig.now)
    assert not ok and 'elbow=2.5' in message and 'shoulder' not in message


def test_start_disarmed_holds_until_arm():
    rig = Rig(start_armed=False)
    rig.measure([0.2, 0.02, -0.3])
    assert rig.sup.state is SafetyState.DISARMED
    blocked = rig.command([0.2, -0.3])
    assert blocked.fired == ('disarmed',) and rig.sup.stats()['rule/disarmed'] == 1
    np.testing.assert_array_equal(rig.tick(), [0.2, -0.3])
    assert rig.sup.arm(rig.now) == (True, 'DISARMED -> ARMED')
    assert rig.command([0.2, -0.3]).action == 'pass'


def test_arm_refused_when_estopped_or_state_bad():
    rig = Rig(start_armed=False)
    ok, message = rig.sup.arm(rig.now)
    assert not ok and 'no joint_states' in message
    rig.measure([0.2, 0.02, -0.3])
    rig.sup.on_estop(True, rig.now)
    rig.sup.on_estop(False, rig.now)
    ok, message = rig.sup.arm(rig.now)
    assert not ok and 'safety/reset' in message
    assert rig.sup.reset(rig.now)[0]
    assert rig.sup.arm(rig.now) == (True, 'already armed')


def test_stats_has_every_counter(rig):
    stats = rig.sup.stats()
    for key in ('state', 'passed', 'clamped', 'blocked', 'held', 'estops', 'holding',
                'last_reason', 'rule/finite', 'rule/names', 'rule/age', 'rule/stale_state',
                'rule/position_box', 'rule/step', 'rule/estop', 'rule/disarmed'):
        assert key in stats
