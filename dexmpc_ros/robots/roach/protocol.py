"""
VelociRoACH application protocol: the RF payload inside XBee frames, and the telemetry record.

Payload (shared/reference/hardware.md §4.3; imageproc-lib payload.c)::

    [status u8][type u8][args ...]        args little-endian (dsPIC33 and x86 alike)

The robot replies with the same two-byte header. Command types are :class:`Cmd`
(dhaldane/roach command.py, cmd.h; sl_nn_dynamics_roach command.py).

Telemetry record (§4.4): 46 bytes, ``'<LL4l11h'`` = sample index, board timestamp, leg-crank
positions, commanded positions, PWM duties, gyro xyz, accelerometer xyz, back-EMF, battery.
:class:`TelemetryRecord` keeps the raw integers (what the wire carries, exact round trip) and
converts to SI units where the sources give a scale:

- leg-crank angle: 65536 counts per revolution -> rad;
- gyro: MPU-6000 at +-2000 deg/s, the firmware's scale 0.000133231241 x 8 rad/s per LSB;
- accelerometer: +-8 g, 4096 LSB/g -> 0.0023942 m/s^2 per LSB.

Assumptions where the sources are silent (stated, configurable by callers):

- timestamp: unit not verified in the sources; :data:`TIMESTAMP_TICK_S` = 1 us is ours (the
  emulator writes microseconds); a driver for a real board may need another tick.
- leg velocity setpoints of SET_VEL_GET_IMU (0x96) are int16 **encoder counts per ms**
  (hardware.md §4.5: 2..9 rev/s <-> 131..590); negative values are passed through (the twin
  accepts them; whether a real firmware runs the legs backwards is unknown).
- back-EMF and battery stay in raw ADC counts (no scale in the sources).
- START_TELEMETRY (0x8F, uint32 n): in the dhaldane firmware it logs n samples to flash at
  1 kHz and sends nothing over the radio. Two telemetry modes (:data:`TELEMETRY_MODES`):
  ``stream``, our link's extension, where the robot also streams the records as
  GET_IMU_DATA (0x20) replies, n records then stop (0 stops, :data:`TELEMETRY_FOREVER`
  never stops); ``reply``, the firmware of hardware.md §4.3/§4.6, where the only records
  are the one 0x20 reply to each SET_VEL_GET_IMU / SET_THRUST_GET_IMU.
"""

from __future__ import annotations

import enum
import math
import struct
from dataclasses import astuple, dataclass

import numpy as np

COUNTS_PER_REV = 65536
#: PWM duty full scale of the PID output (MAXTHROT)
MAX_THROTTLE = 3800
GYRO_RAD_S_PER_LSB = 0.000133231241 * 8        # mpu6000.c GYRO_SCALE_BASE x 8 (+-2000 deg/s)
ACCEL_M_S2_PER_LSB = 5.98550415e-4 * 4         # mpu6000.c XL_SCALE_BASE x 4 (+-8 g)
TIMESTAMP_TICK_S = 1e-6                        # assumption, see module docstring
TELEMETRY_FOREVER = 0xFFFFFFFF
#: telemetry modes of a firmware: streamed after START_TELEMETRY, or one record per command
TELEMETRY_MODES = ('stream', 'reply')
INT16_MAX = 0x7FFF


class Cmd(enum.IntEnum):
    """Command / reply types (payload byte 1)."""

    ECHO = 0x1F
    GET_IMU_DATA = 0x20              # reply type of a telemetry record
    SET_THRUST_OPEN_LOOP = 0x80      # int16 left, int16 right duty, uint16 run time [ms]
    PID_START_MOTORS = 0x81
    SET_PID_GAINS = 0x82             # 10 x int16: Kp Ki Kd Kaw Kff left, same right
    GET_AMS_POS = 0x84               # reply 2 x int32 positions
    SOFTWARE_RESET = 0x88            # int16 1
    ERASE_SECTORS = 0x8A
    FLASH_READBACK = 0x8B
    SET_VEL_PROFILE = 0x8D
    WHO_AM_I = 0x8E                  # reply: version string
    START_TELEMETRY = 0x8F           # uint32 number of samples
    ZERO_POS = 0x90                  # reply 2 x int32 old positions
    START_TIMED_RUN = 0x91
    PID_STOP_MOTORS = 0x92
    SET_PHASE = 0x93
    SET_MOTOR_MODE = 0x94
    SET_THRUST_GET_IMU = 0x95        # int16 left, right duty; reply 0x20 record
    SET_VEL_GET_IMU = 0x96           # int16 left, right velocity [counts/ms]; reply 0x20 record
    SET_PID_OUTPUT_CHANNEL = 0x97


class ProtocolError(ValueError):
    """A payload or record that does not decode (too short, wrong size or type)."""


