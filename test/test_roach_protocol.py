"""VelociRoACH payloads and the 46-byte telemetry record (robots/roach/protocol.py)."""

from __future__ import annotations

import dataclasses
import math
import struct

import numpy as np
import pytest

from dexmpc_ros.robots.roach import protocol as rp

EXTREMES = rp.TelemetryRecord(0xFFFFFFFF, 0, -2**31, 2**31 - 1, 123456, -654321, -3800, 3800,
                              -32768, 32767, 1, 2, 3, 4096, -512, 1023, 700)


def test_record_is_46_bytes_and_round_trips():
    raw = EXTREMES.pack()
    assert len(raw) == rp.RECORD_SIZE == 46
    assert rp.TelemetryRecord.unpack(raw) == EXTREMES
    assert rp.Payload.decode(EXTREMES.payload().encode()).data == raw


def test_field_offsets_follow_the_documented_layout():
    # hardware.md §4.4: offsets of posL, composL, dcL, gyroX, accelX, bemfL, Vbatt.
    fields = [f.name for f in dataclasses.fields(rp.TelemetryRecord)]
    rec = rp.TelemetryRecord(*range(1, len(fields) + 1))
    raw = rec.pack()
    assert struct.unpack_from('<L', raw, 4)[0] == rec.timestamp
    for name, offset, fmt in [('pos_left', 8, '<l'), ('compos_right', 20, '<l'),
                              ('duty_left', 24, '<h'), ('gyro_x', 28, '<h'),
                              ('gyro_z', 32, '<h'), ('accel_x', 34, '<h'),
                              ('bemf_left', 40, '<h'), ('vbatt', 44, '<h')]:
        assert struct.unpack_from(fmt, raw, offset)[0] == getattr(rec, name), name


def test_wrong_sizes_and_out_of_range_fields_are_rejected():
    with pytest.raises(rp.ProtocolError, match='46 bytes'):
        rp.TelemetryRecord.unpack(bytes(45))
    with pytest.raises(rp.ProtocolError, match='46 bytes'):
        rp.TelemetryRecord.unpack(bytes(47))
    with pytest.raises(rp.ProtocolError, match='out of range'):
        dataclasses.replace(EXTREMES, gyro_x=40000).pack()


def test_si_scales():
    rec = dataclasses.replace(EXTREMES, pos_left=rp.COUNTS_PER_REV, pos_right=-16384,
                              gyro_x=164, gyro_y=0, gyro_z=-164,
                              accel_x=0, accel_y=0, accel_z=4096)
    np.testing.assert_allclose(rec.leg_angles_rad, [2 * math.pi, -math.pi / 2])
    # 16.4 LSB per deg/s: 164 LSB = 10 deg/s (the firmware constant is 0.15 % off 16.4).
    np.testing.assert_allclose(rec.gyro_rad_s, [math.radians(10), 0, -math.radians(10)],
                               rtol=2e-3)
    np.testing.assert_allclose(rec.accel_m_s2, [0, 0, 9.80665], rtol=1e-5)


def test_record_from_si_saturates_and_wraps_like_the_board():
    rec = rp.record_from_si(2**32 + 5, 1.5, (2**31 + 10, -3), (0, 0), (5000.0, -10.0),
                            np.array([100.0, -0.5, 0.0]), np.array([0.0, 0.0, 9.80665]),
                            (12.4, -3.0), 700)
    assert rec.sample_index == 5 and rec.timestamp == 1_500_000
    assert rec.pos_left == -2**31 + 10 and rec.pos_right == -3
    assert rec.duty_left == 5000 and rec.duty_right == -10      # int16, not clamped to 3800
    assert rec.gyro_x == 32767                                   # 100 rad/s is off scale
    assert abs(rec.gyro_rad_s[1] + 0.5) < rp.GYRO_RAD_S_PER_LSB
    assert rec.accel_z == 4096 and rec.bemf_left == 12
    assert rp.TelemetryRecord.unpack(rec.pack()) == rec


def test_command_payloads_match_the_wire():
    assert rp.set_vel_get_imu(200, 200).encode() == bytes.fromhex('0096C800C800')
    assert rp.set_thrust_open_loop(-1200, 2500, 300).encode() == \
        bytes.fromhex('0080') + struct.pack('<hhH', -1200, 2500, 300)
    assert rp.set_thrust_get_imu(1, -1).encode() == bytes.fromhex('00950100FFFF')
    assert rp.start_telemetry(1000).encode() == bytes.fromhex('008FE8030000')
    assert rp.stop_telemetry().args('L') == (0,)
    gains = rp.set_pid_gains((1, 2, 3, 4, 5), (6, 7, 8, 9, 10))
    assert gains.type == rp.Cmd.SET_PID_GAINS and gains.args('10h') == tuple(range(1, 11))
    assert rp.simple(rp.Cmd.WHO_AM_I).encode() == b'\x00\x8e'


def test_int16_arguments_saturate_and_nan_is_refused():
    assert rp.set_vel_get_imu(10**6, -10**6).args('hh') == (32767, -32768)
    with pytest.raises(ValueError, match='NaN'):
        rp.set_vel_get_imu(float('nan'), 0)
    with pytest.raises(ValueError, match='5 gains'):
        rp.set_pid_gains((1, 2), (3, 4))


def test_payload_decode_and_args_errors():
    p = rp.Payload.decode(b'\x07\x96\x01\x00\x02\x00')
    assert (p.status, p.type, p.args('hh')) == (7, rp.Cmd.SET_VEL_GET_IMU, (1, 2))
    with pytest.raises(rp.ProtocolError, match='>= 2 bytes'):
        rp.Payload.decode(b'\x00')
    with pytest.raises(rp.ProtocolError, match="'hh'"):
        rp.Payload(0x96, b'\x01').args('hh')
    with pytest.raises(rp.ProtocolError, match='type'):
        rp.Payload(256)


def test_velocity_unit_conversion_matches_the_paper_range():
    # hardware.md §4.5: 2..9 rev/s <-> 2*2^16*0.001 .. 9*2^16*0.001 counts/ms.
    for rev_s in (2.0, 9.0):
        assert rp.rad_s_to_counts_per_ms(2 * math.pi * rev_s) == pytest.approx(
            rev_s * 2**16 * 0.001)
        assert rp.counts_per_ms_to_rad_s(rp.rad_s_to_counts_per_ms(rev_s)) == \
            pytest.approx(rev_s)


def test_wrap_int32():
    assert rp.wrap_int32(2**31) == -2**31
    assert rp.wrap_int32(-2**31 - 1) == 2**31 - 1
    assert rp.wrap_int32(5) == 5
