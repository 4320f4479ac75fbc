"""XBee API mode 1 frames (wire/xbee.py): encoding, test vectors, parser recovery."""

from __future__ import annotations

import pytest

from dexmpc_ros.wire.xbee import (API_RX16, API_TX16, MAX_FRAME_DATA, Frame, FrameError,
                                  FrameParser, RxPacket16, TxRequest16, TxStatus, checksum,
                                  encode_frame)

# shared/reference/hardware.md §4.6: host sets leg velocities 200/200 on robot 0x0001.
HW_MD_VELOCITY_FRAME = bytes.fromhex('7E000B0101000100' '0096C800C800' 'D6')
# Digi 802.15.4 API examples: TX16 "Hello" to 0x5001 with frame id 1; AT command NJ.
DIGI_TX16_HELLO = bytes.fromhex('7E000A010150010048656C6C6FB8')
DIGI_AT_NJ = bytes.fromhex('7E000408524E4A0D')


def test_hardware_md_worked_example_encodes_byte_for_byte():
    request = TxRequest16(dest=0x0001, frame_id=1, rf_data=bytes.fromhex('0096C800C800'))
    assert request.encode() == HW_MD_VELOCITY_FRAME
    (frame,) = FrameParser().feed(HW_MD_VELOCITY_FRAME)
    assert TxRequest16.from_frame(frame) == request


def test_hardware_md_reply_header():
    record = bytes(range(46))
    wire = RxPacket16(source=0x0001, rssi=0x28, rf_data=b'\x00\x20' + record).encode()
    assert wire[:10] == bytes.fromhex('7E003581000128000020')
    assert wire[10:-1] == record and len(wire) == 3 + 0x35 + 1
    assert (sum(wire[3:]) & 0xFF) == 0xFF


def test_digi_examples_parse_with_their_checksums():
    frames = FrameParser().feed(DIGI_TX16_HELLO + DIGI_AT_NJ)
    assert [f.api_id for f in frames] == [API_TX16, 0x08]
    hello = TxRequest16.from_frame(frames[0])
    assert (hello.dest, hello.frame_id, hello.options, hello.rf_data) == (0x5001, 1, 0, b'Hello')
    assert frames[1].body == b'\x52NJ'             # AT command: frame id 0x52, then 'NJ'
    assert checksum(bytes.fromhex('08524E4A')) == 0x0D


@pytest.mark.parametrize('message', [
    TxRequest16(dest=0xFFFE, rf_data=b'\x7e' * 100, frame_id=255, options=4),
    TxRequest16(dest=0, rf_data=b''),
    RxPacket16(source=0x1234, rf_data=b'abc', rssi=90, options=2),
    TxStatus(frame_id=7, status=1),
])
def test_round_trip_every_frame_type(message):
    (frame,) = FrameParser().feed(message.encode())
    assert type(message).from_frame(frame) == message
    assert frame.encode() == message.encode()


@pytest.mark.parametrize('kwargs, field', [
    (dict(dest=0x10000, rf_data=b''), 'address'),
    (dict(dest=1, rf_data=b'x' * 101), 'RF data'),
    (dict(dest=1, rf_data=b'', frame_id=256), 'frame_id'),
])
def test_bad_fields_are_rejected_with_their_value(kwargs, field):
    with pytest.raises(FrameError, match=field):
        TxRequest16(**kwargs)


def test_decode_checks_api_id_and_length():
    with pytest.raises(FrameError, match='0x81'):
        RxPacket16.from_frame(Frame(API_TX16, b'\x00' * 8))
    with pytest.raises(FrameError, match='>= 4'):
        RxPacket16.from_frame(Frame(API_RX16, b'\x00\x01'))
    with pytest.raises(FrameError):
        encode_frame(b'')


def test_byte_by_byte_feeding_gives_the_same_frames():
    stream = DIGI_TX16_HELLO + HW_MD_VELOCITY_FRAME + DIGI_AT_NJ
    parser = FrameParser()
    frames = [f for b in stream for f in parser.feed(bytes([b]))]
    assert [f.encode() for f in frames] == [DIGI_TX16_HELLO, HW_MD_VELOCITY_FRAME, DIGI_AT_NJ]
    assert parser.buffered == 0 and parser.rejects == 0 and parser.discarded_bytes == 0


def test_resync_after_garbage_truncation_and_bad_checksum():
    bad = bytearray(HW_MD_VELOCITY_FRAME)
    bad[-1] ^= 0x01
    stream = (b'\x00\xff garbage \x7e' + HW_MD_VELOCITY_FRAME[:9]   # noise, truncated frame
              + DIGI_TX16_HELLO + bytes(bad) + b'\x7e\x00' + DIGI_AT_NJ)
    parser = FrameParser()
    frames = parser.feed(stream)
    assert [f.encode() for f in frames] == [DIGI_TX16_HELLO, DIGI_AT_NJ]
    assert parser.checksum_errors >= 2 and parser.discarded_bytes > 0
    assert parser.buffered == 0


def test_frame_hidden_inside_a_broken_frame_is_found():
    # A start byte whose length swallows the real frame: its checksum fails, and the
    # parser re-scans from the byte after it instead of skipping the whole candidate.
    stream = b'\x7e\x00\x20' + DIGI_TX16_HELLO + b'\x00' * 40
    parser = FrameParser()
    assert [f.encode() for f in parser.feed(stream)] == [DIGI_TX16_HELLO]
    assert parser.checksum_errors == 1


def test_max_length_is_enforced_and_the_buffer_stays_bounded():
    parser = FrameParser(max_length=10)
    at_limit = encode_frame(bytes([0x99]) + b'x' * 9)
    over = encode_frame(bytes([0x99]) + b'x' * 10)
    assert parser.feed(at_limit) == [Frame(0x99, b'x' * 9)]
    assert parser.feed(over + at_limit) == [Frame(0x99, b'x' * 9)]
    assert parser.length_errors == 1
    # A huge announced length never makes the parser wait for (or buffer) that many bytes.
    for _ in range(200):
        parser.feed(b'\x7e\xff\xff' + b'\x01' * 7)
        assert parser.buffered <= 10 + 4
    assert parser.feed(at_limit) == [Frame(0x99, b'x' * 9)]
    assert FrameParser().max_length == MAX_FRAME_DATA == 105
    with pytest.raises(ValueError, match='max_length'):
        FrameParser(max_length=0)


def test_zero_length_is_rejected():
    parser = FrameParser()
    assert parser.feed(b'\x7e\x00\x00\xff' + DIGI_AT_NJ) == FrameParser().feed(DIGI_AT_NJ)
    assert parser.length_errors == 1
