"""
RoachDriver against the VelociRoACH emulator over a pty, with real pyserial.

Every timing check waits for a condition with a generous deadline (a timeout for no
progress at all, not a bound: the emulator moves on the wall clock of a possibly busy
machine); none asserts on a sleep or on what arrives within a fixed window.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.wire.pty_link import PtyLink
from dexmpc_ros.robots.roach.firmware import EmulatorConfig, RoachFirmwareEmulator, TwinBody
from dexmpc_ros.robots.roach import protocol as rp
from dexmpc_ros.robots.driver import (DeviceNotAnsweringError, DriverError, NotConnectedError,
                                      PortMissingError)
from dexmpc_ros.robots.roach.driver import RoachDriver, RoachDriverConfig
from dexmpc_ros.wire.xbee import (API_RX16, API_TX_STATUS, FrameParser, RxPacket16,
                                  TxRequest16, TxStatus)

REPO = Path(__file__).resolve().parents[1]
T = 0.3          # link-loss budget [s]
WAIT_S = 30.0    # a wait for the emulator or the driver to get somewhere [s]


def wait_until(predicate, timeout: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def pty(tmp_path: Path) -> PtyLink:
    """A pty under the test's tmp dir (cleaned up by pytest)."""
    return PtyLink(str(tmp_path / 'ttyROACH'), drop_when_full=True)


@pytest.fixture
def emulator(tmp_path):
    with RoachFirmwareEmulator(pty(tmp_path), config=EmulatorConfig(command_timeout_s=0.0)) \
            as emu:
        yield emu


@pytest.fixture
def driver(emulator):
    drv = RoachDriver(RoachDriverConfig(port=emulator.path, link_timeout_s=T))
    drv.connect()
    yield drv
    drv.disconnect()


def test_connect_streams_telemetry_in_the_twin_names(driver, emulator):
    first = driver.read()
    assert first.names == ('left_legs', 'right_legs')
    assert first.faults == () and driver.link_ok and driver.is_connected
    assert np.isnan(first.effort).all()
    assert first.extra['accel_z'] == pytest.approx(9.80665, rel=1e-3)   # upright, at rest
    assert first.extra['rssi_dbm'] == -40.0
    assert wait_until(lambda: driver.stats.records >= first.extra['sample_index'] + 10)
    assert driver.read().stamp > first.stamp
    assert rp.Cmd.START_TELEMETRY in emulator.received_types()


def test_write_moves_the_legs_and_returns_what_was_sent(driver, emulator):
    sent = driver.write(np.array([25.0, 12.5]))
    counts = np.trunc(rp.rad_s_to_counts_per_ms(np.array([25.0, 12.5])))
    np.testing.assert_allclose(sent, rp.counts_per_ms_to_rad_s(counts))
    assert wait_until(lambda: emulator.received[-1][1].args('hh') == tuple(int(c)
                                                                           for c in counts))
    start = driver.read().position
    assert wait_until(lambda: driver.read().position[0] - start[0] > 2 * math.pi)
    state = driver.read()
    np.testing.assert_allclose(state.velocity, sent, rtol=0.05)
    assert state.extra['gyro_z'] < -0.5               # right slower than left: turning right
    # The driver's unwrapped angle agrees with the emulated crank.
    np.testing.assert_allclose(state.position, emulator.sensors().leg_angles, atol=0.5)


def test_commands_are_clamped_and_bad_ones_refused(driver, emulator):
    vmax = load_robot_spec('roach').limits_array('velocity')
    sent = driver.write([1e6, -1e6])
    assert np.all(np.abs(sent) <= vmax) and np.all(np.abs(sent) > vmax - 0.1)
    assert sent[0] > 0 > sent[1]
    on_wire = tuple(int(c) for c in np.round(rp.rad_s_to_counts_per_ms(sent)))
    assert wait_until(lambda: emulator.received[-1][1].args('hh') == on_wire)
    n = len(emulator.received)
    for bad in ([np.nan, 0.0], [1.0, 2.0, 3.0]):
        with pytest.raises(ValueError):
            driver.write(bad)
    time.sleep(0.05)                     # let anything that was (wrongly) sent arrive
    assert rp.Cmd.SET_VEL_GET_IMU not in [p.type for _, p in list(emulator.received)[n:]]


