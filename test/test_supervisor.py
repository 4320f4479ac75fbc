"""
Safety supervisor (safety/supervisor.py): states, heartbeat, holds, e-stop latch, hooks.

Everything runs on a fake integer-nanosecond clock, so every boundary (watchdog, state
timeout, token bucket refill, report lag) is checked at its exact value.
"""

from __future__ import annotations

import numpy as np
import pytest

from dexmpc_ros.core.robot_spec import BodyRateLimit, JointLimit, RobotSpec
from dexmpc_ros.safety.supervisor import SafetyState, Supervisor, SupervisorConfig

INF = float('inf')
NAN = float('nan')
MS = 1_000_000  # ns per ms
T0 = 500_000 * MS  # 500 s on the fake clock
HOME = [0.2, 0.02, -0.3]  # arm_spec joint_states order: shoulder, finger_right, elbow


def arm_spec(rate_hz: float = 20.0) -> RobotSpec:
    """Two commanded joints (bound 0.1 rad/step at 20 Hz) and one passive joint in between."""
    joints = (
        JointLimit('shoulder', -1.0, 1.0, velocity=4.0, max_step=0.1, effort=1.0),
        JointLimit('finger_right', 0.0, 0.04, velocity=1.0, max_step=0.01, effort=1.0,
                   actuated=False),
        JointLimit('elbow', -2.0, 2.0, velocity=4.0, max_step=0.1, effort=1.0),
    )
    return RobotSpec('arm', joints, 'position', rate_hz, (0.0, 0.02, 0.0))


def wheel_spec(body_rate: BodyRateLimit | None = None) -> RobotSpec:
    joints = (JointLimit('left', -INF, INF, velocity=50.0, max_step=20.0, effort=1.0),
              JointLimit('right', -INF, INF, velocity=50.0, max_step=20.0, effort=1.0))
    return RobotSpec('wheels', joints, 'velocity', 20.0, (0.0, 0.0), body_rate=body_rate)


class Rig:
    """A supervisor on a fake clock, fed like the node feeds it."""

    def __init__(self, spec: RobotSpec | None = None, **config) -> None:
        self.spec = spec or arm_spec()
        self.sup = Supervisor(self.spec, SupervisorConfig(**config))
        self.now = T0

    def advance(self, ms: float) -> None:
        self.now += int(ms * MS)

    def measure(self, position, velocity=None, effort=None) -> None:
        position = np.asarray(position, dtype=np.float64)
        velocity = np.zeros_like(position) if velocity is None else velocity
        self.sup.on_state(position, velocity, self.now, effort, self.now)

    def arm(self) -> None:
        ok, message = self.sup.arm(self.now)
        assert ok, message

    def command(self, values, names=None, age_ms: float = 0.0):
        names = self.spec.command_names if names is None else names
        return self.sup.on_command(list(names), np.asarray(values, dtype=np.float64),
                                   self.now - int(age_ms * MS), self.now)

    def tick(self):
        return self.sup.tick(self.now)


def armed_rig(**config) -> Rig:
    """An arm measured at HOME and armed through safety/arm."""
    rig = Rig(**config)
    rig.measure(HOME)
    rig.arm()
    return rig


@pytest.fixture
def rig() -> Rig:
    return armed_rig()


# Config ---------------------------------------------------------------------------------
def test_config_defaults():
    config = SupervisorConfig()
    assert (config.command_age_budget_s, config.future_tolerance_s, config.watchdog_timeout_s,
            config.state_timeout_s, config.heartbeat_timeout_s,
            config.reset_tolerance) == (0.25, 0.05, 0.1, 0.25, 0.5, 0.02)
    assert config.auto_arm is False and config.check_plan is False
    assert (config.max_command_rate_hz, config.command_burst) == (0.0, 3.0)
    assert (config.stall_effort_fraction, config.stall_velocity) == (0.95, 0.05)
    assert (config.plan_tolerance, config.report_max_lag_s, config.slow_factor) == (0, 0, 0.5)
    assert config.uncertainty_slow == INF and config.uncertainty_hold == INF


def test_zero_defaults_derive_from_the_control_rate():
    settings = Supervisor(arm_spec(20.0)).settings
    assert settings.rate_hz == 60.0 and settings.burst == 3.0  # 3 x 20 Hz
    assert settings.report_lag_ns == 100 * MS  # two 50 ms periods
    assert settings.check_plan is False and settings.gate_uncertainty is False
    settings = Supervisor(arm_spec(10.0), SupervisorConfig(
        max_command_rate_hz=7.0, report_max_lag_s=0.3, uncertainty_hold=2.0)).settings
    assert settings.rate_hz == 7.0 and settings.report_lag_ns == 300 * MS
    assert settings.gate_uncertainty is True


