"""RTCP (RFC 3550 §6): sender/receiver reports, SDES CNAME, BYE; RTT from LSR/DLSR.

Parsing is exact: ``serialize_compound(parse_compound(data)) == data`` for every compound
packet we accept (unknown packet types are kept as :class:`UnknownRtcp`). Anything else
raises :class:`~ingress.sip.rtp.packet.MalformedRtcp`.

NTP times are 64-bit fixed-point integers (RFC 3550 §4). We never read a clock here: the
caller passes ``now`` (any monotonic seconds) and a fixed ``ntp_offset`` (wall-clock minus
monotonic, taken once by the runner); the RTT only needs the two ends of the same clock.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ingress.sip.rtp.packet import MalformedRtcp

__all__ = [
    "Bye",
    "ByeReceived",
    "RoundTripMeasured",
    "RtcpEvent",
    "RtcpReporter",
    "SenderInfo",
    "SenderReportReceived",
    "cname_packet",
    "ReceiverReport",
    "ReportBlock",
    "RtcpPacket",
    "SdesChunk",
    "SenderReport",
    "SourceDescription",
    "UnknownRtcp",
    "compact_ntp",
    "ntp_from_seconds",
    "parse_compound",
    "round_trip_time",
    "serialize_compound",
]

SR, RR, SDES, BYE = 200, 201, 202, 203
SDES_CNAME = 1
NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
_REPORT = struct.Struct("!IB3sIIII")


def ntp_from_seconds(unix_seconds: float) -> int:
    """64-bit NTP timestamp for a Unix time in seconds."""
    whole = int(unix_seconds)
    frac = int((unix_seconds - whole) * (1 << 32)) & 0xFFFFFFFF
    return (((whole + NTP_UNIX_OFFSET) & 0xFFFFFFFF) << 32) | frac


def compact_ntp(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp (RFC 3550 §6.4.1, used in LSR)."""
    return (ntp >> 16) & 0xFFFFFFFF


def round_trip_time(arrival_compact: int, lsr: int, dlsr: int) -> float | None:
    """RFC 3550 §6.4.1: RTT = A - LSR - DLSR, in seconds; ``None`` without an SR echoed."""
    if lsr == 0:
        return None
    rtt = (arrival_compact - lsr - dlsr) & 0xFFFFFFFF
    if rtt >= 0x80000000:  # negative: clocks disagree or a bogus report
        return None
    return rtt / 65536


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """RFC 3550 §6.4.1 reception report block (``cumulative_lost`` is signed 24-bit)."""

    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_sequence: int
    jitter: int
    lsr: int
    dlsr: int

    def serialize(self) -> bytes:
        lost = max(-0x800000, min(0x7FFFFF, self.cumulative_lost)) & 0xFFFFFF
        return _REPORT.pack(
            self.ssrc,
            self.fraction_lost & 0xFF,
            lost.to_bytes(3, "big"),
            self.highest_sequence & 0xFFFFFFFF,
            self.jitter & 0xFFFFFFFF,
            self.lsr & 0xFFFFFFFF,
            self.dlsr & 0xFFFFFFFF,
        )

    @classmethod
    def parse(cls, data: bytes, pos: int) -> ReportBlock:
        ssrc, fraction, lost_raw, highest, jitter, lsr, dlsr = _REPORT.unpack_from(data, pos)
        lost = int.from_bytes(lost_raw, "big")
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(ssrc, fraction, lost, highest, jitter, lsr, dlsr)