def test_link_loss_sends_zero_thrust_reports_it_and_recovers(driver, emulator):
    driver.write([30.0, 30.0])
    assert wait_until(lambda: emulator.sensors().leg_speeds.min() > 25.0)
    lost_at = time.monotonic()
    emulator.lose_link(hears=True)             # robot -> host packets lost
    assert wait_until(lambda: not driver.link_ok)
    detected = time.monotonic() - lost_at
    # not before the budget, counted from the last record (50 Hz stream); how soon after
    # it is a wall-clock figure: bench/drivers.py (roach link loss reported)
    assert detected >= T - 0.05
    state = driver.read()
    assert state.faults and 'link lost' in state.faults[0] and state.self_clearing
    assert 'check the robot is powered' in state.faults[0]          # the next step
    assert 'resumes by itself' in state.faults[0]
    assert wait_until(lambda: any(p.type == rp.Cmd.SET_THRUST_OPEN_LOOP and p.args('hh') ==
                                  (0, 0) for _, p in list(emulator.received)))
    assert wait_until(lambda: np.abs(emulator.sensors().leg_speeds).max() < 0.5)
    np.testing.assert_array_equal(driver.write([30.0, 30.0]), [0.0, 0.0])
    assert driver.stats.link_losses == 1
    emulator.restore_link()
    assert wait_until(lambda: driver.link_ok)
    assert driver.read().faults == ()
    assert driver.write([20.0, 20.0])[0] > 19.0
    assert wait_until(lambda: emulator.sensors().leg_speeds.min() > 15.0)


def test_full_radio_loss_is_seen_by_the_basestation_as_no_ack(driver, emulator):
    emulator.lose_link(hears=False)
    assert wait_until(lambda: not driver.link_ok)
    assert wait_until(lambda: driver.stats.tx_failures >= 2)   # TX status 1: no ACK
    emulator.restore_link()
    assert wait_until(lambda: driver.link_ok)


def test_corrupt_partial_and_garbage_frames_are_dropped_and_counted(emulator):
    # The link budget is far above the 8 bad records (0.16 s at 50 Hz) however slowly a
    # busy machine serves them: what is checked is that bad frames are counted and dropped,
    # never taken for a lost link (test_link_loss_* cover the budget itself).
    driver = RoachDriver(RoachDriverConfig(port=emulator.path, link_timeout_s=WAIT_S))
    driver.connect()
    try:
        check_bad_frames_are_dropped_and_counted(driver, emulator)
    finally:
        driver.disconnect()


def check_bad_frames_are_dropped_and_counted(driver, emulator):
    before = driver.stats
    emulator.corrupt_next(5)
    assert wait_until(lambda: driver.stats.checksum_errors >= before.checksum_errors + 5)
    emulator.truncate_next(3)
    assert wait_until(lambda: driver.stats.checksum_errors >= before.checksum_errors + 8)
    emulator.inject_garbage(b'\x00\x7e\xff\xff garbage \x7e\x00')
    records = driver.stats.records
    assert wait_until(lambda: driver.stats.records >= records + 10)
    after = driver.stats
    assert after.discarded_bytes > before.discarded_bytes
    assert after.length_errors > before.length_errors
    assert driver.link_ok and after.link_losses == 0
    assert after.foreign_frames == 0             # nothing broken got through to decoding


def test_encoder_rollover_is_unwrapped(tmp_path):
    config = EmulatorConfig(command_timeout_s=0.0, initial_counts=(2**31 - 5000, -2**31 + 5000))
    with RoachFirmwareEmulator(pty(tmp_path), config=config) as emu, \
            RoachDriver(RoachDriverConfig(port=emu.path)) as drv:
        start = drv.read().position
        drv.write([40.0, -40.0])
        assert wait_until(lambda: drv.read().position[0] - start[0] > 4 * math.pi)
        state = drv.read()
        assert state.position[1] - start[1] < -4 * math.pi        # continuous through -2**31
        assert np.all(np.abs(state.velocity) < 45.0)


def test_unplug_raises_driver_error_and_replug_reconnects(driver, emulator):
    emulator.unplug()
    assert wait_until(lambda: not driver.is_connected)
    with pytest.raises(PortMissingError, match='connect'):
        driver.read()
    with pytest.raises(DriverError):
        driver.write([1.0, 1.0])
    with pytest.raises(PortMissingError, match='XBee'):
        driver.connect()                                        # still unplugged
    emulator.replug()
    driver.connect()
    assert driver.is_connected and driver.link_ok
    records = driver.stats.records
    assert wait_until(lambda: driver.stats.records > records + 5)


