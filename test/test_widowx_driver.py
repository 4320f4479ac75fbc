"""
WidowXDriver with the real dynamixel_sdk against the emulated bus on a pty.

Covers identify/configure, the absent-port and wrong-model messages, enable without a
jump, goals reaching the (emulated) servos, shadows, hardware faults and reboot, retries
on silence and corruption, and unplug / re-plug.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest

from dexmpc_ros.core.errors import ConfigError
from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.wire.dynamixel_bus import DynamixelBusEmulator, EmulatedServo
from dexmpc_ros.robots.widowx.emulator import widowx_bus_emulator
from dexmpc_ros.robots.widowx.physics import widowx_servos
from dexmpc_ros.wire import dynamixel_protocol as dxl
from dexmpc_ros.robots.driver import (DeviceNotAnsweringError, DriverError, HardwareFaultError,
                                      NotConnectedError, PortMissingError, WrongDeviceError)
from dexmpc_ros.robots.widowx.driver import WidowXDriver, WidowXDriverConfig
from dexmpc_ros.robots.widowx.servos import (GripperLinkage, rad_to_tick, tick_to_rad,
                                             torque_from_raw, wx250s_servos)

SPEC = load_robot_spec('widowx')
POSE = np.array([0.4, 0.3, -0.25, 0.2, 0.5, -0.3, 0.025])     # 6 arm joints [rad], finger [m]


@pytest.fixture
def bus(widowx_bus):
    return widowx_bus


@pytest.fixture
def arm(bus):
    driver = WidowXDriver(WidowXDriverConfig(port=bus.path), SPEC)
    driver.connect()
    yield driver
    driver.disconnect()


#: How long a wait for the emulator (its own thread, moving on the wall clock) may take on a
#: loaded machine: a timeout for no progress at all, not a bound on how fast it gets there.
WAIT_S = 30.0


def eventually(check, seconds: float = WAIT_S) -> bool:
    """Poll ``check`` until it holds: the emulator serves from its own thread."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def track(arm: WidowXDriver, command: np.ndarray, seconds: float = WAIT_S):
    """Write ``command`` and read until the joints settle (or ``seconds`` pass)."""
    deadline = time.monotonic() + seconds
    state = arm.read()
    while time.monotonic() < deadline:
        arm.write(command)
        state = arm.read()
        if np.allclose(state.position[:7], command, atol=2e-3):
            break
        time.sleep(0.005)
    return state


# Connect / identify -----------------------------------------------------------------
def test_connect_identifies_and_configures_with_torque_off(arm, bus):
    assert arm.is_connected and not arm.is_enabled
    for servo in arm.servos:
        emulated = bus.servos[servo.id]
        assert emulated.get('drive_mode') == (1 if servo.reverse else 0), servo.name
        assert emulated.get('operating_mode') == 3
        assert emulated.get('profile_velocity') == 131
        assert emulated.get('torque_enable') == 0
    assert {s.name for s in arm.servos if s.reverse} == {'shoulder_shadow', 'elbow_shadow',
                                                         'wrist_angle'}


def test_read_before_connect_says_how_to_fix(bus):
    driver = WidowXDriver(WidowXDriverConfig(port=bus.path), SPEC)
    with pytest.raises(NotConnectedError, match='call connect'):
        driver.read()
    with pytest.raises(NotConnectedError):
        driver.write(POSE)


def test_absent_port_names_the_port_and_the_cable(tmp_path):
    port = str(tmp_path / 'ttyUSB0')
    with pytest.raises(PortMissingError) as info:
        WidowXDriver(WidowXDriverConfig(port=port), SPEC).connect()
    assert f'no Dynamixel bus on {port}' in str(info.value) and 'U2D2' in str(info.value)


def test_silent_bus_says_no_dynamixel_with_the_permissions_hint():
    with DynamixelBusEmulator([]) as empty:
        driver = WidowXDriver(WidowXDriverConfig(port=empty.path, retries=1), SPEC)
        with pytest.raises(DeviceNotAnsweringError) as info:
            driver.connect()
    text = str(info.value)
    assert f'no Dynamixel on {empty.path}' in text and 'dialout' in text and 'U2D2' in text
    assert not driver.is_connected