@dataclass(frozen=True, slots=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""  # profile-specific extension (§6.4.1), kept verbatim


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""


@dataclass(frozen=True, slots=True)
class SdesChunk:
    """One SDES chunk: an SSRC and its (type, value) items, e.g. ``(1, b"cname")``."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...]


@dataclass(frozen=True, slots=True)
class SourceDescription:
    chunks: tuple[SdesChunk, ...]


@dataclass(frozen=True, slots=True)
class Bye:
    sources: tuple[int, ...]
    reason: bytes = b""


@dataclass(frozen=True, slots=True)
class UnknownRtcp:
    """Any other packet type (APP, XR, RTPFB, …): header fields and body kept verbatim."""

    packet_type: int
    count: int
    body: bytes


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | UnknownRtcp


def _parse_reports(body: bytes, pos: int, count: int) -> tuple[tuple[ReportBlock, ...], int]:
    if pos + 24 * count > len(body):
        raise MalformedRtcp("RTCP report blocks truncated")
    blocks = tuple(ReportBlock.parse(body, pos + 24 * i) for i in range(count))
    return blocks, pos + 24 * count


def _parse_sdes(body: bytes, count: int) -> SourceDescription:
    chunks: list[SdesChunk] = []
    pos = 0
    for _ in range(count):
        if pos + 4 > len(body):
            raise MalformedRtcp("SDES chunk truncated")
        (ssrc,) = struct.unpack_from("!I", body, pos)
        pos += 4
        items: list[tuple[int, bytes]] = []
        while True:
            if pos >= len(body):
                raise MalformedRtcp("SDES item list not terminated")
            kind = body[pos]
            if kind == 0:
                # RFC 3550 §6.5: the list ends with a null octet, then padding to 32 bits.
                pos += 1
                padded = (pos + 3) & ~3
                if padded > len(body) or any(body[pos:padded]):
                    raise MalformedRtcp("SDES chunk badly padded")
                pos = padded
                break
            if pos + 2 > len(body):
                raise MalformedRtcp("SDES item truncated")
            length = body[pos + 1]
            if pos + 2 + length > len(body):
                raise MalformedRtcp("SDES item value truncated")
            items.append((kind, bytes(body[pos + 2 : pos + 2 + length])))
            pos += 2 + length
        chunks.append(SdesChunk(ssrc, tuple(items)))
    if pos != len(body):
        raise MalformedRtcp("SDES packet has trailing bytes")
    return SourceDescription(tuple(chunks))


def _serialize_sdes(sdes: SourceDescription) -> bytes:
    out = bytearray()
    for chunk in sdes.chunks:
        out += struct.pack("!I", chunk.ssrc)
        for kind, value in chunk.items:
            if not 1 <= kind <= 255 or len(value) > 255:
                raise ValueError("bad SDES item")
            out += bytes((kind, len(value))) + value
        out.append(0)
        while len(out) % 4:
            out.append(0)
    return bytes(out)


def _parse_one(packet_type: int, count: int, body: bytes) -> RtcpPacket:
    if packet_type == SR:
        if len(body) < 24:
            raise MalformedRtcp("sender report truncated")
        ssrc, ntp_hi, ntp_lo, rtp_ts, packets, octets = struct.unpack_from("!IIIIII", body)
        reports, pos = _parse_reports(body, 24, count)
        return SenderReport(
            ssrc, (ntp_hi << 32) | ntp_lo, rtp_ts, packets, octets, reports, bytes(body[pos:])
        )
    if packet_type == RR:
        if len(body) < 4:
            raise MalformedRtcp("receiver report truncated")
        (ssrc,) = struct.unpack_from("!I", body)
        reports, pos = _parse_reports(body, 4, count)
        return ReceiverReport(ssrc, reports, bytes(body[pos:]))
    if packet_type == SDES:
        return _parse_sdes(body, count)
    if packet_type == BYE:
        if len(body) < 4 * count:
            raise MalformedRtcp("BYE source list truncated")
        sources = struct.unpack_from(f"!{count}I", body) if count else ()
        rest = body[4 * count :]
        reason = b""
        if rest:
            length = rest[0]
            if 1 + length > len(rest):
                raise MalformedRtcp("BYE reason truncated")
            reason = bytes(rest[1 : 1 + length])
            if len(rest) != ((1 + length + 3) & ~3) or any(rest[1 + length :]):
                raise MalformedRtcp("BYE reason badly padded")
        return Bye(tuple(sources), reason)
    return UnknownRtcp(packet_type, count, bytes(body))


def parse_compound(data: bytes) -> list[RtcpPacket]:
    """Parse a compound RTCP datagram (RFC 3550 §6.1); raises :class:`MalformedRtcp`.

    Packets with the padding bit set are refused (padding may only appear on the last
    packet and is used with SRTCP encryption, which we do not do).
    """
    if len(data) < 4:
        raise MalformedRtcp("RTCP datagram too short")
    packets: list[RtcpPacket] = []
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise MalformedRtcp("RTCP header truncated")
        first, packet_type, words = struct.unpack_from("!BBH", data, pos)
        if first >> 6 != 2:
            raise MalformedRtcp(f"RTCP version {first >> 6}, expected 2")
        if first & 0x20:
            raise MalformedRtcp("padded RTCP packets are not supported")
        end = pos + 4 + 4 * words
        if end > len(data):
            raise MalformedRtcp("RTCP packet longer than the datagram")
        packets.append(_parse_one(packet_type, first & 0x1F, bytes(data[pos + 4 : end])))
        pos = end
    return packets


def _header(packet_type: int, count: int, body: bytes) -> bytes:
    if len(body) % 4 or count > 31:
        raise ValueError("RTCP body must be whole words and count at most 31")
    return struct.pack("!BBH", 0x80 | count, packet_type, len(body) // 4) + body


def serialize(packet: RtcpPacket) -> bytes:
    """One RTCP packet's wire form."""
    if isinstance(packet, SenderReport):
        body = struct.pack(
            "!IIIIII",
            packet.ssrc,
            (packet.ntp_timestamp >> 32) & 0xFFFFFFFF,
            packet.ntp_timestamp & 0xFFFFFFFF,
            packet.rtp_timestamp & 0xFFFFFFFF,
            packet.packet_count & 0xFFFFFFFF,
            packet.octet_count & 0xFFFFFFFF,
        )
        body += b"".join(r.serialize() for r in packet.reports) + packet.extension
        return _header(SR, len(packet.reports), body)
    if isinstance(packet, ReceiverReport):
        body = struct.pack("!I", packet.ssrc)
        body += b"".join(r.serialize() for r in packet.reports) + packet.extension
        return _header(RR, len(packet.reports), body)
    if isinstance(packet, SourceDescription):
        return _header(SDES, len(packet.chunks), _serialize_sdes(packet))
    if isinstance(packet, Bye):
        body = struct.pack(f"!{len(packet.sources)}I", *packet.sources)
        if packet.reason:
            reason = bytes((len(packet.reason),)) + packet.reason
            body += reason + b"\x00" * (-len(reason) % 4)
        return _header(BYE, len(packet.sources), body)
    return _header(packet.packet_type, packet.count, packet.body)


def serialize_compound(packets: Sequence[RtcpPacket]) -> bytes:
    return b"".join(serialize(p) for p in packets)


def cname_packet(ssrc: int, cname: str) -> SourceDescription:
    """RFC 3550 §6.1: every compound packet carries an SDES CNAME for our SSRC."""
    return SourceDescription((SdesChunk(ssrc, ((SDES_CNAME, cname.encode("utf-8")[:255]),)),))


@dataclass(frozen=True, slots=True)
class SenderInfo:
    """What our sender report states (from the pacer's counters)."""

    rtp_timestamp: int
    packet_count: int
    octet_count: int


@dataclass(frozen=True, slots=True)
class SenderReportReceived:
    """The peer sent an SR: pass it to ``ReceiverStatistics.record_sender_report``."""

    ssrc: int
    ntp_timestamp: int


@dataclass(frozen=True, slots=True)
class RoundTripMeasured:
    """A report block about our stream echoed our SR: RTT per RFC 3550 §6.4.1."""

    rtt: float


@dataclass(frozen=True, slots=True)
class ByeReceived:
    sources: tuple[int, ...]


RtcpEvent = SenderReportReceived | RoundTripMeasured | ByeReceived


class RtcpReporter:
    """Our side of RTCP for one stream: periodic SR/RR + SDES CNAME, RTT from LSR/DLSR.

    Sans-I/O: call :meth:`poll` at :meth:`next_deadline` with the current report block
    (``ReceiverStatistics.report_block(now)``) and, once we have sent media, the
    :class:`SenderInfo`; send the bytes it returns. Feed received datagrams to
    :meth:`receive`. The interval is ``interval`` seconds scaled by a random factor in
    [0.5, 1.5) from ``rand_bits`` (RFC 3550 §6.3.1; 5 s is the §6.2 minimum).
    """

    def __init__(
        self,
        ssrc: int,
        cname: str,
        *,
        ntp_offset: float,
        rand_bits: Callable[[int], int],
        interval: float = 5.0,
    ) -> None:
        self.ssrc = ssrc
        self.cname = cname
        self.ntp_offset = ntp_offset
        self.interval = interval
        self._rand_bits = rand_bits
        self._next: float | None = None
        self.rtt: float | None = None

    def _ntp(self, now: float) -> int:
        return ntp_from_seconds(now + self.ntp_offset)

    def start(self, now: float) -> None:
        if self._next is None:
            self._next = now + self._jittered() / 2  # RFC 3550 §6.2: first report sooner

    def _jittered(self) -> float:
        return self.interval * (0.5 + self._rand_bits(16) / 65536)

    def next_deadline(self) -> float | None:
        return self._next

    def poll(
        self, now: float, *, report: ReportBlock | None, sender: SenderInfo | None
    ) -> bytes | None:
        """The compound report due at ``now``, or ``None`` if none is due yet."""
        self.start(now)
        if self._next is None or now < self._next:
            return None
        self._next = now + self._jittered()
        return self.build(now, report=report, sender=sender)

    def build(self, now: float, *, report: ReportBlock | None, sender: SenderInfo | None) -> bytes:
        """An SR (if we send) or RR, followed by SDES CNAME (RFC 3550 §6.1)."""
        reports = (report,) if report is not None else ()
        first: RtcpPacket
        if sender is not None:
            first = SenderReport(
                self.ssrc,
                self._ntp(now),
                sender.rtp_timestamp,
                sender.packet_count,
                sender.octet_count,
                reports,
            )
        else:
            first = ReceiverReport(self.ssrc, reports)
        return serialize_compound([first, cname_packet(self.ssrc, self.cname)])

    def bye(self, reason: str = "") -> bytes:
        """RFC 3550 §6.6: a BYE (after an RR and the CNAME) when the call ends."""
        return serialize_compound(
            [
                ReceiverReport(self.ssrc),
                cname_packet(self.ssrc, self.cname),
                Bye((self.ssrc,), reason.encode("utf-8")[:255]),
            ]
        )

    def receive(self, data: bytes, now: float) -> list[RtcpEvent]:
        """Parse a received compound packet; raises :class:`MalformedRtcp`."""
        events: list[RtcpEvent] = []
        for packet in parse_compound(data):
            if isinstance(packet, SenderReport):
                events.append(SenderReportReceived(packet.ssrc, packet.ntp_timestamp))
            if isinstance(packet, SenderReport | ReceiverReport):
                for block in packet.reports:
                    if block.ssrc != self.ssrc:
                        continue
                    rtt = round_trip_time(compact_ntp(self._ntp(now)), block.lsr, block.dlsr)
                    if rtt is not None:
                        self.rtt = rtt
                        events.append(RoundTripMeasured(rtt))
            elif isinstance(packet, Bye):
                events.append(ByeReceived(packet.sources))
        return events
