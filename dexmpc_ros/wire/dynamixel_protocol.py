"""
Dynamixel Protocol 2.0 as pure functions: CRC, framing, byte stuffing, a stream parser.

Wire format (ROBOTIS e-manual "Protocol 2.0"; shared/reference/hardware.md §2.1-2.3)::

    instruction: FF FF FD 00 | ID | LEN_L LEN_H | INST | P1..Pn | CRC_L CRC_H
    status:      FF FF FD 00 | ID | LEN_L LEN_H | 0x55 | ERR | P1..Pn | CRC_L CRC_H

LEN counts the (stuffed) bytes after it: INST, parameters and the 2 CRC bytes. Inside
INST..Pn every ``FF FF FD`` is sent as ``FF FF FD FD`` (byte stuffing), so a receiver can
find headers by searching for ``FF FF FD`` not followed by ``FD``. The CRC covers the
stuffed frame from the first FF through the last parameter and is sent low byte first.

The driver talks through ``dynamixel_sdk``; this module serves the bus emulator, the
tests and anyone decoding a capture. It also holds the X-series control-table addresses
the driver uses (§2.4) as data.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Iterable, Mapping

HEADER = b'\xff\xff\xfd'
HEADER_FULL = HEADER + b'\x00'      # + reserved byte
BROADCAST_ID = 0xFE
MAX_ID = 252
#: largest LEN we accept from the wire (the SDK's RXPACKET_MAX_LEN is 1024)
MAX_LENGTH = 1024


class Instruction(enum.IntEnum):
    """Instruction codes (hardware.md §2.3)."""

    PING = 0x01
    READ = 0x02
    WRITE = 0x03
    REG_WRITE = 0x04
    ACTION = 0x05
    FACTORY_RESET = 0x06
    REBOOT = 0x08
    CLEAR = 0x10
    STATUS = 0x55
    SYNC_READ = 0x82
    SYNC_WRITE = 0x83
    BULK_READ = 0x92
    BULK_WRITE = 0x93


# CRC-16 ------------------------------------------------------------------------------
def _crc_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes, crc: int = 0) -> int:
    """CRC-16 of Protocol 2.0: poly 0x8005, init 0, MSB first, no final XOR ("CRC-16/UMTS")."""
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) ^ table[((crc >> 8) ^ byte) & 0xFF]) & 0xFFFF
    return crc


# Byte stuffing -----------------------------------------------------------------------
def stuff(payload: bytes) -> bytes:
    """Insert an ``FD`` after every ``FF FF FD`` of INST..params (no header, no CRC)."""
    if HEADER not in payload:
        return bytes(payload)
    out = bytearray()
    run = 0             # how much of FF FF FD the tail of ``out`` matches
    for byte in payload:
        out.append(byte)
        if run < 2:
            run = run + 1 if byte == 0xFF else 0
        elif byte == 0xFD:
            out.append(0xFD)
            run = 0
        else:
            run = 2 if byte == 0xFF else 0
    return bytes(out)


def unstuff(payload: bytes) -> bytes:
    """Inverse of :func:`stuff`: drop the ``FD`` that follows each ``FF FF FD``."""
    return bytes(payload).replace(b'\xff\xff\xfd\xfd', HEADER)


# Packets -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Packet:
    """
    One decoded packet.

    Attributes:
        id: device ID (0-252, 0xFE broadcast).
        instruction: instruction code (0x55 for a status packet).
        params: parameters after unstuffing; for a status packet the first is ERR.
        raw: the frame as it was on the wire (stuffed, with CRC).
    """

    id: int
    instruction: int
    params: bytes
    raw: bytes = field(default=b'', compare=False, repr=False)

    @property
    def is_status(self) -> bool:
        """True for a status (reply) packet."""
        return self.instruction == Instruction.STATUS

    @property
    def error(self) -> int:
        """Status ERR byte (0 when healthy); 0 for instruction packets."""
        return self.params[0] if self.is_status and self.params else 0

    @property
    def data(self) -> bytes:
        """Status data after ERR (or the parameters of an instruction)."""
        return self.params[1:] if self.is_status else self.params


def encode(dxl_id: int, instruction: int, params: bytes = b'') -> bytes:
    """Frame one packet: header, ID, LEN, stuffed INST+params, CRC (low byte first)."""
    if not 0 <= dxl_id <= 0xFE or dxl_id == 0xFD:
        raise ValueError(f'Dynamixel ID must be 0-252 or 254 (broadcast), got {dxl_id}')
    body = stuff(bytes([instruction]) + bytes(params))
    length = len(body) + 2
    if length > 0xFFFF:
        raise ValueError(f'packet too long: {length} bytes of payload')
    frame = HEADER_FULL + bytes([dxl_id, length & 0xFF, length >> 8]) + body
    crc = crc16(frame)
    return frame + bytes([crc & 0xFF, crc >> 8])


def encode_status(dxl_id: int, error: int = 0, data: bytes = b'') -> bytes:
    """Frame a status packet from ``dxl_id`` with ERR byte ``error`` and ``data``."""
    return encode(dxl_id, Instruction.STATUS, bytes([error & 0xFF]) + bytes(data))


def ping(dxl_id: int) -> bytes:
    """PING instruction (reply: model number (2), firmware version (1))."""
    return encode(dxl_id, Instruction.PING)


def read(dxl_id: int, address: int, length: int) -> bytes:
    """READ ``length`` bytes at ``address``."""
    return encode(dxl_id, Instruction.READ, _u16(address) + _u16(length))


def write(dxl_id: int, address: int, data: bytes) -> bytes:
    """WRITE ``data`` at ``address``."""
    return encode(dxl_id, Instruction.WRITE, _u16(address) + bytes(data))


def reboot(dxl_id: int) -> bytes:
    """REBOOT (clears Hardware Error Status; torque is off afterwards)."""
    return encode(dxl_id, Instruction.REBOOT)


def sync_read(address: int, length: int, ids: Iterable[int]) -> bytes:
    """SYNC_READ to broadcast: one status packet per ID, in the order given."""
    return encode(BROADCAST_ID, Instruction.SYNC_READ,
                  _u16(address) + _u16(length) + bytes(ids))


def sync_write(address: int, length: int, data: Mapping[int, bytes]) -> bytes:
    """SYNC_WRITE to broadcast: ``data[id]`` (``length`` bytes each); no status packets."""
    params = bytearray(_u16(address) + _u16(length))
    for dxl_id, chunk in data.items():
        if len(chunk) != length:
            raise ValueError(f'sync write to ID {dxl_id}: {len(chunk)} bytes, expected {length}')
        params += bytes([dxl_id]) + bytes(chunk)
    return encode(BROADCAST_ID, Instruction.SYNC_WRITE, bytes(params))


def decode_read(params: bytes) -> tuple[int, int]:
    """READ parameters -> (address, length)."""
    _need(params, 4, 'READ')
    return _le(params[0:2]), _le(params[2:4])


def decode_write(params: bytes) -> tuple[int, bytes]:
    """WRITE parameters -> (address, data)."""
    _need(params, 3, 'WRITE')
    return _le(params[0:2]), bytes(params[2:])


def decode_sync_read(params: bytes) -> tuple[int, int, list[int]]:
    """SYNC_READ parameters -> (address, length, ids)."""
    _need(params, 5, 'SYNC_READ')
    return _le(params[0:2]), _le(params[2:4]), list(params[4:])


def decode_sync_write(params: bytes) -> tuple[int, int, dict[int, bytes]]:
    """SYNC_WRITE parameters -> (address, length, {id: data})."""
    _need(params, 4, 'SYNC_WRITE')
    address, length = _le(params[0:2]), _le(params[2:4])
    rest = params[4:]
    if length == 0 or len(rest) % (length + 1):
        raise LengthError(f'SYNC_WRITE: {len(rest)} data bytes is not a multiple of '
                          f'1 + {length}')
    return address, length, {rest[i]: bytes(rest[i + 1:i + 1 + length])
                             for i in range(0, len(rest), length + 1)}


# Errors and parsing ------------------------------------------------------------------
class PacketError(ValueError):
    """A frame that must not be acted on; ``dxl_id`` is its ID byte when known."""

    def __init__(self, message: str, dxl_id: int | None = None):
        super().__init__(message)
        self.dxl_id = dxl_id


class CrcError(PacketError):
    """The CRC of a complete frame does not match its contents."""


class HeaderError(PacketError):
    """The frame does not start with FF FF FD 00, or its ID is not a valid ID."""


class LengthError(PacketError):
    """LEN or the parameter count does not fit the frame or the instruction."""


def parse_frame(frame: bytes) -> Packet:
    """
    Decode exactly one complete frame.

    Raises:
        HeaderError, LengthError, CrcError: the frame is malformed (never returned).
    """
    frame = bytes(frame)
    if len(frame) < 10 or not frame.startswith(HEADER_FULL):
        raise HeaderError(f'not a Protocol 2.0 frame: {frame[:8].hex(" ")}')
    dxl_id = frame[4]
    if dxl_id > MAX_ID and dxl_id != BROADCAST_ID:
        raise HeaderError(f'invalid ID {dxl_id}', dxl_id)
    length = frame[5] | frame[6] << 8
    if length < 3 or length + 7 != len(frame):
        raise LengthError(f'LEN {length} does not match a {len(frame)}-byte frame', dxl_id)
    crc = frame[-2] | frame[-1] << 8
    if crc16(frame[:-2]) != crc:
        raise CrcError(f'CRC mismatch from ID {dxl_id}: got 0x{crc:04X}, computed '
                       f'0x{crc16(frame[:-2]):04X}', dxl_id)
    body = unstuff(frame[7:-2])
    return Packet(dxl_id, body[0], body[1:], frame)


class StreamParser:
    """
    Reassemble packets from a byte stream that may hold garbage and broken frames.

    ``feed()`` returns, in stream order, every complete frame found: a :class:`Packet`
    when it is valid, a :class:`PacketError` instance (returned, not raised) when it is not,
    so one bad frame never hides good ones behind it. After a bad frame the parser drops
    its first byte and searches again for a header, as the SDK does. A frame with a bad
    CRC is never returned as a Packet.

    Args:
        max_length: largest LEN accepted; a header announcing more is garbage.
    """

    def __init__(self, max_length: int = MAX_LENGTH):
        self.max_length = max_length
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held back, waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Packet | PacketError]:
        """Add bytes; return the packets (and errors) completed by them."""
        self._buf += data
        return self._drain()

    def flush(self) -> list[Packet | PacketError]:
        """
        Give up on an incomplete frame (e.g. after an inter-byte timeout).

        Returns what a rescan of the held bytes finds (frames hidden behind a bogus
        header, each dropped frame as a LengthError); the buffer is empty afterwards.
        """
        out: list[Packet | PacketError] = []
        while self._buf.startswith(HEADER):    # _drain left an incomplete frame at 0
            dxl_id = self._buf[4] if len(self._buf) > 4 else None
            out.append(LengthError(f'incomplete frame of {len(self._buf)} bytes dropped',
                                   dxl_id))
            del self._buf[:1]
            out += self._drain()
        self._buf.clear()
        return out

    def _find_header(self) -> int:
        buf = self._buf
        pos = buf.find(HEADER)
        while pos >= 0:
            if pos + 3 >= len(buf):
                return pos       # may be a header; need the next byte to tell
            if buf[pos + 3] != 0xFD:
                return pos
            pos = buf.find(HEADER, pos + 1)
        return -1

    def _frame_length(self, start: int) -> int | None:
        if len(self._buf) < start + 7:
            return None
        return (self._buf[start + 5] | self._buf[start + 6] << 8) + 7

    def _drain(self) -> list[Packet | PacketError]:
        out: list[Packet | PacketError] = []
        buf = self._buf
        while True:
            start = self._find_header()
            if start < 0:
                # keep a possible partial header (FF, FF FF) at the end
                keep = 2 if buf.endswith(b'\xff\xff') else 1 if buf.endswith(b'\xff') else 0
                del buf[:len(buf) - keep]
                return out
            del buf[:start]
            frame_len = self._frame_length(0)
            if frame_len is None:
                if len(buf) >= 4 and buf[3] != 0x00:
                    out.append(HeaderError(f'reserved byte 0x{buf[3]:02X} is not 0'))
                    del buf[:1]
                    continue
                return out
            if buf[3] != 0x00 or frame_len - 7 < 3 or frame_len - 7 > self.max_length:
                out.append(HeaderError(f'bad header {bytes(buf[:7]).hex(" ")}', buf[4]))
                del buf[:1]
                continue
            if len(buf) < frame_len:
                return out
            try:
                out.append(parse_frame(bytes(buf[:frame_len])))
            except PacketError as exc:
                out.append(exc)
                del buf[:1]
                continue
            del buf[:frame_len]


# Status and hardware errors ----------------------------------------------------------
STATUS_ALERT = 0x80
STATUS_ERRORS = {1: 'result fail', 2: 'instruction error', 3: 'CRC error',
                 4: 'data range error', 5: 'data length error', 6: 'data limit error',
                 7: 'access error'}


@dataclass(frozen=True)
class StatusError:
    """Decoded status ERR byte: ``alert`` = hardware error present; ``code`` bits 0-6."""

    alert: bool
    code: int

    @property
    def name(self) -> str:
        """Readable error number ('' when 0)."""
        return STATUS_ERRORS.get(self.code, f'error {self.code}') if self.code else ''


def decode_status_error(err: int) -> StatusError:
    """Split a status ERR byte into the Alert bit and the error number."""
    return StatusError(bool(err & STATUS_ALERT), err & 0x7F)


class HardwareError(enum.IntFlag):
    """Hardware Error Status (address 70) bits of the X-series."""

    INPUT_VOLTAGE = 0x01
    OVERHEATING = 0x04
    MOTOR_ENCODER = 0x08
    ELECTRICAL_SHOCK = 0x10
    OVERLOAD = 0x20


HARDWARE_ERROR_TEXT = {
    HardwareError.INPUT_VOLTAGE: 'input voltage out of range',
    HardwareError.OVERHEATING: 'overheating',
    HardwareError.MOTOR_ENCODER: 'motor encoder fault',
    HardwareError.ELECTRICAL_SHOCK: 'electrical shock (short circuit or power surge)',
    HardwareError.OVERLOAD: 'overload',
}


def decode_hardware_error(bits: int) -> list[str]:
    """Hardware Error Status byte -> readable faults (unknown bits named by number)."""
    out = [text for flag, text in HARDWARE_ERROR_TEXT.items() if bits & flag]
    unknown = bits & ~sum(HARDWARE_ERROR_TEXT) & 0xFF
    out += [f'unknown hardware error bit {b}' for b in range(8) if unknown & (1 << b)]
    return out


# X-series control table (XM430-W350 / XL430-W250) ------------------------------------
@dataclass(frozen=True)
class ControlItem:
    """One register: ``address``, ``size`` [bytes], writable or not, signed or not."""

    address: int
    size: int
    writable: bool = True
    signed: bool = False

    @property
    def eeprom(self) -> bool:
        """EEPROM items (addresses < 64) accept writes only while torque is off."""
        return self.address < 64


#: The registers this project uses (hardware.md §2.4), by snake_case name.
X_SERIES = {
    'model_number': ControlItem(0, 2, writable=False),
    'firmware_version': ControlItem(6, 1, writable=False),
    'id': ControlItem(7, 1),
    'baud_rate': ControlItem(8, 1),
    'return_delay_time': ControlItem(9, 1),
    'drive_mode': ControlItem(10, 1),
    'operating_mode': ControlItem(11, 1),
    'secondary_id': ControlItem(12, 1),
    'temperature_limit': ControlItem(31, 1),
    'velocity_limit': ControlItem(44, 4),
    'max_position_limit': ControlItem(48, 4),
    'min_position_limit': ControlItem(52, 4),
    'shutdown': ControlItem(63, 1),
    'torque_enable': ControlItem(64, 1),
    'led': ControlItem(65, 1),
    'status_return_level': ControlItem(68, 1),
    'hardware_error_status': ControlItem(70, 1, writable=False),
    'goal_current': ControlItem(102, 2, signed=True),
    'goal_velocity': ControlItem(104, 4, signed=True),
    'profile_acceleration': ControlItem(108, 4),
    'profile_velocity': ControlItem(112, 4),
    'goal_position': ControlItem(116, 4, signed=True),
    'moving': ControlItem(122, 1, writable=False),
    'present_current': ControlItem(126, 2, writable=False, signed=True),   # XL430: load
    'present_velocity': ControlItem(128, 4, writable=False, signed=True),
    'present_position': ControlItem(132, 4, writable=False, signed=True),
    'present_input_voltage': ControlItem(144, 2, writable=False),
    'present_temperature': ControlItem(146, 1, writable=False),
}
#: addresses 64.. that only the servo writes (Present ..., Moving, Realtime Tick, ...)
READ_ONLY_RANGES = ((0, 7), (69, 71), (120, 148))

XM430_W350 = 1020
XL430_W250 = 1060
MODEL_NAMES = {XM430_W350: 'XM430-W350', XL430_W250: 'XL430-W250'}

OPERATING_MODES = {'current': 0, 'velocity': 1, 'position': 3, 'extended_position': 4,
                   'current_based_position': 5, 'pwm': 16}
DRIVE_MODE_REVERSE = 0x01
DRIVE_MODE_TIME_PROFILE = 0x04

#: register units (hardware.md §2.4)
VELOCITY_UNIT_RAD_S = 0.229 * 2 * 3.141592653589793 / 60    # Present/Profile Velocity
CURRENT_UNIT_A = 0.00269                                     # Present Current (XM)
LOAD_UNIT = 0.001                                            # Present Load (XL): 0.1 %
VOLTAGE_UNIT_V = 0.1


def to_bytes(value: int, size: int) -> bytes:
    """Little-endian two's complement of ``value`` in ``size`` bytes."""
    return (int(value) & ((1 << 8 * size) - 1)).to_bytes(size, 'little')


def from_bytes(data: bytes, signed: bool = False) -> int:
    """Little-endian bytes -> int (two's complement when ``signed``)."""
    return int.from_bytes(bytes(data), 'little', signed=signed)


def to_signed(value: int, size: int) -> int:
    """Reinterpret an unsigned ``size``-byte value (as the SDK returns it) as signed."""
    bits = 8 * size
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _u16(value: int) -> bytes:
    return to_bytes(value, 2)


def _le(data: bytes) -> int:
    return int.from_bytes(bytes(data), 'little')


def _need(params: bytes, n: int, what: str) -> None:
    if len(params) < n:
        raise LengthError(f'{what}: {len(params)} parameter bytes, need at least {n}')