@pytest.mark.parametrize('field, value', [
    ('command_age_budget_s', 0.0), ('command_age_budget_s', -1.0),
    ('command_age_budget_s', NAN), ('watchdog_timeout_s', 0.0),
    ('watchdog_timeout_s', INF), ('state_timeout_s', -0.1), ('future_tolerance_s', -0.01),
    ('reset_tolerance', NAN),
    ('heartbeat_timeout_s', 0.2), ('heartbeat_timeout_s', INF), ('heartbeat_timeout_s', NAN),
    ('auto_arm', 'yes'), ('auto_arm', 1), ('check_plan', 'true'), ('check_plan', 0),
    ('max_command_rate_hz', -1.0), ('max_command_rate_hz', INF),
    ('command_burst', 0.5), ('command_burst', INF), ('command_burst', True),
    ('stall_effort_fraction', 0.0), ('stall_effort_fraction', 1.01),
    ('stall_effort_fraction', NAN),
    ('stall_velocity', -0.01), ('stall_velocity', INF),
    ('plan_tolerance', -0.01), ('plan_tolerance', NAN),
    ('report_max_lag_s', -0.1), ('report_max_lag_s', INF),
    ('uncertainty_slow', -1.0), ('uncertainty_slow', NAN), ('uncertainty_slow', 'high'),
    ('uncertainty_hold', -0.5), ('uncertainty_hold', NAN),
    ('slow_factor', -0.1), ('slow_factor', 1.5), ('slow_factor', NAN),
])
def test_config_rejects_bad_values_naming_them(field, value):
    with pytest.raises(ValueError, match=field):
        SupervisorConfig(**{field: value})


def test_heartbeat_timeout_must_not_undercut_the_state_timeout():
    with pytest.raises(ValueError, match=r'heartbeat_timeout_s must be finite and >= '
                                         r'state_timeout_s \(0\.6\)'):
        SupervisorConfig(state_timeout_s=0.6)  # default heartbeat 0.5 s would e-stop first
    config = SupervisorConfig(state_timeout_s=0.6, heartbeat_timeout_s=0.6)
    assert config.heartbeat_timeout_s == config.state_timeout_s


def test_config_accepts_the_boundary_values():
    config = SupervisorConfig(
        future_tolerance_s=0.0, reset_tolerance=0.0, max_command_rate_hz=0.0, command_burst=1,
        stall_effort_fraction=1.0, stall_velocity=0.0, plan_tolerance=0.0,
        report_max_lag_s=0.0, uncertainty_slow=0.0, uncertainty_hold=INF, slow_factor=0.0,
        auto_arm=True, check_plan=True)
    assert config.command_burst == 1 and config.uncertainty_slow == 0.0
    assert SupervisorConfig(slow_factor=1.0).slow_factor == 1.0


def test_watchdog_is_at_least_one_and_a_half_periods():
    assert Supervisor(arm_spec(20.0)).watchdog_ns == 100 * MS  # 0.1 s > 1.5 * 50 ms
    assert Supervisor(arm_spec(10.0)).watchdog_ns == 150 * MS  # raised for a 10 Hz robot


def test_on_state_checks_shape():
    rig = Rig()
    with pytest.raises(ValueError, match='3 positions'):
        rig.sup.on_state(np.zeros(2), np.zeros(2), rig.now)
    with pytest.raises(ValueError, match='efforts'):
        rig.sup.on_state(np.zeros(3), np.zeros(3), rig.now, effort=np.zeros(2))
    assert rig.sup.measured_stamp_ns is None  # a rejected state is not kept


