"""
WidowXDriver faults that must leave the arm safe (ISSUE13 §3b), real dynamixel_sdk against
the emulated bus on a pty.

- disable() gives every servo its torque-off attempt and names all that failed;
- a servo that does not answer a read still yields the others' state (NaN for its joint);
- retries of a read stay within the read budget (one control period);
- a silent bus is told apart from one silent servo.
"""

from __future__ import annotations

import numpy as np
import pytest

from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.robots import driver as base
from dexmpc_ros.wire import dynamixel_protocol as dxl
from dexmpc_ros.robots.widowx.driver import WidowXDriver, WidowXDriverConfig

SPEC = load_robot_spec('widowx')
ALL_IDS = list(range(1, 10))


@pytest.fixture
def arm(widowx_bus):
    driver = WidowXDriver(WidowXDriverConfig(port=widowx_bus.path), SPEC)
    driver.connect()
    driver.enable()
    driver.read()                     # the first read also reads the slow values
    yield driver
    driver.disconnect()


def torque(widowx_bus) -> dict[int, int]:
    return {i: s.get('torque_enable') for i, s in widowx_bus.servos.items()}


# disable(): every servo gets its torque-off attempt ------------------------------------
def test_disable_turns_off_every_servo_past_a_mute_and_a_faulted_one(arm, widowx_bus):
    assert set(torque(widowx_bus).values()) == {1}
    widowx_bus.set_hardware_error(6, dxl.HardwareError.OVERLOAD)   # alert bit on its replies
    widowx_bus.no_reply([4])                                       # hears, cannot answer
    with pytest.raises(base.DriverError) as info:
        arm.disable()
    assert torque(widowx_bus) == dict.fromkeys(ALL_IDS, 0)         # 5-9 too, and the mute 4
    text = str(info.value)
    assert 'servo 4 (elbow)' in text and 'may still be powered' in text, text
    assert 'servo 6' not in text and 'servo 5' not in text  # they confirmed
    assert isinstance(info.value, base.TorqueOffError)
    assert info.value.still_powered == ('servo 4 (elbow)',)
    assert not arm.is_enabled


def test_disable_names_every_servo_behind_a_cut_cable_in_one_error(arm, widowx_bus):
    widowx_bus.no_reply([5, 6, 7, 8, 9], deaf=True)                # cable cut after servo 4
    with pytest.raises(base.TorqueOffError) as info:
        arm.disable()
    assert info.value.still_powered == ('servo 5 (elbow_shadow)', 'servo 6 (forearm_roll)',
                                        'servo 7 (wrist_angle)', 'servo 8 (wrist_rotate)',
                                        'servo 9 (gripper)')
    # what heard the torque-off is off; what did not may indeed still be powered
    assert torque(widowx_bus) == {1: 0, 2: 0, 3: 0, 4: 0, 5: 1, 6: 1, 7: 1, 8: 1, 9: 1}


def test_disable_on_a_healthy_bus_confirms_all(arm, widowx_bus):
    arm.disable()
    assert torque(widowx_bus) == dict.fromkeys(ALL_IDS, 0) and not arm.is_enabled


# read(): the servos that answer still give their state -----------------------------
def test_a_mute_servo_leaves_the_others_state_with_nan_for_its_joint(arm, widowx_bus):
    names = SPEC.joint_names
    widowx_bus.no_reply([4])
    with pytest.raises(base.DeviceNotAnsweringError) as info:
        arm.read()
    assert 'servo 4 (elbow) gave no valid reply' in str(info.value)
    assert isinstance(info.value, base.PartialReadError)
    assert info.value.silent == ('servo 4 (elbow)',)
    state = info.value.state
    assert state.names == tuple(names)
    elbow = names.index('elbow')
    others = [i for i in range(len(names)) if i != elbow]
    for field in (state.position, state.velocity, state.effort):
        assert np.isnan(field[elbow])
        assert np.all(np.isfinite(field[others]))
    assert state.faults and 'servo 4 (elbow)' in state.faults[0]
    widowx_bus.no_reply()
    assert np.all(np.isfinite(arm.read().position))          # the servo is back