def test_wrong_model_number_is_named(bus):
    bus.servos[8].set('model_number', dxl.XM430_W350)
    driver = WidowXDriver(WidowXDriverConfig(port=bus.path), SPEC)
    with pytest.raises(WrongDeviceError) as info:
        driver.connect()
    assert 'servo 8 (wrist_rotate)' in str(info.value)
    assert 'XM430-W350' in str(info.value) and 'expected a XL430-W250' in str(info.value)
    assert not driver.is_connected


# Enable / write / read --------------------------------------------------------------
def test_enable_sets_goal_to_present_before_torque(arm, bus):
    bus.servos[2].set('present_position', 2300)      # arm sagged while torque was off
    bus.servos[2].set('goal_position', 2900)         # stale goal from an earlier session
    bus.write_log.clear()
    arm.enable()
    log = [(i, addr, dxl.from_bytes(data, True)) for i, addr, data, err in bus.write_log]
    goal = log.index((2, 116, 2300))
    torque = log.index((2, 64, 1))
    assert goal < torque
    time.sleep(0.1)
    assert abs(bus.servos[2].get('present_position') - 2300) <= 1   # no jump to 2900
    assert arm.is_enabled and all(s.get('torque_enable') == 1 for s in bus.servos.values())


def test_write_moves_the_emulated_joints(arm, bus):
    arm.enable()
    state = track(arm, POSE)
    np.testing.assert_allclose(state.position[:7], POSE, atol=2e-3)
    assert state.position[7] == pytest.approx(-state.position[6])       # right = -left
    assert state.names == tuple(SPEC.joint_names)
    assert bus.servos[1].get('present_position') == int(rad_to_tick(POSE[0]))
    assert np.all(np.isfinite(state.effort)) and state.faults == ()
    assert 'temperature_gripper' in state.extra and state.extra['voltage_waist'] == 12.0


def test_write_clamps_to_limits_and_returns_what_was_sent(arm, bus):
    far = POSE.copy()
    far[1] = 3.0                                     # shoulder upper limit is 1.99 rad
    far[6] = 0.1                                     # fingers open to 0.037 m at most
    sent = arm.write(far)
    assert sent[1] == pytest.approx(SPEC.joints[1].upper, abs=1e-3)
    assert sent[6] == pytest.approx(0.037, abs=1e-4)
    assert eventually(lambda: bus.servos[2].get('goal_position') == int(rad_to_tick(sent[1])))
    with pytest.raises(ValueError, match='7 finite values'):
        arm.write(np.full(7, np.nan))


def test_shadows_follow_their_masters(arm, bus):
    for shadow in (3, 5):       # no Secondary ID: the driver itself must command shadows
        bus.servos[shadow].set('secondary_id', 255)
    arm.enable()
    track(arm, POSE)
    for master, shadow in ((2, 3), (4, 5)):
        assert bus.servos[shadow].get('goal_position') == bus.servos[master].get(
            'goal_position')
        assert bus.servos[shadow].get('present_position') == bus.servos[master].get(
            'present_position')


def test_twin_physics_hardware_in_the_loop():
    with widowx_bus_emulator(twin=True) as bus:
        with WidowXDriver(WidowXDriverConfig(port=bus.path), SPEC) as arm:
            arm.enable()
            target = np.array([0.3, 0.2, -0.2, 0.1, 0.3, 0.2, 0.03])
            state = track(arm, target)
            np.testing.assert_allclose(state.position[:7], target, atol=2e-3)
            twin = bus.physics.twin.joints().position
            np.testing.assert_allclose(twin[:7], target, atol=2e-3)
            # gravity loads the shoulder: measured torque, shared by the two servos
            assert abs(state.effort[1]) > 0.5
            assert bus.servos[3].get('present_position') == bus.servos[2].get(
                'present_position')