# Passing, clamping, blocking -----------------------------------------------------------
def test_commands_pass_clamp_and_block_with_counters(rig):
    assert rig.sup.state is SafetyState.ARMED
    passed = rig.command([0.25, -0.35])
    assert passed.action == 'pass'
    np.testing.assert_array_equal(passed.values, [0.25, -0.35])
    rig.advance(50)  # one control period per command keeps the rate rule out of it
    clamped = rig.command([0.9, -0.3])
    assert clamped.action == 'clamp' and clamped.fired == ('step',)
    np.testing.assert_allclose(clamped.values, [0.3, -0.3])
    rig.advance(50)
    blocked = rig.command([np.nan, 0.0])
    assert blocked.action == 'reject' and blocked.values is None
    rig.advance(50)
    late = rig.command([0.2, -0.3], age_ms=251)
    assert late.fired == ('age',)
    stats = rig.sup.stats()
    assert (stats['passed'], stats['clamped'], stats['blocked'], stats['held']) == (1, 1, 2, 0)
    assert stats['rule/step'] == 1 and stats['rule/finite'] == 1 and stats['rule/age'] == 1
    assert stats['rule/position_box'] == 0 and stats['rule/names'] == 0
    assert stats['rule/rate'] == 0
    assert stats['state'] == 'ARMED' and 'age' in stats['last_reason']


def test_state_uses_actuated_joints_in_command_order(rig):
    # passive finger_right sits between the two commanded joints in joint_states order
    decision = rig.command([0.2, -0.3])
    assert decision.action == 'pass'
    rig.advance(101)
    np.testing.assert_array_equal(rig.tick(), [0.2, -0.3])


# Arming ---------------------------------------------------------------------------------
def test_starts_disarmed_blocks_and_holds_until_arm():
    rig = Rig()
    rig.measure(HOME)
    assert rig.sup.state is SafetyState.DISARMED  # auto_arm is off by default
    blocked = rig.command([0.2, -0.3])
    assert blocked.fired == ('disarmed',) and rig.sup.stats()['rule/disarmed'] == 1
    assert 'DISARMED' in blocked.reason
    np.testing.assert_array_equal(rig.tick(), [0.2, -0.3])
    assert rig.sup.arm(rig.now) == (True, 'DISARMED -> ARMED')
    assert rig.command([0.2, -0.3]).action == 'pass'
    assert rig.tick() is None


def test_arm_refused_when_estopped_or_state_bad():
    rig = Rig()
    ok, message = rig.sup.arm(rig.now)
    assert not ok and 'no joint_states' in message
    rig.measure(HOME)
    rig.sup.on_estop(True, rig.now)  # an e-stop while still disarmed latches too
    assert rig.sup.state is SafetyState.ESTOPPED
    rig.sup.on_estop(False, rig.now)
    ok, message = rig.sup.arm(rig.now)
    assert not ok and 'safety/reset' in message
    assert rig.sup.reset(rig.now)[0]
    assert rig.sup.arm(rig.now) == (True, 'already armed')


def test_auto_arm_arms_on_first_valid_state_and_never_after_an_estop():
    rig = Rig(auto_arm=True, auto_arm_after_s=0.0)
    assert rig.sup.state is SafetyState.DISARMED
    assert rig.tick() is None  # no state: nothing to hold yet
    rig.measure(HOME)
    assert rig.sup.state is SafetyState.ARMED
    assert rig.command([0.25, -0.35]).action == 'pass'
    rig.sup.on_estop(True, rig.now)
    rig.sup.on_estop(False, rig.now)
    rig.advance(50)
    rig.measure(HOME)  # fresh and within limits, but auto-arm was used up
    assert rig.sup.state is SafetyState.ESTOPPED
    assert rig.command([0.2, -0.3]).fired == ('estop',)
    assert rig.sup.reset(rig.now) == (True, 'ESTOPPED -> ARMED')


def test_auto_arm_does_not_undo_an_estop_before_the_first_state():
    rig = Rig(auto_arm=True, auto_arm_after_s=0.0)
    rig.sup.on_estop(True, rig.now)
    rig.sup.on_estop(False, rig.now)
    rig.measure(HOME)
    assert rig.sup.state is SafetyState.ESTOPPED


def test_auto_arm_refused_outside_limits_then_arms_once_inside():
    rig = Rig(auto_arm=True, auto_arm_after_s=0.0)
    rig.measure([0.0, 0.02, 2.5])
    assert rig.sup.state is SafetyState.DISARMED
    assert rig.sup.last_reason == 'auto-arm refused: outside limits: elbow=2.5 not in [-2, 2]'
    assert rig.command([0.0, 2.0]).fired == ('disarmed',)
    rig.advance(50)
    rig.measure([0.0, 0.02, 2.01])  # inside reset_tolerance (0.02) of the limit
    assert rig.sup.state is SafetyState.ARMED


