"""Dynamixel Protocol 2.0 framing against the e-manual's example packets (hardware.md §2.2)."""

from __future__ import annotations

import pytest

from dexmpc_ros.wire import dynamixel_protocol as dxl
from dexmpc_ros.wire.dynamixel_protocol import Instruction


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# (frame without CRC, CRC bytes) from the e-manual, as listed in hardware.md §2.2
VECTORS = [
    ('FF FF FD 00 01 03 00 01', '19 4E'),                                  # ping id 1
    ('FF FF FD 00 01 07 00 55 00 06 04 26', '65 5D'),                      # its status
    ('FF FF FD 00 01 07 00 02 84 00 04 00', '1D 15'),                      # read 132/4
    ('FF FF FD 00 01 08 00 55 00 A6 00 00 00', '8C C0'),                   # status 166
    ('FF FF FD 00 01 09 00 03 74 00 00 02 00 00', 'CA 89'),                # write 116=512
    ('FF FF FD 00 01 04 00 55 00', 'A1 0C'),                               # empty status
    ('FF FF FD 00 01 03 00 08', '2F 4E'),                                  # reboot
    ('FF FF FD 00 FE 09 00 82 84 00 04 00 01 02', 'CE FA'),                # sync read
    ('FF FF FD 00 FE 11 00 83 74 00 04 00 01 96 00 00 00 02 AA 00 00 00', '82 87'),
    ('FF FF FD 00 FE 0D 00 92 01 90 00 02 00 02 92 00 01 00', '1A 05'),    # bulk read
]


def test_crc_catalogue_check_value():
    assert dxl.crc16(b'123456789') == 0xFEE8          # CRC-16/UMTS check value


@pytest.mark.parametrize('frame, crc', VECTORS)
def test_crc_matches_emanual(frame, crc):
    value = dxl.crc16(h(frame))
    assert bytes([value & 0xFF, value >> 8]) == h(crc)


def test_encoders_reproduce_emanual_packets():
    frames = [h(f) + h(c) for f, c in VECTORS]
    assert dxl.ping(1) == frames[0]
    assert dxl.encode_status(1, 0, h('06 04 26')) == frames[1]
    assert dxl.read(1, 132, 4) == frames[2]
    assert dxl.encode_status(1, 0, dxl.to_bytes(166, 4)) == frames[3]
    assert dxl.write(1, 116, dxl.to_bytes(512, 4)) == frames[4]
    assert dxl.encode_status(1) == frames[5]
    assert dxl.reboot(1) == frames[6]
    assert dxl.sync_read(132, 4, [1, 2]) == frames[7]
    assert dxl.sync_write(116, 4, {1: dxl.to_bytes(150, 4), 2: dxl.to_bytes(170, 4)}) == \
        frames[8]


@pytest.mark.parametrize('frame, crc', VECTORS)
def test_parse_round_trip(frame, crc):
    raw = h(frame) + h(crc)
    pkt = dxl.parse_frame(raw)
    assert pkt.raw == raw
    assert dxl.encode(pkt.id, pkt.instruction, pkt.params) == raw


def test_decoders_invert_encoders():
    assert dxl.decode_read(dxl.parse_frame(dxl.read(3, 126, 10)).params) == (126, 10)
    assert dxl.decode_write(dxl.parse_frame(dxl.write(3, 64, b'\x01')).params) == (64, b'\x01')
    assert dxl.decode_sync_read(dxl.parse_frame(dxl.sync_read(126, 10, [1, 5, 9])).params) \
        == (126, 10, [1, 5, 9])
    data = {1: b'\x01\x02', 7: b'\xff\xff'}
    assert dxl.decode_sync_write(dxl.parse_frame(dxl.sync_write(116, 2, data)).params) == \
        (116, 2, data)
    with pytest.raises(dxl.LengthError):
        dxl.decode_sync_write(dxl.to_bytes(116, 2) + dxl.to_bytes(4, 2) + b'\x01\x00\x00')
    with pytest.raises(ValueError):
        dxl.sync_write(116, 4, {1: b'\x00'})


def test_status_packet_accessors():
    pkt = dxl.parse_frame(h('FF FF FD 00 01 07 00 55 00 06 04 26 65 5D'))
    assert pkt.is_status and pkt.error == 0 and pkt.data == h('06 04 26')
    assert dxl.from_bytes(pkt.data[:2]) == 1030 and pkt.data[2] == 38   # XM430-W210, fw 38


def test_stuffing_inserts_and_removes_fd():
    assert dxl.stuff(h('55 00 FF FF FD 01')) == h('55 00 FF FF FD FD 01')
    assert dxl.stuff(h('FF FF FF FD')) == h('FF FF FF FD FD')
    assert dxl.stuff(h('FF FF FD FF FF FD')) == h('FF FF FD FD FF FF FD FD')
    assert dxl.stuff(h('FF FD FF FD')) == h('FF FD FF FD')
    for raw in (h('FF FF FD'), h('FF FF FD FD'), h('00 FF FF FD FF FF FD FD')):
        assert dxl.unstuff(dxl.stuff(raw)) == raw