# Faults -----------------------------------------------------------------------------
def test_hardware_error_raises_named_fault_and_reboot_clears_it(arm, bus):
    arm.enable()
    bus.set_hardware_error(2, dxl.HardwareError.OVERLOAD)
    with pytest.raises(HardwareFaultError) as info:
        arm.read()
    assert 'servo 2 (shoulder): overload' in str(info.value) and 'reboot' in str(info.value)
    assert bus.servos[2].get('torque_enable') == 0 and not arm.is_enabled
    arm.reboot('shoulder')
    assert bus.servos[2].get('hardware_error_status') == 0
    assert bus.servos[2].get('profile_velocity') == 131     # RAM restored after reboot
    arm.enable()
    assert arm.read().faults == ()


def test_fault_latched_before_connect_can_be_rebooted(bus):
    bus.set_hardware_error(7, dxl.HardwareError.MOTOR_ENCODER)
    with WidowXDriver(WidowXDriverConfig(port=bus.path), SPEC) as arm:
        assert arm.is_connected
        assert arm.faults == ('servo 7 (wrist_angle): motor encoder fault',)
        with pytest.raises(HardwareFaultError, match='wrist_angle'):
            arm.read()
        arm.reboot(7)
        arm.enable()
        assert arm.read().faults == () and arm.faults == ()


def test_overheating_gripper_is_named(arm, bus):
    bus.set_hardware_error(9, dxl.HardwareError.OVERHEATING | dxl.HardwareError.INPUT_VOLTAGE)
    with pytest.raises(HardwareFaultError, match=r'servo 9 \(gripper\): input voltage out of '
                                                 r'range, overheating'):
        arm.read()
    assert arm.faults == ('servo 9 (gripper): input voltage out of range, overheating',)


def test_clear_faults_reboots_the_faulted_servo_and_enable_works_again(arm, bus):
    arm.enable()
    track(arm, POSE, seconds=0.3)
    bus.set_hardware_error(2, dxl.HardwareError.OVERLOAD)
    with pytest.raises(HardwareFaultError, match=r'servo 2 \(shoulder\): overload'):
        arm.read()
    with pytest.raises(HardwareFaultError):
        arm.enable()                                  # still latched: refuses
    reboots, holding = bus.stats['reboot'], bus.servos[1].get('goal_position')
    bus.write_log.clear()
    arm.clear_faults()
    assert bus.stats['reboot'] - reboots == 1         # only the faulted servo
    assert bus.servos[2].get('hardware_error_status') == 0 and arm.faults == ()
    # RAM reset by the reboot is restored; EEPROM (reverse flags) kept
    assert bus.servos[2].get('profile_velocity') == 131
    assert bus.servos[2].get('profile_acceleration') == 40
    assert bus.servos[3].get('drive_mode') == 1 and bus.servos[2].get('drive_mode') == 0
    # healthy servos were not touched (3 hears ID 2 as its Secondary ID) and still hold
    assert {i for i, *_ in bus.write_log} <= {2, 3}
    assert bus.servos[1].get('torque_enable') == 1
    assert bus.servos[1].get('goal_position') == holding
    assert not arm.is_enabled and bus.servos[2].get('torque_enable') == 0
    assert arm.read().faults == ()
    arm.enable()
    assert all(s.get('torque_enable') == 1 for s in bus.servos.values())
    target = POSE + np.array([-0.2, 0.1, 0.1, 0, 0, 0, 0])
    np.testing.assert_allclose(track(arm, target).position[:7], target, atol=2e-3)


def test_clear_faults_latched_before_connect(bus):
    bus.set_hardware_error(7, dxl.HardwareError.MOTOR_ENCODER)
    with WidowXDriver(WidowXDriverConfig(port=bus.path), SPEC) as arm:
        arm.clear_faults()
        arm.enable()
        assert arm.read().faults == () and arm.faults == ()


class StaysOverheated(EmulatedServo):
    """A servo still too hot after its reboot: the error comes straight back."""

    def reboot(self, now: float, duration: float) -> None:
        super().reboot(now, duration)
        self.set('hardware_error_status', dxl.HardwareError.OVERHEATING)