def test_auto_arm_refused_for_a_stale_state():
    rig = Rig(auto_arm=True, auto_arm_after_s=0.0)
    stamp = rig.now
    rig.advance(251)
    rig.sup.on_state(np.array(HOME), np.zeros(3), stamp, now_ns=rig.now)
    assert rig.sup.state is SafetyState.DISARMED
    assert rig.sup.last_reason == 'auto-arm refused: joint_states 0.251 s old'
    rig.measure(HOME)
    assert rig.sup.state is SafetyState.ARMED


def test_auto_arm_waits_for_a_steady_state_stream():
    rig = Rig(auto_arm=True)  # 1 s of joint_states without a gap past the state timeout
    for _ in range(10):  # 0.9 s at 10 Hz
        rig.measure(HOME)
        assert rig.sup.state is SafetyState.DISARMED
        rig.advance(100)
    assert 'steady for 0.90 s of 1 s' in rig.sup.last_reason
    rig.advance(200)  # a 0.3 s gap (> 0.25 s state timeout): the count starts again
    for _ in range(10):  # 0.0 .. 0.9 s of the new stream
        rig.measure(HOME)
        assert rig.sup.state is SafetyState.DISARMED
        rig.advance(100)
    rig.measure(HOME)  # 1.0 s since the stream restarted
    assert rig.sup.state is SafetyState.ARMED


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
        rig.measure(HOME)
        assert rig.command([np.nan, 0.0]).action == 'reject'
    np.testing.assert_array_equal(rig.tick(), [0.2, -0.3])  # 120 ms since the last pass


def test_hold_from_start_until_first_command(rig):
    np.testing.assert_array_equal(rig.tick(), [0.2, -0.3])
    rig.command([0.2, -0.3])
    assert rig.tick() is None


def test_position_robot_without_state_cannot_hold():
    rig = Rig()
    assert rig.tick() is None
    assert 'no valid joint_states' in rig.sup.last_reason
    assert rig.sup.held == 0 and rig.sup.measured_stamp_ns is None
    rig.measure([0.0, 0.02, 0.0])
    assert rig.sup.measured_stamp_ns == rig.now


def test_velocity_robot_holds_with_zeros():
    rig = Rig(wheel_spec())
    assert rig.tick().tolist() == [0.0, 0.0]  # disarmed, no state: zero speed needs none
    rig.measure([3.0, 4.0], velocity=np.array([10.0, -10.0]))
    rig.arm()
    assert rig.command([15.0, -15.0]).action == 'pass'
    rig.advance(101)
    rig.measure([3.5, 3.5], velocity=np.array([10.0, -10.0]))
    np.testing.assert_array_equal(rig.tick(), [0.0, 0.0])


def test_stale_state_rejects_and_holds_the_last_measured_position(rig):
    rig.command([0.2, -0.3])
    rig.advance(60)
    rig.measure([0.21, 0.02, -0.31])
    rig.advance(251)  # stale (> 250 ms), not yet lost (<= 500 ms heartbeat)
    decision = rig.command([0.2, -0.3])
    assert decision.fired == ('stale_state',) and 'joint_states' in decision.reason
    np.testing.assert_array_equal(rig.tick(), [0.21, -0.31])
    assert rig.sup.state is SafetyState.ARMED
    rig.measure([0.21, 0.02, -0.31])  # fresh state again: commands pass, the hold ends
    assert rig.command([0.22, -0.3]).action == 'pass'
    assert rig.tick() is None


def test_stale_state_forces_hold_before_watchdog_timeout():
    rig = armed_rig(state_timeout_s=0.02)
    rig.command([0.2, -0.3])
    rig.advance(30)  # well inside the 100 ms watchdog
    assert rig.tick() is None
    decision = rig.command([0.2, -0.3])
    assert decision.fired == ('stale_state',)
    assert rig.sup.holding_due(rig.now)  # at once, not 100 ms after the last pass
    np.testing.assert_array_equal(rig.tick(), [0.2, -0.3])
    assert rig.sup.last_reason == decision.reason  # not relabelled as a watchdog hold


def test_future_stamped_state_forces_hold_without_estop(rig):
    assert rig.command([0.2, -0.3]).action == 'pass'
    rig.advance(20)  # well inside the 100 ms watchdog
    # a state stamped 51 ms ahead (> 50 ms future tolerance) is invalid, not silent
    rig.sup.on_state(np.array([0.22, 0.02, -0.32]), np.zeros(3), rig.now + 51 * MS)
    assert not rig.sup.holding_due(rig.now)
    decision = rig.command([0.2, -0.3])
    assert decision.fired == ('stale_state',) and 'future' in decision.reason
    assert rig.sup.holding_due(rig.now)  # at once, not 100 ms after the last pass
    np.testing.assert_array_equal(rig.tick(), [0.22, -0.32])
    assert rig.sup.state is SafetyState.ARMED
    assert rig.sup.last_reason == decision.reason  # not relabelled as a watchdog hold
    rig.measure(HOME)  # a valid state again: commands pass, the forced hold ends
    assert rig.command([0.22, -0.3]).action == 'pass'
    assert rig.tick() is None and not rig.sup.holding