def test_absent_port_and_silent_port_have_actionable_errors(tmp_path):
    drv = RoachDriver(RoachDriverConfig(port=str(tmp_path / 'ttyUSB9')))
    with pytest.raises(PortMissingError, match='XBee.*cable'):
        drv.connect()
    with pytest.raises(NotConnectedError, match='connect'):
        drv.read()
    with PtyLink(str(tmp_path / 'ttySILENT')) as silent:       # nobody answers
        drv = RoachDriver(RoachDriverConfig(port=silent.path, connect_timeout_s=0.1,
                                            retries=1))
        with pytest.raises(DeviceNotAnsweringError) as info:
            drv.connect()
    message = str(info.value)
    assert silent.path in message and '57600 baud' in message and '2 attempts' in message
    assert 'PAN ID' in message and 'dialout' in message
    assert not drv.is_connected


def test_config_validation_and_spec_defaults():
    cfg = RoachDriverConfig.from_spec(load_robot_spec('roach'), link_timeout_s=0.5)
    assert (cfg.port, cfg.baudrate, cfg.robot_address, cfg.link_timeout_s) == \
        ('/dev/ttyUSB0', 57600, 1, 0.5)
    for field, value in [('baudrate', 0), ('robot_address', 0xFFFF), ('link_timeout_s', 0.0),
                         ('retries', -1)]:
        with pytest.raises(ValueError, match=field):
            RoachDriverConfig(**{field: value})
    spec = load_robot_spec('roach')
    assert cfg.telemetry == spec.driver['telemetry'] == 'reply'     # the real firmware's
    with pytest.raises(ValueError, match="telemetry.*'poll'"):
        RoachDriverConfig(telemetry='poll')
    with pytest.raises(ValueError, match="telemetry.*'poll'"):
        EmulatorConfig(telemetry='poll')
    escaped = dataclasses.replace(spec, driver={**spec.driver, 'api_mode': 2})
    with pytest.raises(ValueError, match='api_mode is 2'):
        RoachDriverConfig.from_spec(escaped)
    with pytest.raises(ValueError, match='telemetry_rate_hz'):
        EmulatorConfig(telemetry_rate_hz=500.0)         # more than 57600 baud can carry


def test_round_trip_and_disconnect_stops_the_robot(driver, emulator):
    assert driver.round_trip(timeout=WAIT_S) > 0     # how long: bench/drivers.py (p50, p99)
    driver.write([20.0, 20.0])
    assert wait_until(lambda: emulator.sensors().leg_speeds.min() > 15.0)
    driver.disconnect()
    driver.disconnect()                                  # idempotent
    assert wait_until(lambda: np.abs(emulator.sensors().leg_speeds).max() < 0.5)
    assert emulator.received[-1][1].args('L') == (0,)   # telemetry stopped


def test_twin_backed_emulator_moves_the_twin(tmp_path):
    from dexmpc_ros.robots.roach.twin import RoachTwin
    twin = RoachTwin(task='straight', seed=0)
    with RoachFirmwareEmulator(pty(tmp_path), body=TwinBody(twin),
                               config=EmulatorConfig(command_timeout_s=0.0)) as emu, \
            RoachDriver(RoachDriverConfig(port=emu.path)) as drv:
        drv.write([25.0, 25.0])
        assert wait_until(lambda: twin.odom().position[0] > 0.05)
        state = drv.read()
        assert state.position.min() > 1.0                   # cranks turned in the twin
        assert abs(state.extra['accel_z'] - 9.81) < 3.0     # upright
        assert np.isfinite(state.velocity).all()