def test_a_mute_shadow_leaves_its_joint_position_but_not_its_effort(arm, widowx_bus):
    widowx_bus.no_reply([5])
    with pytest.raises(base.PartialReadError) as info:
        arm.read()
    state, elbow = info.value.state, SPEC.joint_names.index('elbow')
    assert np.isfinite(state.position[elbow]) and np.isnan(state.effort[elbow])
    assert info.value.silent == ('servo 5 (elbow_shadow)',)


# Bounded retries -------------------------------------------------------------------
def test_retries_of_a_read_stay_within_the_read_budget(widowx_bus):
    """30 ms reply timeout, 20 retries, 100 ms budget: at most 4 attempts."""
    config = WidowXDriverConfig(port=widowx_bus.path, retries=20, sync_read_timeout_ms=30.0,
                                read_budget_ms=100.0)
    with WidowXDriver(config, SPEC) as arm:
        arm.read()
        widowx_bus.no_reply([4])
        before = widowx_bus.stats['sync_read']
        with pytest.raises(base.PartialReadError, match=r'servo 4 \(elbow\)'):
            arm.read()
        attempts = widowx_bus.stats['sync_read'] - before
        # each attempt lasts at least its reply timeout (30 ms, or what is left of the
        # 100 ms, and a retry needs 2 ms of it): at most 4 fit, fewer on a busy machine;
        # the retry count alone (21 attempts) would have taken > 600 ms
        assert 1 <= attempts <= 4, attempts


def test_retries_ask_only_the_servos_still_missing(widowx_bus):
    config = WidowXDriverConfig(port=widowx_bus.path, read_budget_ms=60_000.0)   # retries decide
    with WidowXDriver(config, SPEC) as arm:
        arm.read()
        widowx_bus.no_reply([4, 7])
        widowx_bus.sync_read_ids.clear()
        with pytest.raises(base.PartialReadError) as info:
            arm.read()
        assert list(widowx_bus.sync_read_ids) == [ALL_IDS, [4, 7], [4, 7]]     # 1 + retries=2
        assert info.value.silent == ('servo 4 (elbow)', 'servo 7 (wrist_angle)')
        assert 'servo 4 (elbow), servo 7 (wrist_angle) gave no valid reply' in str(info.value)


def test_read_budget_defaults_to_one_control_period(widowx_bus):
    arm = WidowXDriver(WidowXDriverConfig(port=widowx_bus.path), SPEC)
    assert arm.read_budget_s == SPEC.period_s


# Silent bus vs one servo -----------------------------------------------------------
def test_a_silent_bus_is_not_blamed_on_servo_1(arm, widowx_bus):
    widowx_bus.no_reply(ALL_IDS)                                  # 12 V supply lost, cable out
    with pytest.raises(base.DeviceNotAnsweringError) as info:
        arm.read()
    text = str(info.value)
    assert 'servo 1' not in text and 'waist' not in text, text
    assert 'no servo answered' in text and 'supply' in text, text
    assert isinstance(info.value, base.BusSilentError)


def test_one_silent_servo_is_named_and_the_bus_is_not_blamed(arm, widowx_bus):
    widowx_bus.no_reply([1])
    with pytest.raises(base.DeviceNotAnsweringError) as info:
        arm.read()
    assert 'servo 1 (waist) gave no valid reply' in str(info.value)
    assert 'other servos answered' in str(info.value)
    assert isinstance(info.value, base.PartialReadError)
    assert not isinstance(info.value, base.BusSilentError)


def test_torque_off_on_a_silent_bus_says_so(arm, widowx_bus):
    widowx_bus.no_reply(ALL_IDS)
    with pytest.raises(base.TorqueOffError) as info:
        arm.disable()
    assert len(info.value.still_powered) == 9
    assert 'no servo answered' in str(info.value), str(info.value)
    assert torque(widowx_bus) == dict.fromkeys(ALL_IDS, 0)        # they heard the sync write