# Heartbeat: joint_states lost while armed ---------------------------------------------------
def test_state_lost_estops_holds_last_position_and_latches():
    rig = armed_rig()
    rig.advance(200)
    rig.measure([0.25, 0.02, -0.35])
    lost_from = rig.now
    rig.advance(250)  # exactly the state timeout: still fresh
    assert rig.command([0.26, -0.36]).action == 'pass'
    assert rig.tick() is None
    rig.advance(50)  # stale: commands rejected and held, but still armed
    assert rig.command([0.26, -0.36]).fired == ('stale_state',)
    np.testing.assert_array_equal(rig.tick(), [0.25, -0.35])
    rig.advance(200)
    assert rig.now - lost_from == 500 * MS  # exactly the heartbeat timeout: still armed
    np.testing.assert_array_equal(rig.tick(), [0.25, -0.35])
    assert rig.sup.state is SafetyState.ARMED and rig.sup.rule_counts['state_lost'] == 0
    rig.now += 1
    hold = rig.tick()
    assert rig.sup.state is SafetyState.ESTOPPED
    np.testing.assert_array_equal(hold, [0.25, -0.35])  # last measured, not last commanded
    assert rig.sup.rule_counts['state_lost'] == 1 and rig.sup.estops == 1
    assert rig.sup.last_reason.startswith('state_lost: joint_states silent for 0.500 s > '
                                          '0.5 s')
    stats = rig.sup.stats()
    assert stats['rule/state_lost'] == 1 and stats['state'] == 'ESTOPPED'
    rig.advance(50)
    np.testing.assert_array_equal(rig.tick(), [0.25, -0.35])
    assert rig.sup.rule_counts['state_lost'] == 1  # one event, counted once
    ok, message = rig.sup.reset(rig.now)
    assert not ok and message == 'reset refused: joint_states 0.550 s old'
    # the driver comes back: fresh state alone does not re-arm
    rig.measure([0.25, 0.02, -0.35])
    assert rig.sup.state is SafetyState.ESTOPPED
    assert rig.command([0.25, -0.35]).fired == ('estop',)
    assert rig.tick() is not None
    assert rig.sup.reset(rig.now) == (True, 'ESTOPPED -> ARMED')
    rig.advance(20)
    assert rig.command([0.27, -0.35]).action == 'pass'
    assert rig.tick() is None and rig.sup.estops == 1


def test_state_back_after_a_loss_is_held_where_the_robot_is_now():
    rig = armed_rig()
    rig.advance(600)
    np.testing.assert_array_equal(rig.tick(), [0.2, -0.3])  # state_lost: held at HOME
    assert rig.sup.state is SafetyState.ESTOPPED
    estop_reason = rig.sup.estop_reason
    assert estop_reason.startswith('state_lost:')
    rig.measure([0.6, 0.02, -0.7])  # the driver returns somewhere else (arm sagged)
    np.testing.assert_array_equal(rig.tick(), [0.6, -0.7])  # no jump back to the old hold
    rig.command([0.6, -0.7])  # blocked: 'estop' is the last reason, the cause is kept
    assert rig.sup.last_reason.startswith('estop:')
    assert rig.sup.estop_reason == estop_reason == rig.sup.stats()['estop_reason']


def test_arming_drops_a_stale_hold():
    rig = Rig()
    rig.measure(HOME)
    np.testing.assert_array_equal(rig.tick(), [0.2, -0.3])  # disarmed: holding HOME
    rig.advance(20)
    rig.measure([0.5, 0.02, -0.5])  # moved by hand while disarmed
    rig.arm()
    np.testing.assert_array_equal(rig.tick(), [0.5, -0.5])


def test_state_lost_needs_armed():
    rig = Rig()
    rig.measure(HOME)
    rig.advance(1000)
    np.testing.assert_array_equal(rig.tick(), [0.2, -0.3])  # disarmed: held, not e-stopped
    assert rig.sup.state is SafetyState.DISARMED and rig.sup.rule_counts['state_lost'] == 0