def test_cli_serves_until_sigterm(tmp_path):
    port = str(tmp_path / 'ttyROACH')
    proc = subprocess.Popen([sys.executable, '-m', 'dexmpc_ros.robots.roach.firmware',
                             '--port', port], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_until(lambda: os.path.exists(port))
        with RoachDriver(RoachDriverConfig(port=port)) as drv:
            assert drv.read().names == ('left_legs', 'right_legs')
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not os.path.exists(port)


class RawHost:
    """The host side spoken by hand: pyserial + XBee frames, no driver."""

    def __init__(self, port: str):
        import serial
        self.serial = serial.Serial(port, 57600, timeout=0.02)
        self.parser = FrameParser()
        self.frame_id = 0

    def send(self, payload: rp.Payload, dest: int = 1) -> int:
        self.frame_id += 1
        self.serial.write(TxRequest16(dest, payload.encode(), frame_id=self.frame_id).encode())
        return self.frame_id

    def collect_until(self, done, timeout: float = WAIT_S) -> list:
        """Frames from now on until ``done(frames)`` holds (AssertionError after timeout)."""
        frames, end = [], time.monotonic() + timeout
        while not done(frames):
            assert time.monotonic() < end, f'timed out; frames so far: {frames}'
            frames += self.parser.feed(self.serial.read(256))
        return frames

    def replies(self, count: int) -> list[rp.Payload]:
        """The next ``count`` replies of the robot (frames addressed to the host)."""
        frames = self.collect_until(lambda f: len(robot_frames(f)) >= count)
        return [rp.Payload.decode(RxPacket16.from_frame(f).rf_data) for f in robot_frames(frames)]

    def replies_then_echo(self) -> list[rp.Payload]:
        """
        Every reply until the answer to an ECHO sent now: whatever the robot was going to
        send before it has been sent (the emulator answers frames in order, then streams).
        """
        self.send(rp.Payload(rp.Cmd.ECHO, b'end'))
        frames = self.collect_until(lambda f: any(
            rp.Payload.decode(RxPacket16.from_frame(x).rf_data).type == rp.Cmd.ECHO
            for x in robot_frames(f)))
        return [rp.Payload.decode(RxPacket16.from_frame(f).rf_data) for f in robot_frames(frames)]


def robot_frames(frames: list) -> list:
    return [f for f in frames if f.api_id == API_RX16]


def tx_status(frames: list, frame_id: int) -> TxStatus | None:
    """The basestation's TX status for ``frame_id`` among ``frames`` (None: not yet)."""
    found = [TxStatus.from_frame(f) for f in frames if f.api_id == API_TX_STATUS]
    return next((s for s in found if s.frame_id == frame_id), None)


def test_emulator_speaks_the_application_protocol(emulator):
    host = RawHost(emulator.path)
    try:
        fid = host.send(rp.simple(rp.Cmd.WHO_AM_I))
        frames = host.collect_until(lambda f: tx_status(f, fid) and robot_frames(f))
        assert tx_status(frames, fid).status == 0
        replies = [rp.Payload.decode(RxPacket16.from_frame(f).rf_data)
                   for f in robot_frames(frames)]
        assert replies[0].type == rp.Cmd.WHO_AM_I and b'VelociRoACH' in replies[0].data
        host.send(rp.simple(rp.Cmd.WHO_AM_I), dest=2)             # not our robot: no ACK
        frames = host.collect_until(lambda f: tx_status(f, fid + 1))
        assert tx_status(frames, fid + 1).status == 1
        host.send(rp.set_pid_gains((1, 2, 3, 4, 5), (6, 7, 8, 9, 10)))
        host.send(rp.Payload(rp.Cmd.SET_VEL_GET_IMU, b'\x01'))    # short args: ignored
        host.send(rp.start_telemetry(5))
        replies = host.replies(6)
        assert replies[0].args('10h') == tuple(range(1, 11))
        replies += host.replies_then_echo()                       # a 6th record: too many
        assert sum(r.type == rp.Cmd.GET_IMU_DATA for r in replies) == 5
        host.send(rp.set_thrust_open_loop(3800, 3800, run_time_ms=100))
        # full duty (60 rad/s) for 100 ms of the emulator's clock, then idle: the cranks
        # turn 6 rad until they stop (>= 5.1 rad whatever the emulator's time steps)
        assert wait_until(lambda: rp.Cmd.SET_THRUST_OPEN_LOOP in emulator.received_types())
        assert wait_until(lambda: emulator.mode == 'idle')          # run time over
        assert wait_until(lambda: np.abs(emulator.sensors().leg_speeds).max() < 0.5)
        host.send(rp.simple(rp.Cmd.ZERO_POS))
        host.send(rp.simple(rp.Cmd.GET_AMS_POS))
        old, now = host.replies(2)[-2:]
        assert old.type == rp.Cmd.ZERO_POS
        assert min(old.args('2l')) > 5.1 * rp.COUNTS_PER_REV / (2 * math.pi), old.args('2l')
        assert now.type == rp.Cmd.GET_AMS_POS and max(map(abs, now.args('2l'))) < 2000
    finally:
        host.serial.close()


def test_emulator_stops_the_legs_when_commands_stop(tmp_path):
    with RoachFirmwareEmulator(pty(tmp_path), config=EmulatorConfig(command_timeout_s=0.2)) \
            as emu, \
            RoachDriver(RoachDriverConfig(port=emu.path, link_timeout_s=WAIT_S)) as drv:
        drv.write([30.0, 30.0])
        assert wait_until(lambda: rp.Cmd.SET_VEL_GET_IMU in emu.received_types())
        # 30 rad/s for 0.2 s of the emulator's clock, then stopped: the cranks turn 6 rad
        # until they stop (>= 4.4 rad whatever the emulator's time steps)
        assert wait_until(lambda: emu.mode == 'idle')
        assert wait_until(lambda: emu.sensors().leg_speeds.max() < 0.5)
        assert emu.sensors().leg_angles.min() > 4.4
        records = drv.stats.records
        assert wait_until(lambda: drv.stats.records > records + 5)   # telemetry kept flowing


# Reply-mode firmware (hardware.md §4.3/§4.6): one record per command, nothing streamed --------
def reply_driver(emu: RoachFirmwareEmulator) -> RoachDriver:
    """The driver as the robot YAML configures it for reply-mode firmware."""
    spec = load_robot_spec('roach')
    spec = dataclasses.replace(spec, driver={**spec.driver, 'telemetry': 'reply'})
    return RoachDriver(RoachDriverConfig.from_spec(spec, port=emu.path, link_timeout_s=T))


@pytest.fixture
def reply_emulator(tmp_path):
    config = EmulatorConfig(command_timeout_s=0.0, telemetry='reply')
    with RoachFirmwareEmulator(pty(tmp_path), config=config) as emu:
        yield emu


def zero_thrust_polls(emu: RoachFirmwareEmulator, since: int = 0) -> int:
    return sum(p.type == rp.Cmd.SET_THRUST_GET_IMU and p.args('hh') == (0, 0)
               for _, p in list(emu.received)[since:])


def test_reply_firmware_pause_in_commands_then_commands_again(reply_emulator):
    """A 1 s pause in commands used to become a permanent link loss on such firmware."""
    emu = reply_emulator
    with reply_driver(emu) as drv:
        assert wait_until(lambda: drv.write([25.0, 25.0])[0] > 24.0 and
                          emu.sensors().leg_speeds.min() > 20.0)
        records, n = drv.stats.records, len(emu.received)
        pause_end = time.monotonic() + 1.0               # the controller pauses for 1 s
        while time.monotonic() < pause_end:
            assert drv.link_ok and drv.read().faults == ()
            time.sleep(0.02)
        # the driver polled (zero thrust + a record): state fresh, legs stopped, link watched
        assert zero_thrust_polls(emu, n) >= 2 and drv.stats.records >= records + 2
        assert drv.read().extra['telemetry_age_s'] < 2 * T
        assert np.abs(emu.sensors().leg_speeds).max() < 0.5
        stamp = drv.read().stamp
        assert wait_until(lambda: drv.write([20.0, 20.0])[0] > 19.0 and
                          abs(drv.read().velocity - 20.0).max() < 1.0)
        assert drv.read().stamp > stamp and drv.link_ok and drv.stats.link_losses == 0
    assert rp.Cmd.START_TELEMETRY not in emu.received_types()


def test_reply_firmware_radio_loss_then_back_recovers_by_itself(reply_emulator):
    emu = reply_emulator
    with reply_driver(emu) as drv:
        assert wait_until(lambda: drv.write([30.0, 30.0])[0] > 29.0 and
                          emu.sensors().leg_speeds.min() > 25.0)
        emu.lose_link(hears=True)                        # robot -> host packets lost
        assert wait_until(lambda: not drv.link_ok, 3 * T + 1.0)
        state = drv.read()
        assert 'link lost' in state.faults[0]
        n = len(emu.received)
        assert wait_until(lambda: np.abs(emu.sensors().leg_speeds).max() < 0.5)
        np.testing.assert_array_equal(drv.write([30.0, 30.0]), [0.0, 0.0])
        time.sleep(3 * T)                                # the robot stays out of reach
        emu.restore_link()                               # no write from here on
        assert wait_until(lambda: drv.link_ok, 3 * T + 1.0)
        assert zero_thrust_polls(emu, n) >= 2            # how it asked: zero thrust + record
        assert drv.read().faults == () and drv.stats.link_losses == 1
        assert wait_until(lambda: drv.write([20.0, 20.0])[0] > 19.0 and
                          emu.sensors().leg_speeds.min() > 15.0)
    assert state.self_clearing          # the node holds, then resumes without ~/recover


def test_emulator_reply_mode_answers_each_command_and_never_streams(reply_emulator):
    host = RawHost(reply_emulator.path)
    try:
        host.send(rp.start_telemetry())
        # flash only, nothing on the radio: the ECHO sent next is the first reply
        assert [r.type for r in host.replies_then_echo()] == [rp.Cmd.ECHO]
        for _ in range(3):
            host.send(rp.set_vel_get_imu(100, 100))
        host.send(rp.set_thrust_get_imu(0, 0))
        host.send(rp.set_thrust_open_loop(0, 0))         # no reply
        replies = host.replies_then_echo()
        assert [r.type for r in replies] == [rp.Cmd.GET_IMU_DATA] * 4 + [rp.Cmd.ECHO]
    finally:
        host.serial.close()
