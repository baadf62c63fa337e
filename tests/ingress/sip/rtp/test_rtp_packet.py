"""RTP packets (RFC 3550 §5.1) and RTCP (§6): exact round trips, typed errors only."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingress.sip.rtp.packet import (
    HeaderExtension,
    MalformedRtcp,
    MalformedRtp,
    RtpPacket,
    is_rtcp,
    seq_diff,
    ts_diff,
)
from ingress.sip.rtp.rtcp import (
    Bye,
    ByeReceived,
    ReceiverReport,
    ReportBlock,
    RoundTripMeasured,
    RtcpPacket,
    RtcpReporter,
    SenderInfo,
    SenderReport,
    SenderReportReceived,
    SourceDescription,
    UnknownRtcp,
    compact_ntp,
    ntp_from_seconds,
    parse_compound,
    round_trip_time,
    serialize_compound,
)

DATA = Path(__file__).resolve().parents[3] / "data" / "rtp"


def recorded(name: str) -> list[tuple[int, bytes]]:
    rows = []
    for line in (DATA / name).read_text().splitlines():
        if line and not line.startswith("#"):
            t, hexdata = line.split()
            rows.append((int(t), bytes.fromhex(hexdata)))
    return rows


def test_linphone_packet_with_extension_csrc_and_padding() -> None:
    ((_, data),) = recorded("linphone_rtp_ext_csrc_padding.hex")
    p = RtpPacket.parse(data)
    assert p.payload_type == 96
    assert p.marker
    assert p.sequence_number == 65535
    assert p.timestamp == 0xFFFFFF60
    assert p.ssrc == 0x11223344
    assert p.csrc == (0xCAFEBABE,)
    assert p.extension == HeaderExtension(0xBEDE, bytes([0x10, 0x5A, 0, 0]))
    assert p.payload == bytes(range(40))
    assert p.padding == b"\x00\x00\x00\x04"
    assert p.serialize() == data


@pytest.mark.parametrize(
    "name",
    [
        "asterisk_dtmf_5.hex",
        "twilio_dtmf_11_no_marker.hex",
        "freeswitch_dtmf_long_press.hex",
        "telnyx_dtmf_9_lost_end.hex",
    ],
)
def test_recorded_streams_round_trip(name: str) -> None:
    for _, data in recorded(name):
        assert RtpPacket.parse(data).serialize() == data


def test_build_minimal_packet() -> None:
    p = RtpPacket(
        payload_type=0, sequence_number=1, timestamp=160, ssrc=0xDEADBEEF, payload=b"\xff" * 4
    )
    assert p.serialize() == bytes.fromhex("80000001000000a0deadbeef") + b"\xff" * 4
    assert bytes(RtpPacket(0, 1, 160, 1, marker=True))[1] == 0x80


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (bytes.fromhex("80000001000000a0deadbe"), "too short"),
        (bytes.fromhex("40000001000000a0deadbeef"), "version 1"),
        (bytes.fromhex("00000001000000a0deadbeef"), "version 0"),
        (bytes.fromhex("82000001000000a0deadbeef00000001"), "CSRC"),
        (bytes.fromhex("90000001000000a0deadbeefbede"), "extension header"),
        (bytes.fromhex("90000001000000a0deadbeefbede0002aabbccdd"), "extension body"),
        (bytes.fromhex("a0000001000000a0deadbeef0000"), "padding count 0"),
        (bytes.fromhex("a0000001000000a0deadbeef0009"), "padding count 9"),
    ],
)
def test_invalid_packets_raise_typed_error(data: bytes, message: str) -> None:
    with pytest.raises(MalformedRtp, match=message):
        RtpPacket.parse(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_parser_only_raises_malformed_rtp_and_round_trips(data: bytes) -> None:
    try:
        p = RtpPacket.parse(data)
    except MalformedRtp:
        return
    assert p.serialize() == data


@settings(max_examples=300, deadline=None)
@given(
    pt=st.integers(0, 127),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15),
    ext=st.none()
    | st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=12).map(lambda b: b[: len(b) // 4 * 4])),
    payload=st.binary(max_size=64),
    pad=st.integers(0, 8),
)
def test_built_packets_round_trip(
    pt: int,
    seq: int,
    ts: int,
    ssrc: int,
    marker: bool,
    csrc: list[int],
    ext: tuple[int, bytes] | None,
    payload: bytes,
    pad: int,
) -> None:
    packet = RtpPacket(
        pt,
        seq,
        ts,
        ssrc,
        payload,
        marker,
        tuple(csrc),
        HeaderExtension(*ext) if ext else None,
        bytes(pad - 1) + bytes((pad,)) if pad else b"",
    )
    assert RtpPacket.parse(packet.serialize()) == packet


def test_wrap_aware_arithmetic() -> None:
    assert seq_diff(0, 65535) == 1
    assert seq_diff(65535, 0) == -1
    assert seq_diff(100, 50) == 50
    assert ts_diff(10, 0xFFFFFFF0) == 26
    assert ts_diff(0xFFFFFFF0, 10) == -26


def test_rtcp_demux() -> None:
    ((_, sr),) = recorded("baresip_rtcp_sr_sdes.hex")
    assert is_rtcp(sr)
    ((_, rtp),) = recorded("linphone_rtp_ext_csrc_padding.hex")
    assert not is_rtcp(rtp)
    assert not is_rtcp(b"\x80")


def test_baresip_sender_report_and_cname() -> None:
    ((_, data),) = recorded("baresip_rtcp_sr_sdes.hex")
    sr, sdes = parse_compound(data)
    assert isinstance(sr, SenderReport) and isinstance(sdes, SourceDescription)
    assert sr.ssrc == 0x9ABCDEF0
    assert sr.ntp_timestamp == (0xE8D4A510 << 32) | 0x80000000
    assert (sr.rtp_timestamp, sr.packet_count, sr.octet_count) == (123456, 250, 40000)
    assert sr.reports == (ReportBlock(0x01020304, 12, 3, 0x12345, 37, 0xA5100000, 0x18000),)
    assert sdes.chunks[0].items == ((1, b"baresip@203.0.113.77"),)
    assert serialize_compound([sr, sdes]) == data


def test_rtcp_round_trips_for_every_type() -> None:
    packets: list[RtcpPacket] = [
        ReceiverReport(
            7, (ReportBlock(9, 255, -5, 70000, 12, 1, 2),), extension=b"\x01\x02\x03\x04"
        ),
        Bye((7, 8), b"hangup"),
        Bye((7,)),
        UnknownRtcp(204, 3, b"abcdname"),
    ]
    data = serialize_compound(packets)
    assert parse_compound(data) == packets
    assert serialize_compound(parse_compound(data)) == data


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\xc8",
        bytes.fromhex("40c90001 00000007".replace(" ", "")),  # version 1
        bytes.fromhex("80c90005 00000007".replace(" ", "")),  # longer than the datagram
        bytes.fromhex("81c90001 00000007".replace(" ", "")),  # report block missing
        bytes.fromhex("a0c90001 00000007".replace(" ", "")),  # padding bit
        bytes.fromhex("81ca0002 00000007 01050000".replace(" ", "")),  # SDES item cut
        bytes.fromhex("81cb0000".replace(" ", "")),  # BYE source missing
    ],
)
def test_invalid_rtcp_raises_typed_error(data: bytes) -> None:
    with pytest.raises(MalformedRtcp):
        parse_compound(data)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=160))
def test_rtcp_parser_only_raises_malformed_rtcp(data: bytes) -> None:
    try:
        packets = parse_compound(data)
    except MalformedRtcp:
        return
    assert serialize_compound(packets) == data


def test_rtt_from_lsr_and_dlsr() -> None:
    # RFC 3550 §6.4.1 example: A=0xb710:8000, LSR=0xb705:2000, DLSR=0x0005:4000 -> 6.125 s.
    assert round_trip_time(0xB7108000, 0xB7052000, 0x00054000) == 6.125
    assert round_trip_time(0xB7108000, 0, 0) is None


def test_reporter_measures_rtt_and_schedules_reports() -> None:
    ours = RtcpReporter(
        0x1111, "telepath@203.0.113.5", ntp_offset=1_700_000_000.0, rand_bits=lambda k: 1 << (k - 1)
    )
    # rand factor = 0.5 + 0.5 = 1.0; the first report comes after half an interval.
    ours.start(100.0)
    assert ours.next_deadline() == 102.5
    assert ours.poll(102.0, report=None, sender=None) is None
    sent = ours.poll(102.5, report=None, sender=SenderInfo(1000, 10, 1600))
    assert sent is not None
    sr, sdes = parse_compound(sent)
    assert isinstance(sr, SenderReport) and sr.packet_count == 10 and sr.octet_count == 1600
    assert isinstance(sdes, SourceDescription)
    assert ours.next_deadline() == 107.5
    # The peer echoes our SR 0.2 s after receiving it; it reaches us 0.1 s + 0.2 s + 0.1 s later.
    lsr = compact_ntp(sr.ntp_timestamp)
    block = ReportBlock(0x1111, 0, 0, 0, 0, lsr, int(0.2 * 65536))
    events = ours.receive(serialize_compound([ReceiverReport(0x2222, (block,))]), 102.9)
    assert len(events) == 1 and isinstance(events[0], RoundTripMeasured)
    assert events[0].rtt == pytest.approx(0.2, abs=1e-4)
    theirs = serialize_compound(
        [SenderReport(0x2222, ntp_from_seconds(5.0), 0, 0, 0), Bye((0x2222,))]
    )
    assert ours.receive(theirs, 103.0) == [
        SenderReportReceived(0x2222, ntp_from_seconds(5.0)),
        ByeReceived((0x2222,)),
    ]
    bye = parse_compound(ours.bye("done"))
    assert isinstance(bye[-1], Bye) and bye[-1].reason == b"done"


def test_ntp_conversion() -> None:
    # 1970-01-01 is 2208988800 s after the NTP epoch.
    assert ntp_from_seconds(0.5) == (2208988800 << 32) | 0x80000000
    assert struct.pack("!Q", ntp_from_seconds(1.25))[4:] == b"\x40\x00\x00\x00"