def test_velocity_robot_state_lost_holds_zeros():
    rig = Rig(wheel_spec(), state_timeout_s=0.15, heartbeat_timeout_s=0.15)
    rig.measure([0.0, 0.0], velocity=np.array([30.0, 30.0]))
    rig.arm()
    assert rig.command([40.0, 40.0]).action == 'pass'
    rig.advance(150)
    rig.tick()  # a watchdog hold (no command for 150 ms), not yet an e-stop
    assert rig.sup.state is SafetyState.ARMED
    rig.now += 1
    np.testing.assert_array_equal(rig.tick(), [0.0, 0.0])
    assert rig.sup.state is SafetyState.ESTOPPED and rig.sup.rule_counts['state_lost'] == 1


# E-stop, reset -----------------------------------------------------------------------------
def test_estop_latches_holds_and_blocks_until_reset(rig):
    rig.command([0.25, -0.3])
    rig.measure([0.23, 0.02, -0.3])
    rig.sup.on_estop(True, rig.now)
    assert rig.sup.state is SafetyState.ESTOPPED and rig.sup.estops == 1
    assert rig.sup.last_reason == 'estop: e-stop received' and rig.sup.holding_due(rig.now)
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


def test_estop_recaptures_the_newest_position_over_a_watchdog_hold(rig):
    assert rig.command([0.25, -0.35]).action == 'pass'
    rig.advance(101)
    rig.measure([0.24, 0.02, -0.34])
    np.testing.assert_array_equal(rig.tick(), [0.24, -0.34])  # watchdog hold
    rig.advance(20)
    rig.measure([0.3, 0.02, -0.4])  # pushed away while the watchdog held
    np.testing.assert_array_equal(rig.tick(), [0.24, -0.34])
    rig.sup.on_estop(True, rig.now, 'operator')
    np.testing.assert_array_equal(rig.tick(), [0.3, -0.4])
    assert rig.sup.last_reason == 'estop: operator'


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


# Rate limit -------------------------------------------------------------------------------
def test_rate_limit_allows_a_burst_then_refills_at_three_times_the_control_rate(rig):
    for _ in range(3):  # burst 3, all at the same instant
        assert rig.command([0.2, -0.3]).action == 'pass'
    fourth = rig.command([0.2, -0.3])
    assert fourth.fired == ('rate',)
    assert fourth.reason == 'rate: more than 60 commands/s (burst 3)'
    assert not rig.sup.holding_due(rig.now)  # too many commands is no reason to hold
    rig.advance(16)  # 16 ms x 60/s = 0.96 tokens: not yet one
    assert rig.command([0.2, -0.3]).fired == ('rate',)
    rig.advance(1)  # 17 ms x 60/s = 1.02 tokens
    assert rig.command([0.2, -0.3]).action == 'pass'
    assert rig.command([0.2, -0.3]).fired == ('rate',)
    assert rig.sup.rule_counts['rate'] == 3 and rig.sup.passed == 4


def test_rate_limit_configured_rate_and_burst():
    rig = armed_rig(max_command_rate_hz=10.0, command_burst=1.0)
    assert rig.command([0.2, -0.3]).action == 'pass'
    rig.advance(50)
    assert rig.command([0.2, -0.3]).fired == ('rate',)  # 0.5 tokens
    rig.advance(51)  # 0.5 + 0.51 tokens: a rejected command does not waste the refill
    assert rig.command([0.2, -0.3]).action == 'pass'


# Plan hook ----------------------------------------------------------------------------------
def plan(*rows):
    """A (T, 2) plan of shoulder, elbow positions."""
    return ['shoulder', 'elbow'], np.array(rows, dtype=np.float64)