def test_clear_faults_names_a_fault_that_outlasts_the_reboot():
    servos = widowx_servos()
    hot = StaysOverheated(9, dxl.XL430_W250)
    hot.mem[:] = servos[8].mem
    with DynamixelBusEmulator(servos[:8] + [hot]) as bus:
        with WidowXDriver(WidowXDriverConfig(port=bus.path), SPEC) as arm:
            arm.enable()
            bus.set_hardware_error(9, dxl.HardwareError.OVERHEATING)
            with pytest.raises(HardwareFaultError) as info:
                arm.clear_faults()
            assert 'persists after reboot: servo 9 (gripper): overheating' in str(info.value)
            assert 'cool' in str(info.value) and bus.stats['reboot'] == 1
            assert arm.faults == ('servo 9 (gripper): overheating',)
            with pytest.raises(HardwareFaultError, match='gripper'):
                arm.enable()


def test_clear_faults_without_a_fault_reboots_nothing(arm, bus):
    arm.enable()
    arm.clear_faults()
    assert bus.stats['reboot'] == 0 and arm.is_enabled
    with pytest.raises(NotConnectedError):
        WidowXDriver(WidowXDriverConfig(port=bus.path), SPEC).clear_faults()


def test_servo_that_stays_deaf_after_reboot_is_named(bus):
    bus.reboot_s = 600.0                  # deaf far longer than the driver waits for it
    config = WidowXDriverConfig(port=bus.path, reboot_timeout_s=0.1)
    with WidowXDriver(config, SPEC) as arm:
        bus.set_hardware_error(4, dxl.HardwareError.ELECTRICAL_SHOCK)
        pings = bus.stats['ping']
        with pytest.raises(DeviceNotAnsweringError,
                           match=r'servo 4 \(elbow\) did not answer within 0.1 s'):
            arm.clear_faults()
        # it asked, then gave up on its own timeout while the servo was still rebooting
        assert bus.stats['reboot'] == 1 and bus.stats['ping'] > pings
        assert time.monotonic() < bus.servos[4].busy_until


def test_no_reply_retries_a_bounded_number_of_times(arm, bus):
    arm.read()                                        # the first read also reads slow values
    bus.no_reply([4])
    before = bus.stats['sync_read']
    with pytest.raises(DeviceNotAnsweringError, match=r'servo 4 \(elbow\).*tries \(no reply\)'):
        arm.read()
    # at most 1 + retries=2, and only while the read budget (50 ms) lasts; then it gives up
    # (counted on the bus: how long that takes is a wall-clock figure, bench/drivers.py)
    assert 1 <= bus.stats['sync_read'] - before <= 3
    bus.no_reply()
    assert arm.read().position.shape == (8,)          # the bus recovers


def test_corrupted_crc_and_partial_packets_are_retried(arm, bus):
    arm.read()                                        # the first read also reads slow values
    before = bus.stats['sync_read']
    bus.corrupt_crc(1)
    arm.read()
    bus.truncate_replies(1)
    arm.read()
    assert bus.stats['sync_read'] - before == 4       # each read needed one retry
    bus.corrupt_crc(1)
    arm.bus.write(1, 'led', 1)          # single transactions retry too
    assert bus.servos[1].get('led') == 1
    bus.corrupt_crc(100)
    with pytest.raises(DeviceNotAnsweringError, match='corrupted reply: bad CRC'):
        arm.read()


def test_unplug_raises_driver_error_and_replug_reconnects(arm, bus):
    arm.enable()
    bus.unplug()
    with pytest.raises(DriverError) as info:
        for _ in range(3):
            arm.read()
            arm.write(POSE)
    assert isinstance(info.value, PortMissingError) and 'U2D2' in str(info.value)
    assert not arm.is_connected
    with pytest.raises(PortMissingError):
        arm.connect()
    bus.replug()
    arm.connect()
    arm.enable()
    state = track(arm, POSE)
    np.testing.assert_allclose(state.position[:7], POSE, atol=2e-3)


# Config and conversions -------------------------------------------------------------
def test_config_validation_names_the_bad_value():
    with pytest.raises(ValueError, match='123'):
        WidowXDriverConfig(baudrate=123)
    with pytest.raises(ValueError, match='pwm'):
        WidowXDriverConfig(operating_mode='pwm')
    with pytest.raises(ValueError, match='1.0'):
        WidowXDriverConfig(protocol=1.0)
    cfg = WidowXDriverConfig.from_spec(SPEC, retries=5)
    assert (cfg.port, cfg.baudrate, cfg.retries) == ('/dev/ttyDXL', 1_000_000, 5)