@dataclass(frozen=True)
class Payload:
    """One application message: ``type`` (a :class:`Cmd` value), ``data`` bytes, ``status``."""

    type: int
    data: bytes = b''
    status: int = 0

    def __post_init__(self) -> None:
        for name in ('type', 'status'):
            value = getattr(self, name)
            if not 0 <= value <= 0xFF:
                raise ProtocolError(f'payload {name} must be 0..255, got {value}')

    def encode(self) -> bytes:
        """``[status][type][data]``."""
        return bytes((self.status, self.type)) + bytes(self.data)

    @classmethod
    def decode(cls, raw: bytes) -> Payload:
        """Split RF data into header and args; raises ProtocolError if shorter than 2 bytes."""
        if len(raw) < 2:
            raise ProtocolError(f'payload needs >= 2 bytes (status, type), got {len(raw)}')
        return cls(type=raw[1], data=bytes(raw[2:]), status=raw[0])

    def args(self, fmt: str) -> tuple:
        """Unpack the args with a little-endian struct format (no prefix), e.g. ``'hh'``."""
        try:
            return struct.unpack_from('<' + fmt, self.data)
        except struct.error as exc:
            raise ProtocolError(f'payload type {self.type:#04x}: args {self.data.hex()} do '
                                f'not hold {fmt!r}') from exc


def saturate_int16(value: float) -> int:
    """Round to the nearest integer and clamp to int16; NaN raises ValueError."""
    if math.isnan(value):
        raise ValueError('cannot send NaN')
    return int(max(-INT16_MAX - 1, min(INT16_MAX, round(value))))


# Command builders ----------------------------------------------------------------------------
def set_thrust_open_loop(left: int, right: int, run_time_ms: int = 0) -> Payload:
    """Open-loop PWM duty per side (+-:data:`MAX_THROTTLE`) for ``run_time_ms`` (0: hold)."""
    return Payload(Cmd.SET_THRUST_OPEN_LOOP, struct.pack(
        '<hhH', saturate_int16(left), saturate_int16(right), int(run_time_ms) & 0xFFFF))


def set_vel_get_imu(left: int, right: int) -> Payload:
    """Leg velocity setpoints [counts/ms] per side; the robot answers one telemetry record."""
    return Payload(Cmd.SET_VEL_GET_IMU,
                   struct.pack('<hh', saturate_int16(left), saturate_int16(right)))


def set_thrust_get_imu(left: int, right: int) -> Payload:
    """Open-loop duty per side; the robot answers one telemetry record."""
    return Payload(Cmd.SET_THRUST_GET_IMU,
                   struct.pack('<hh', saturate_int16(left), saturate_int16(right)))


def set_pid_gains(left: tuple[int, ...], right: tuple[int, ...]) -> Payload:
    """Kp, Ki, Kd, Kaw, Kff per side (5 int16 each); the robot echoes the 10 values."""
    if len(left) != 5 or len(right) != 5:
        raise ValueError(f'need 5 gains per side, got {len(left)} and {len(right)}')
    return Payload(Cmd.SET_PID_GAINS,
                   struct.pack('<10h', *(saturate_int16(g) for g in (*left, *right))))


def start_telemetry(samples: int = TELEMETRY_FOREVER) -> Payload:
    """Stream ``samples`` telemetry records (0 stops, TELEMETRY_FOREVER never stops)."""
    if not 0 <= samples <= 0xFFFFFFFF:
        raise ValueError(f'samples must be 0..2**32-1, got {samples}')
    return Payload(Cmd.START_TELEMETRY, struct.pack('<L', samples))


def stop_telemetry() -> Payload:
    """Stop streaming telemetry (START_TELEMETRY with 0 samples)."""
    return start_telemetry(0)


def simple(cmd: Cmd, data: bytes = b'') -> Payload:
    """A command with fixed or no args: ECHO, WHO_AM_I, PID_START/STOP_MOTORS, ZERO_POS..."""
    return Payload(int(cmd), bytes(data))


# Unit conversions ----------------------------------------------------------------------------
def counts_to_rad(counts: float | np.ndarray) -> float | np.ndarray:
    """Leg-crank encoder counts -> rad."""
    return counts * (2.0 * math.pi / COUNTS_PER_REV)


def rad_s_to_counts_per_ms(omega: float | np.ndarray) -> float | np.ndarray:
    """Leg-crank speed rad/s -> counts/ms (the 0x96 setpoint unit)."""
    return omega * (COUNTS_PER_REV / (2.0 * math.pi * 1000.0))


def counts_per_ms_to_rad_s(rate: float | np.ndarray) -> float | np.ndarray:
    """Counts/ms -> rad/s."""
    return rate * (2.0 * math.pi * 1000.0 / COUNTS_PER_REV)


# Telemetry record ----------------------------------------------------------------------------
RECORD_STRUCT = struct.Struct('<LL4l11h')
RECORD_SIZE = RECORD_STRUCT.size                 # 46
assert RECORD_SIZE == 46