def test_plan_missing_or_outside_limits_rejects_and_holds_at_once():
    rig = armed_rig(check_plan=True)
    missing = rig.command([0.25, -0.35])
    assert missing.fired == ('plan',) and missing.reason == 'plan: no plan received'
    assert rig.sup.holding_due(rig.now)
    np.testing.assert_array_equal(rig.tick(), [0.2, -0.3])

    assert rig.sup.on_plan(*plan([0.25, -0.35], [0.3, -0.4]), rig.now) == ''
    assert rig.command([0.25, -0.35]).action == 'pass'
    assert rig.tick() is None and not rig.sup.holding

    rig.advance(20)
    verdict = rig.sup.on_plan(*plan([0.3, -0.4], [1.2, -0.5], [1.5, -0.5]), rig.now)
    assert verdict == 'step 1: shoulder=1.2 outside [-1, 1]'
    assert not rig.sup.holding_due(rig.now)  # the verdict acts on the next command
    rejected = rig.command([0.3, -0.4])
    assert rejected.fired == ('plan',) and rejected.reason == f'plan: {verdict}'
    assert rig.sup.holding_due(rig.now)  # 20 ms after a pass: forced, not the watchdog
    np.testing.assert_array_equal(rig.tick(), [0.2, -0.3])
    assert rig.sup.last_reason == rejected.reason
    assert rig.sup.rule_counts['plan'] == 2

    rig.advance(20)
    assert rig.sup.on_plan(*plan([0.3, -0.4]), rig.now) == ''
    assert rig.command([0.3, -0.4]).action == 'pass'
    assert rig.tick() is None


def test_plan_older_than_two_periods_is_missing():
    rig = armed_rig(check_plan=True)
    rig.sup.on_plan(*plan([0.2, -0.3]), rig.now - 100 * MS)
    assert rig.command([0.2, -0.3]).action == 'pass'  # exactly two 50 ms periods older
    rig.sup.on_plan(*plan([0.2, -0.3]), rig.now - 100 * MS - 1)
    rig.advance(20)
    rig.measure(HOME)
    old = rig.command([0.2, -0.3])
    assert old.fired == ('plan',) and 'plan is 0.120 s older than the command' in old.reason


def test_plan_tolerance_and_rule_off_by_default():
    rig = armed_rig(check_plan=True, plan_tolerance=0.05)
    assert rig.sup.on_plan(*plan([1.04, 0.0]), rig.now) == ''
    assert rig.sup.on_plan(*plan([1.06, 0.0]), rig.now) == \
        'step 0: shoulder=1.06 outside [-1, 1]'
    plain = armed_rig()
    plain.sup.on_plan(*plan([1.5, 0.0]), plain.now)  # judged, but nobody asked
    assert plain.command([0.2, -0.3]).action == 'pass'


# Uncertainty hook -------------------------------------------------------------------------
def test_uncertainty_slows_then_holds():
    rig = armed_rig(uncertainty_slow=0.5, uncertainty_hold=1.0)
    missing = rig.command([0.25, -0.35])
    assert missing.fired == ('uncertainty',) and 'no uncertainty received' in missing.reason
    assert rig.sup.holding_due(rig.now)

    rig.advance(20)
    rig.sup.on_uncertainty(0.49, rig.now)
    assert rig.command([0.28, -0.38]).action == 'pass'  # below the slow threshold
    rig.advance(20)
    rig.sup.on_uncertainty(0.5, rig.now)
    slow = rig.command([0.28, -0.38])
    assert slow.fired == ('uncertainty',) and slow.action == 'clamp'
    np.testing.assert_allclose(slow.values, [0.24, -0.34], atol=1e-15)  # q + 0.5 (cmd - q)
    rig.advance(20)
    both = rig.command([0.6, -0.3])  # halved to 0.4, still past the 0.1 step
    assert both.fired == ('uncertainty', 'step')
    np.testing.assert_allclose(both.values, [0.3, -0.3], atol=1e-15)

    rig.advance(20)
    rig.sup.on_uncertainty(1.0, rig.now)
    assert not rig.sup.holding_due(rig.now)
    held = rig.command([0.21, -0.3])
    assert held.fired == ('uncertainty',) and held.values is None
    assert 'uncertainty: 1 >= hold threshold 1' in held.reason
    assert rig.sup.holding_due(rig.now)
    np.testing.assert_array_equal(rig.tick(), [0.2, -0.3])
    rig.advance(20)
    rig.sup.on_uncertainty(NAN, rig.now)  # no figure is no reassurance
    assert rig.command([0.21, -0.3]).fired == ('uncertainty',)


def test_uncertainty_slow_factor_on_a_velocity_robot():
    rig = Rig(wheel_spec(), uncertainty_slow=0.1, slow_factor=0.25)
    rig.measure([0.0, 0.0], velocity=np.array([10.0, -10.0]))
    rig.arm()
    rig.sup.on_uncertainty(0.3, rig.now)
    decision = rig.command([20.0, -20.0])
    assert decision.fired == ('uncertainty',)  # 0.25 x 20 = 5, within 20 of the measured 10
    np.testing.assert_array_equal(decision.values, [5.0, -5.0])