def test_stuffed_packet_counts_stuffed_length_and_parses_back():
    # Present Position -3 = FD FF FF FF: with the ERR byte 00 no header appears, but
    # a data run FF FF FD does and gets stuffed.
    data = h('FF FF FD 00')
    raw = dxl.encode_status(4, 0, data)
    assert raw[5] == 1 + 1 + 5 + 2                    # INST + ERR + 4 data + FD + CRC
    assert h('FF FF FD FD') in raw[7:]
    pkt = dxl.parse_frame(raw)
    assert pkt.data == data


def test_parse_frame_rejects_bad_crc_with_typed_error():
    raw = bytearray(dxl.ping(1))
    raw[-1] ^= 0x40
    with pytest.raises(dxl.CrcError) as info:
        dxl.parse_frame(bytes(raw))
    assert info.value.dxl_id == 1
    with pytest.raises(dxl.HeaderError):
        dxl.parse_frame(b'\xff\xff\xfd\x01' + bytes(dxl.ping(1))[4:])
    with pytest.raises(dxl.LengthError):
        dxl.parse_frame(dxl.ping(1) + b'\x00')


def test_stream_resynchronises_after_garbage_and_split_frames():
    frames = [dxl.ping(1), dxl.read(2, 132, 4), dxl.encode_status(3, 0, h('FF FF FD 00'))]
    stream = b'\x00\xff\x13' + frames[0] + b'\xff\xff' + frames[1] + b'\xfd\x00' + frames[2]
    parser = dxl.StreamParser()
    got = []
    for i in range(0, len(stream), 3):                # arrives in 3-byte pieces
        got += parser.feed(stream[i:i + 3])
    packets = [p for p in got if isinstance(p, dxl.Packet)]
    assert [p.raw for p in packets] == frames
    assert parser.pending == 0


def test_stream_skips_bad_crc_and_keeps_the_next_frame():
    bad = bytearray(dxl.read(1, 132, 4))
    bad[9] ^= 0x01                                    # address byte
    got = dxl.StreamParser().feed(bytes(bad) + dxl.ping(7))
    assert isinstance(got[0], dxl.CrcError) and got[0].dxl_id == 1
    assert [p.id for p in got if isinstance(p, dxl.Packet)] == [7]


def test_stream_flush_recovers_frames_behind_a_bogus_header():
    bogus = h('FF FF FD 00 01 FF 03')                 # announces 1023 bytes that never come
    parser = dxl.StreamParser()
    assert parser.feed(bogus + dxl.ping(5)) == []     # still waiting for the bogus frame
    got = parser.flush()
    assert isinstance(got[0], dxl.LengthError)
    assert [p.id for p in got if isinstance(p, dxl.Packet)] == [5]


def test_stream_rejects_oversized_length_at_once():
    parser = dxl.StreamParser(max_length=64)
    got = parser.feed(h('FF FF FD 00 01 00 10') + dxl.ping(2))
    assert isinstance(got[0], dxl.HeaderError)
    assert [p.id for p in got if isinstance(p, dxl.Packet)] == [2]


def test_status_error_decoding():
    err = dxl.decode_status_error(0x83)
    assert err.alert and err.code == 3 and err.name == 'CRC error'
    assert dxl.decode_status_error(0x07).name == 'access error'
    assert not dxl.decode_status_error(0).alert and dxl.decode_status_error(0).name == ''


def test_hardware_error_bits_named():
    bits = dxl.HardwareError.OVERLOAD | dxl.HardwareError.OVERHEATING
    assert dxl.decode_hardware_error(int(bits)) == ['overheating', 'overload']
    assert dxl.decode_hardware_error(0x01) == ['input voltage out of range']
    assert dxl.decode_hardware_error(0x08) == ['motor encoder fault']
    assert 'electrical shock' in dxl.decode_hardware_error(0x10)[0]
    assert dxl.decode_hardware_error(0x02) == ['unknown hardware error bit 1']
    assert dxl.decode_hardware_error(0) == []


def test_control_table_addresses():
    x = dxl.X_SERIES
    assert (x['goal_position'].address, x['goal_position'].size) == (116, 4)
    assert (x['present_position'].address, x['present_position'].size) == (132, 4)
    assert (x['present_current'].address, x['present_velocity'].address) == (126, 128)
    assert x['torque_enable'].address == 64 and not x['torque_enable'].eeprom
    assert x['drive_mode'].eeprom and x['operating_mode'].address == 11
    assert x['hardware_error_status'].address == 70
    assert not x['present_position'].writable
    assert dxl.MODEL_NAMES[1020] == 'XM430-W350' and dxl.MODEL_NAMES[1060] == 'XL430-W250'


def test_signed_helpers():
    assert dxl.to_signed(65531, 2) == -5
    assert dxl.to_signed(0xFFFFFFFD, 4) == -3 and dxl.to_signed(5, 4) == 5
    assert dxl.from_bytes(dxl.to_bytes(-3, 4), signed=True) == -3
    assert Instruction.SYNC_READ == 0x82