def test_servo_table_matches_the_yaml():
    servos = wx250s_servos(SPEC.driver)
    assert {s.name: s.id for s in servos} == SPEC.driver['servo_ids']
    assert {s.name for s in servos if s.reverse} == set(SPEC.driver['reverse_drive_mode'])
    assert {s.name: s.master for s in servos if s.is_shadow} == {
        'shoulder_shadow': 'shoulder', 'elbow_shadow': 'elbow'}
    with pytest.raises(ConfigError, match='distinct'):
        wx250s_servos({'servo_ids': {'waist': 2}})


def test_unit_conversions():
    assert tick_to_rad(2048) == 0.0 and tick_to_rad(3072) == pytest.approx(math.pi / 2)
    assert rad_to_tick(-108 * math.pi / 180) == 819                     # hardware.md §1.2
    linkage = GripperLinkage()
    for d in (0.015, 0.025, 0.037):
        assert linkage.finger(linkage.angle(d)) == pytest.approx(d, abs=1e-9)
    assert linkage.finger(0.0) == pytest.approx(math.sqrt(0.024 ** 2 - 0.014 ** 2))
    h = 1e-6
    assert linkage.finger_rate(0.4) == pytest.approx(
        (linkage.finger(0.4 + h) - linkage.finger(0.4 - h)) / (2 * h), rel=1e-5)
    assert torque_from_raw(dxl.XM430_W350, 1000) == pytest.approx(2.69 * 1.793)
    assert torque_from_raw(dxl.XL430_W250, 1000) == pytest.approx(1.5)


def test_port_path_is_a_symlink_to_a_pty(bus):
    assert os.path.islink(bus.path) and os.readlink(bus.path).startswith('/dev/pts/')


# Emulator fidelity (raw dynamixel_sdk) -----------------------------------------------
@pytest.fixture
def sdk(bus):
    from dynamixel_sdk import PacketHandler, PortHandler
    port, packet = PortHandler(bus.path), PacketHandler(2.0)
    assert port.openPort() and port.setBaudRate(1_000_000)
    yield port, packet
    port.closePort()


def test_emulator_protects_eeprom_and_limits(sdk, bus):
    port, packet = sdk
    assert packet.write1ByteTxRx(port, 1, 64, 1) == (0, 0)            # torque on
    assert packet.write1ByteTxRx(port, 1, 10, 1) == (0, 7)            # EEPROM: access error
    assert packet.write4ByteTxRx(port, 2, 116, 4000) == (0, 6)        # above Max Position
    assert packet.write1ByteTxRx(port, 1, 132, 0) == (0, 7)           # read-only register
    assert packet.ping(port, 42)[1] != 0                              # nobody has ID 42


def test_emulator_secondary_id_obeys_silently(sdk, bus):
    port, packet = sdk
    assert packet.write4ByteTxRx(port, 2, 116, 2500) == (0, 0)        # one reply, from ID 2
    assert eventually(lambda: bus.servos[3].get('goal_position') == 2500)
    assert packet.write1ByteTxRx(port, 2, 10, 1) == (0, 0)            # EEPROM: not via 2nd ID
    assert bus.servos[2].get('drive_mode') == 1 and bus.servos[3].get('drive_mode') == 0


def test_emulator_alert_bit_and_reboot(sdk, bus):
    port, packet = sdk
    bus.set_hardware_error(6, dxl.HardwareError.OVERLOAD)
    value, result, error = packet.read1ByteTxRx(port, 6, 70)
    assert (value, result) == (0x20, 0) and error & dxl.STATUS_ALERT
    assert packet.reboot(port, 6) == (0, dxl.STATUS_ALERT)
    assert bus.stats['reboot'] == 1
    rebooted = bus.servos[6]
    assert eventually(lambda: time.monotonic() >= rebooted.busy_until)   # deaf until then
    assert packet.read1ByteTxRx(port, 6, 70) == (0, 0, 0)