# Effort (stall) ------------------------------------------------------------------------------
def test_effort_from_on_state_reaches_the_stall_rule():
    rig = armed_rig()
    # joint_states order: were the passive finger's effort taken for the elbow, the elbow
    # would count as stalled pushing down and -0.35 would be clamped
    rig.measure(HOME, effort=np.array([0.96, -9.0, 0.0]))
    pushing = rig.command([0.25, -0.35])  # shoulder pushes further along its stall effort
    assert pushing.fired == ('effort',) and pushing.reason.startswith('effort: shoulder')
    np.testing.assert_array_equal(pushing.values, [0.2, -0.35])
    rig.advance(20)
    assert rig.command([0.15, -0.35]).action == 'pass'  # backing off is allowed
    rig.advance(20)
    rig.measure(HOME, effort=np.array([0.94, 0.0, 0.0]))  # below 0.95 of 1 N m
    assert rig.command([0.25, -0.35]).action == 'pass'
    rig.advance(20)
    rig.measure(HOME, velocity=np.array([0.06, 0.0, 0.0]), effort=np.array([0.96, 0.0, 0.0]))
    assert rig.command([0.25, -0.35]).action == 'pass'  # moving: not stalled
    rig.advance(20)
    rig.measure(HOME)  # no effort field: not judged
    assert rig.command([0.25, -0.35]).action == 'pass'


# Body rate ---------------------------------------------------------------------------------
def test_body_rate_input_is_required_and_stops_a_tumbling_robot():
    rig = Rig(wheel_spec(BodyRateLimit(roll_pitch=6.0, yaw=3.0, left='left', right='right')))
    rig.measure([0.0, 0.0], velocity=np.array([10.0, 10.0]))
    rig.arm()
    no_rate = rig.command([10.0, 10.0])
    assert no_rate.fired == ('stale_state',) and 'body rate' in no_rate.reason
    rig.advance(20)
    rig.sup.on_body_rate(np.array([0.0, 0.0, 0.0]), rig.now)
    assert rig.command([10.0, 10.0]).action == 'pass'
    rig.advance(20)
    rig.sup.on_body_rate(np.array([0.0, -6.5, 0.0]), rig.now)
    tumbling = rig.command([10.0, 10.0])
    assert tumbling.fired == ('body_rate',)
    np.testing.assert_array_equal(tumbling.values, [0.0, 0.0])


def test_stats_has_every_counter(rig):
    stats = rig.sup.stats()
    for key in ('state', 'passed', 'clamped', 'blocked', 'held', 'estops', 'holding',
                'last_reason', 'rule/finite', 'rule/names', 'rule/age', 'rule/stale_state',
                'rule/rate', 'rule/plan', 'rule/uncertainty', 'rule/effort', 'rule/workspace',
                'rule/body_rate', 'rule/position_box', 'rule/step', 'rule/estop',
                'rule/disarmed', 'rule/state_lost'):
        assert key in stats


def test_hold_of_a_joint_measured_past_its_limit_stays_at_the_limit():
    rig = armed_rig()
    rig.measure([1.003, 0.02, -2.001])  # soft limits: a hair past both
    np.testing.assert_array_equal(rig.tick(), [1.0, -2.0])


def test_hold_leads_a_moving_joint_by_hold_lead_s_within_max_step():
    rig = armed_rig()  # hold_lead_s 0.02 s by default, max_step 0.1 rad
    rig.measure([0.2, 0.02, -0.3], velocity=np.array([2.0, 0.0, -50.0]))
    # shoulder: 0.2 + 2 * 0.02; elbow: -50 * 0.02 = -1.0 is cut to -max_step
    np.testing.assert_allclose(rig.tick(), [0.24, -0.4], rtol=0, atol=1e-12)
    rig = armed_rig(hold_lead_s=0.0)
    rig.measure([0.2, 0.02, -0.3], velocity=np.array([2.0, 0.0, -50.0]))
    np.testing.assert_array_equal(rig.tick(), [0.2, -0.3])
    rig = armed_rig()
    rig.measure([0.99, 0.02, -0.3], velocity=np.array([NAN, 0.0, NAN]))  # speed unknown
    np.testing.assert_array_equal(rig.tick(), [0.99, -0.3])
    rig = armed_rig()
    rig.measure([0.99, 0.02, -0.3], velocity=np.array([2.0, 0.0, 0.0]))  # lead past the limit
    np.testing.assert_array_equal(rig.tick(), [1.0, -0.3])
