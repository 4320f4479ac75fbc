"""
XBee 802.15.4 API frames (API mode 1, no escaping) and a streaming frame parser.

Wire format (shared/reference/hardware.md §4.2; Digi 802.15.4 API)::

    7E | LEN_H LEN_L | frame data (LEN bytes: API id, then its fields) | CHK
    CHK = 0xFF - (sum(frame data) & 0xFF)

    TX16 request (host -> XBee):  01 | frame_id | dest_H dest_L | options | RF data (<= 100 B)
    RX16 packet  (XBee -> host):  81 | src_H src_L | RSSI | options | RF data
    TX status    (XBee -> host):  89 | frame_id | status (0 ok, 1 no ACK, 2 CCA fail, 3 purged)

Addresses are 16-bit big-endian; RSSI is the received signal strength as -dBm. A frame_id of
0 asks the XBee for no TX status. API mode 2 (escaped 7E 7D 11 13) is not supported.

:class:`FrameParser` turns an arbitrary byte stream into checked frames: it resynchronizes on
the next start byte after garbage, a truncated frame or a bad checksum (re-scanning from the
byte after the rejected start, so a real frame hidden inside a broken one is still found),
refuses lengths above its maximum and never returns a frame whose checksum is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

START = 0x7E
API_TX16 = 0x01
API_RX16 = 0x81
API_TX_STATUS = 0x89

#: largest RF payload of one 802.15.4 XBee packet [bytes]
MAX_RF_DATA = 100
#: header bytes of TX16/RX16 frame data before the RF data (API id + 4 fields)
_HEADER16 = 5
#: default largest frame data length the parser accepts [bytes]
MAX_FRAME_DATA = _HEADER16 + MAX_RF_DATA

TX_STATUS_TEXT = {0: 'ok', 1: 'no ACK', 2: 'CCA failure', 3: 'purged'}


class FrameError(ValueError):
    """A frame that cannot be built or decoded (bad field value, wrong API id, too short)."""


def checksum(frame_data: bytes) -> int:
    """Checksum byte of ``frame_data`` (API id included): ``0xFF - (sum & 0xFF)``."""
    return 0xFF - (sum(frame_data) & 0xFF)


def encode_frame(frame_data: bytes) -> bytes:
    """
    Wrap frame data (API id first) in start byte, big-endian length and checksum.

    Raises:
        FrameError: empty frame data or longer than 65535 bytes.
    """
    if not 0 < len(frame_data) <= 0xFFFF:
        raise FrameError(f'frame data must be 1..65535 bytes, got {len(frame_data)}')
    return bytes((START, len(frame_data) >> 8, len(frame_data) & 0xFF)) + bytes(frame_data) \
        + bytes((checksum(frame_data),))


def _check_byte(name: str, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise FrameError(f'{name} must be 0..255, got {value}')


def _check_address(value: int) -> None:
    if not 0 <= value <= 0xFFFF:
        raise FrameError(f'16-bit address must be 0..0xFFFF, got {value:#x}')


def _check_rf(rf_data: bytes) -> None:
    if len(rf_data) > MAX_RF_DATA:
        raise FrameError(f'RF data is {len(rf_data)} bytes, the XBee 802.15.4 maximum is '
                         f'{MAX_RF_DATA}')


@dataclass(frozen=True)
class Frame:
    """One checked API frame: ``api_id`` and the bytes that follow it (checksum stripped)."""

    api_id: int
    body: bytes

    @property
    def frame_data(self) -> bytes:
        """API id + body, the bytes the checksum covers."""
        return bytes((self.api_id,)) + self.body

    def encode(self) -> bytes:
        """The frame on the wire."""
        return encode_frame(self.frame_data)


@dataclass(frozen=True)
class TxRequest16:
    """TX request to a 16-bit address (API id 0x01), host -> XBee."""

    dest: int
    rf_data: bytes
    frame_id: int = 0
    options: int = 0

    def __post_init__(self) -> None:
        _check_address(self.dest)
        _check_byte('frame_id', self.frame_id)
        _check_byte('options', self.options)
        _check_rf(self.rf_data)

    def encode(self) -> bytes:
        """The frame on the wire."""
        return encode_frame(bytes((API_TX16, self.frame_id, self.dest >> 8, self.dest & 0xFF,
                                   self.options)) + bytes(self.rf_data))

    @classmethod
    def from_frame(cls, frame: Frame) -> TxRequest16:
        """Decode a parsed frame; raises FrameError if it is not a TX16 request."""
        _expect(frame, API_TX16, 4)
        b = frame.body
        return cls(dest=(b[1] << 8) | b[2], rf_data=b[4:], frame_id=b[0], options=b[3])


@dataclass(frozen=True)
class RxPacket16:
    """RX packet from a 16-bit address (API id 0x81), XBee -> host; ``rssi`` is -dBm."""

    source: int
    rf_data: bytes
    rssi: int = 0
    options: int = 0

    def __post_init__(self) -> None:
        _check_address(self.source)
        _check_byte('rssi', self.rssi)
        _check_byte('options', self.options)
        _check_rf(self.rf_data)

    def encode(self) -> bytes:
        """The frame on the wire."""
        return encode_frame(bytes((API_RX16, self.source >> 8, self.source & 0xFF, self.rssi,
                                   self.options)) + bytes(self.rf_data))

    @classmethod
    def from_frame(cls, frame: Frame) -> RxPacket16:
        """Decode a parsed frame; raises FrameError if it is not an RX16 packet."""
        _expect(frame, API_RX16, 4)
        b = frame.body
        return cls(source=(b[0] << 8) | b[1], rf_data=b[4:], rssi=b[2], options=b[3])


@dataclass(frozen=True)
class TxStatus:
    """TX status (API id 0x89), XBee -> host: 0 ok, 1 no ACK, 2 CCA failure, 3 purged."""

    frame_id: int
    status: int

    def __post_init__(self) -> None:
        _check_byte('frame_id', self.frame_id)
        _check_byte('status', self.status)

    def encode(self) -> bytes:
        """The frame on the wire."""
        return encode_frame(bytes((API_TX_STATUS, self.frame_id, self.status)))

    @classmethod
    def from_frame(cls, frame: Frame) -> TxStatus:
        """Decode a parsed frame; raises FrameError if it is not a TX status."""
        _expect(frame, API_TX_STATUS, 2)
        return cls(frame_id=frame.body[0], status=frame.body[1])


def _expect(frame: Frame, api_id: int, min_body: int) -> None:
    if frame.api_id != api_id:
        raise FrameError(f'expected API id {api_id:#04x}, got {frame.api_id:#04x}')
    if len(frame.body) < min_body:
        raise FrameError(f'API id {api_id:#04x} frame needs >= {min_body} bytes after the id, '
                         f'got {len(frame.body)}')


class FrameParser:
    """
    Byte stream -> checked frames, tolerant of garbage, truncation and corruption.

    Args:
        max_length: largest frame data length (the LEN field) accepted [bytes]; a start
            byte announcing more (or 0) is treated as garbage. The buffer never holds more
            than ``max_length + 4`` bytes.

    Counters (cumulative): ``frames`` accepted, ``checksum_errors`` (candidate frames with a
    wrong checksum), ``length_errors`` (LEN of 0 or above ``max_length``),
    ``discarded_bytes`` (bytes skipped outside any accepted frame, including the bytes of
    rejected candidates as they are re-scanned).
    """

    def __init__(self, max_length: int = MAX_FRAME_DATA):
        if not 1 <= max_length <= 0xFFFF:
            raise ValueError(f'max_length must be 1..65535, got {max_length}')
        self.max_length = max_length
        self._buf = bytearray()
        self.frames = 0
        self.checksum_errors = 0
        self.length_errors = 0
        self.discarded_bytes = 0

    @property
    def rejects(self) -> int:
        """Candidate frames rejected (bad checksum or length)."""
        return self.checksum_errors + self.length_errors

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for the rest of a frame."""
        return len(self._buf)

    def reset(self) -> None:
        """Drop a partial frame (e.g. after reopening the port); counters are kept."""
        self._buf.clear()

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return the complete frames they finish, in order."""
        buf = self._buf
        buf += data
        out: list[Frame] = []
        i, n = 0, len(buf)
        while True:
            start = buf.find(START, i)
            if start < 0:
                self.discarded_bytes += n - i
                i = n
                break
            self.discarded_bytes += start - i
            i = start
            if n - start < 3:
                break                                   # wait for the length bytes
            length = (buf[start + 1] << 8) | buf[start + 2]
            if length == 0 or length > self.max_length:
                self.length_errors += 1
                self.discarded_bytes += 1
                i = start + 1
                continue
            end = start + 4 + length
            if n < end:
                break                                   # wait for the rest of the frame
            data_view = buf[start + 3:end - 1]
            if (sum(data_view) + buf[end - 1]) & 0xFF != 0xFF:
                self.checksum_errors += 1
                self.discarded_bytes += 1
                i = start + 1                           # a real frame may start inside
                continue
            out.append(Frame(data_view[0], bytes(data_view[1:])))
            self.frames += 1
            i = end
        del buf[:i]
        return out