@dataclass(frozen=True)
class TelemetryRecord:
    """
    One 46-byte telemetry sample, raw integers as on the wire (field order = byte order).

    Attributes:
        sample_index: u32 running sample number.
        timestamp: u32 board clock ticks (:data:`TIMESTAMP_TICK_S`, assumed).
        pos_left, pos_right: i32 leg-crank angles [counts, 65536/rev], wrap at 2**31.
        compos_left, compos_right: i32 commanded angles [counts].
        duty_left, duty_right: i16 PWM duty of the PID output (+-3800).
        gyro_x, gyro_y, gyro_z: i16 body angular rate [LSB].
        accel_x, accel_y, accel_z: i16 body specific force [LSB].
        bemf_left, bemf_right: i16 back-EMF [ADC counts].
        vbatt: i16 battery voltage [ADC counts].
    """

    sample_index: int
    timestamp: int
    pos_left: int
    pos_right: int
    compos_left: int
    compos_right: int
    duty_left: int
    duty_right: int
    gyro_x: int
    gyro_y: int
    gyro_z: int
    accel_x: int
    accel_y: int
    accel_z: int
    bemf_left: int
    bemf_right: int
    vbatt: int

    def pack(self) -> bytes:
        """The 46 bytes; raises ProtocolError if a field does not fit its type."""
        try:
            return RECORD_STRUCT.pack(*astuple(self))
        except struct.error as exc:
            raise ProtocolError(f'telemetry field out of range: {exc} in {self}') from exc

    @classmethod
    def unpack(cls, raw: bytes) -> TelemetryRecord:
        """Decode exactly 46 bytes; raises ProtocolError for any other size."""
        if len(raw) != RECORD_SIZE:
            raise ProtocolError(f'telemetry record must be {RECORD_SIZE} bytes, got {len(raw)}')
        return cls(*RECORD_STRUCT.unpack(raw))

    def payload(self) -> Payload:
        """The record as the robot sends it: a GET_IMU_DATA (0x20) payload."""
        return Payload(Cmd.GET_IMU_DATA, self.pack())

    # SI views ----------------------------------------------------------------------------------
    @property
    def leg_angles_rad(self) -> np.ndarray:
        """(left, right) crank angles [rad], wrapped as the int32 counts are."""
        return np.array([counts_to_rad(self.pos_left), counts_to_rad(self.pos_right)])

    @property
    def gyro_rad_s(self) -> np.ndarray:
        """(3,) body angular rate [rad/s]."""
        return np.array([self.gyro_x, self.gyro_y, self.gyro_z]) * GYRO_RAD_S_PER_LSB

    @property
    def accel_m_s2(self) -> np.ndarray:
        """(3,) body specific force [m/s^2] (+9.81 on z at rest, upright)."""
        return np.array([self.accel_x, self.accel_y, self.accel_z]) * ACCEL_M_S2_PER_LSB

    @property
    def duty_fraction(self) -> np.ndarray:
        """(left, right) PWM duty as a fraction of :data:`MAX_THROTTLE`."""
        return np.array([self.duty_left, self.duty_right]) / MAX_THROTTLE


def wrap_int32(value: int) -> int:
    """Two's-complement wrap to int32 (as the board's encoder accumulators overflow)."""
    return ((int(value) + 2**31) % 2**32) - 2**31


def record_from_si(sample_index: int, time_s: float, leg_counts: tuple[int, int],
                   command_counts: tuple[int, int], duty: tuple[float, float],
                   gyro_rad_s: np.ndarray, accel_m_s2: np.ndarray,
                   bemf: tuple[float, float], vbatt: int) -> TelemetryRecord:
    """
    Build a record from SI values, saturating each field as the board's sensors do.

    Args:
        sample_index: sample number (wrapped to u32).
        time_s: board time [s] (wrapped to u32 ticks of :data:`TIMESTAMP_TICK_S`).
        leg_counts, command_counts: crank angles [counts], wrapped to int32.
        duty: PWM duty per side [-3800..3800].
        gyro_rad_s: (3,) body rate [rad/s]; accel_m_s2: (3,) specific force [m/s^2].
        bemf: back-EMF per side [ADC counts]; vbatt: battery [ADC counts].
    """
    gyro = [saturate_int16(v / GYRO_RAD_S_PER_LSB) for v in gyro_rad_s]
    accel = [saturate_int16(v / ACCEL_M_S2_PER_LSB) for v in accel_m_s2]
    return TelemetryRecord(
        sample_index & 0xFFFFFFFF, int(time_s / TIMESTAMP_TICK_S) & 0xFFFFFFFF,
        wrap_int32(leg_counts[0]), wrap_int32(leg_counts[1]),
        wrap_int32(command_counts[0]), wrap_int32(command_counts[1]),
        saturate_int16(duty[0]), saturate_int16(duty[1]), *gyro, *accel,
        saturate_int16(bemf[0]), saturate_int16(bemf[1]), saturate_int16(vbatt))
