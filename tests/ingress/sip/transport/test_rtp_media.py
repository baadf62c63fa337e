"""RtpMediaStream over real UDP sockets on loopback, against a test-side RTP peer.

Each test runs in real time for a fraction of a second (the stream paces on the loop's
monotonic clock); the peer timestamps arrivals in the kernel so the pacing is measured
where the packets land, not where the event loop happens to look at them.
"""

from __future__ import annotations

import asyncio
import gc
import random
import re
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from ingress.sip.offer_answer import Direction, NegotiatedMedia
from ingress.sip.rtp.packet import RtpPacket
from ingress.sip.rtp.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    SenderReport,
    SourceDescription,
    compact_ntp,
    parse_compound,
    serialize_compound,
)
from ingress.sip.transport.media import MediaConfig, RtpMediaStream, usable_address
from ingress.sip.transport.port_pool import RtpPortPool
from ingress.sip.transport.rtp import open_rtp_socket_pair
from media.ending import Blame, DisconnectReason
from media.errors import FormatMismatchError
from media.frames import G722_16K, PCMU, AudioFrame, DtmfDigit, LegEnded, LegEvent, MarkPlayed
from tests.ingress.sip.transport.rtp_peer import Clock, RtpPeer, free_even_base, open_fds

SILENCE = b"\xff" * 160
# Most tests here run the classic mode (jitter buffer, pacer on a fixed grid), with a
# generous jitter-buffer delay: the machine running the tests may be busy.
CONFIG = MediaConfig(
    jitter_buffer=True,
    jitter_min_delay_ms=60,
    jitter_max_delay_ms=120,
    prompt_start=False,
    underrun_grace_ms=0,
    max_early_ms=0,
    rtcp_interval=60.0,
    drain_seconds=0.0,
)
# The default, low-latency mode: forward caller audio on arrival, prompt talk spurts.
LOW_LATENCY = MediaConfig(rtcp_interval=60.0, drain_seconds=0.0)
SSRC = 0x5EED1234


def negotiated(port: int, **changes: object) -> NegotiatedMedia:
    media = NegotiatedMedia(
        remote_address="127.0.0.1",
        remote_port=port,
        payload_type=0,
        codec=PCMU,
        clock_rate=8000,
        ptime=20,
        direction=Direction.SENDRECV,
        rtcp_mux=False,
        remote_rtcp_address="127.0.0.1",
        remote_rtcp_port=port + 1,
        telephone_event_pt=101,
        telephone_event_clock_rate=8000,
    )
    return replace(media, **changes)  # type: ignore[arg-type]


def voice(tag: int, size: int = 160) -> bytes:
    """A recognisable payload that is not µ-law silence."""
    return bytes((tag * 7 + i) % 200 + 1 for i in range(size))


def rtp(
    seq: int,
    payload: bytes,
    *,
    pt: int = 0,
    step: int = 160,
    ssrc: int = SSRC,
    marker: bool = False,
    ts0: int = 90_000,
) -> RtpPacket:
    return RtpPacket(pt, seq & 0xFFFF, ts0 + (seq - 1000) * step, ssrc, payload, marker)


class Events:
    """Consumes ``stream.events()`` in a task, as the call leg will."""

    def __init__(self, stream: RtpMediaStream) -> None:
        self.items: list[LegEvent] = []
        self.changed = asyncio.Event()
        self.finished = False
        self.task = asyncio.create_task(self._run(stream.events()))

    async def _run(self, events: AsyncIterator[LegEvent]) -> None:
        async for event in events:
            self.items.append(event)
            self.changed.set()
        self.finished = True
        self.changed.set()

    def of(self, kind: type) -> list:  # type: ignore[type-arg]
        return [e for e in self.items if isinstance(e, kind)]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 3.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


class Call:
    """A stream on a pooled socket pair, the caller's RTP peer and its event consumer."""

    def __init__(self, pool: RtpPortPool, stream: RtpMediaStream, peer: RtpPeer) -> None:
        self.pool = pool
        self.stream = stream
        self.peer = peer
        self.events = Events(stream)

    @property
    def ours(self) -> tuple[str, int]:
        return ("127.0.0.1", self.stream.local_port)

    async def close(self) -> None:
        self.stream.close()
        await self.stream.wait_closed()
        await self.events.task
        self.peer.close()


@pytest.fixture(autouse=True)
def frozen_test_heap() -> Iterator[None]:
    """The tests here time packets to a few milliseconds on the loop they share with the
    stream. Late in a full run, this process holds every earlier test's objects, and one
    full collection of them can stall the loop longer than a packet time. Freeze them,
    as ``telepath serve`` freezes its start-up heap (gateway/runtime.py), so collections
    during a test see only what it allocates."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@pytest.fixture
def pool() -> RtpPortPool:
    base = free_even_base()
    return RtpPortPool(base, base + 39, drain_seconds=0.0, clock=Clock())


async def start(
    pool: RtpPortPool,
    config: MediaConfig = CONFIG,
    peer: RtpPeer | None = None,
    **changes: object,
) -> Call:
    peer = peer or await RtpPeer.open()
    sockets = await open_rtp_socket_pair(pool, "127.0.0.1")
    media = negotiated(peer.port, **changes)
    stream = RtpMediaStream(
        media, sockets, rand_bits=random.Random(7).getrandbits, config=config, call_id="test"
    )
    return Call(pool, stream, peer)


def audio_after_marker(packets: list[RtpPacket], count: int) -> list[RtpPacket]:
    first = next(i for i, p in enumerate(packets) if p.marker)
    return packets[first : first + count]


# -- audio both ways ----------------------------------------------------------------------


async def test_pcmu_both_ways_byte_exact(pool: RtpPortPool) -> None:
    call = await start(pool)
    stream, peer = call.stream, call.peer
    try:
        sent_in = [voice(n) for n in range(25)]
        packets = [rtp(1000 + n, p, marker=n == 0) for n, p in enumerate(sent_in)]
        done = peer.send_paced(packets, call.ours)
        agent = b"".join(voice(100 + n) for n in range(25))
        for pos in range(0, len(agent), 100):  # odd-sized pieces: the pacer re-frames them
            stream.play(AudioFrame(PCMU, agent[pos : pos + 100]))
        await done
        await call.events.wait_for(lambda: len(call.events.of(AudioFrame)) >= 25)
        frames = call.events.of(AudioFrame)[:25]
        assert [f.payload for f in frames] == sent_in
        assert [f.timestamp for f in frames] == [20 * n for n in range(25)]
        assert all(f.format == PCMU for f in frames)
        arrivals = [f.received_at for f in frames]
        assert all(a is not None for a in arrivals)
        assert arrivals == sorted(a for a in arrivals if a is not None)

        await peer.wait_for(lambda: len(peer.rtp(0)) >= 40)
        spurt = audio_after_marker(peer.rtp(0), 25)
        assert b"".join(p.payload for p in spurt) == agent
        packets = peer.rtp(0)
        first = next(i for i, p in enumerate(packets) if p.marker)
        assert all(p.payload == SILENCE for p in packets[:first])

        stats = stream.stats()
        assert stats["packets_received"] == 25
        assert stats["packets_lost"] == 0
        assert stats["packets_ignored_source"] == 0
        assert stats["jitter_max_ms"] >= stats["jitter_mean_ms"] >= 0
        assert stats["jitter_max_ms"] >= stats["jitter_ms"] >= 0
        assert 60 <= stats["jitter_buffer_delay_ms"] <= 120
        assert stats["audio_sent_ms"] == 500
    finally:
        await call.close()


async def test_lost_packet_repeats_the_last_payload_once_then_silence(pool: RtpPortPool) -> None:
    call = await start(pool)
    try:
        seqs = [1000, 1001, 1004, 1005]  # 1002 and 1003 lost
        packets = [rtp(s, voice(s)) for s in seqs]
        # Send on the packets' own schedule, gaps included.
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for s, p in zip(seqs, packets, strict=True):
            loop.call_at(t0 + (s - 1000) * 0.02, call.peer.send, p, call.ours)
        await call.events.wait_for(lambda: len(call.events.of(AudioFrame)) >= 6)
        payloads = [f.payload for f in call.events.of(AudioFrame)[:6]]
        assert payloads == [
            voice(1000),
            voice(1001),
            voice(1001),
            SILENCE,
            voice(1004),
            voice(1005),
        ]
        concealed = call.events.of(AudioFrame)[2:4]
        assert all(f.received_at is None for f in concealed)
        assert call.stream.stats()["packets_lost"] == 2
    finally:
        await call.close()


async def test_low_latency_mode_forwards_each_packet_as_it_arrives(pool: RtpPortPool) -> None:
    call = await start(pool, LOW_LATENCY)
    loop = asyncio.get_running_loop()
    try:
        waits = []
        for n in range(10):
            sent = loop.time()
            call.peer.send(rtp(1000 + n, voice(n)), call.ours)
            await call.events.wait_for(lambda n=n: len(call.events.of(AudioFrame)) > n)
            waits.append(loop.time() - sent)
        frames = call.events.of(AudioFrame)
        assert [f.payload for f in frames] == [voice(n) for n in range(10)]
        # No jitter-buffer delay: each frame is out as soon as the loop reads the datagram
        # (the jitter buffer would hold every one at least 20 ms).
        assert sorted(waits)[5] < 0.010, f"median wait {sorted(waits)[5] * 1000:.1f} ms"
        assert call.stream.stats()["jitter_buffer_delay_ms"] == 0
    finally:
        await call.close()


async def test_low_latency_mode_conceals_a_gap_after_the_reorder_window(pool: RtpPortPool) -> None:
    call = await start(pool, LOW_LATENCY)
    try:
        for seq in (1000, 1001, 1003, 1004):  # 1002 lost
            call.peer.send(rtp(seq, voice(seq)), call.ours)
            await asyncio.sleep(0.02)
        await call.events.wait_for(lambda: len(call.events.of(AudioFrame)) >= 5)
        frames = call.events.of(AudioFrame)[:5]
        assert [f.payload for f in frames] == [
            voice(1000),
            voice(1001),
            voice(1001),  # concealed: the last payload repeated once
            voice(1003),
            voice(1004),
        ]
        assert frames[2].received_at is None
        assert call.stream.stats()["concealed_frames"] == 1
    finally:
        await call.close()


async def test_low_latency_mode_does_not_wait_for_comfort_noise_or_dtmf_packets(
    pool: RtpPortPool,
) -> None:
    """Comfort noise (RFC 3389) and RFC 4733 events share the audio's sequence numbers;
    the next utterance must not be held for them as if they were lost, nor be preceded by
    a concealment frame of the previous one."""
    call = await start(pool, LOW_LATENCY, comfort_noise_pt=13)
    loop = asyncio.get_running_loop()
    try:
        for seq in (1000, 1001):
            call.peer.send(rtp(seq, voice(seq)), call.ours)
        call.peer.send(rtp(1002, bytes([40]), pt=13), call.ours)  # CN: the caller is quiet
        call.peer.send(rtp(1003, bytes([1, 0x8A, 0, 160]), pt=101), call.ours)  # key "1"
        await call.events.wait_for(lambda: len(call.events.of(AudioFrame)) >= 2)
        await asyncio.sleep(0.2)
        sent = loop.time()
        call.peer.send(rtp(1004, voice(1004), marker=True), call.ours)
        await call.events.wait_for(lambda: len(call.events.of(AudioFrame)) >= 3)
        waited = loop.time() - sent
        frames = call.events.of(AudioFrame)
        assert [f.payload for f in frames] == [voice(1000), voice(1001), voice(1004)]
        assert waited < 0.015, f"held {waited * 1000:.1f} ms"  # the reorder window is 20 ms
        assert call.stream.stats()["concealed_frames"] == 0
    finally:
        await call.close()


async def test_low_latency_mode_starts_a_talk_spurt_at_once(pool: RtpPortPool) -> None:
    call = await start(pool, LOW_LATENCY)
    stream, peer = call.stream, call.peer
    try:
        await peer.wait_for(lambda: len(peer.rtp(0)) >= 3)  # silence on the pacer's grid
        before = len(peer.received)
        await peer.wait_for(lambda: len(peer.received) > before)
        # Right after a silence packet: the fixed grid would hold this for ~20 ms.
        stream.play(AudioFrame(PCMU, voice(1) + voice(2)))
        await peer.wait_for(lambda: any(p.marker for p in peer.rtp(0)))
        got = peer.received
        first = next(i for i, r in enumerate(got) if RtpPacket.parse(r.data).marker)
        assert RtpPacket.parse(got[first].data).payload == voice(1)
        assert (got[first].at - got[first - 1].at) * 1000 < 10
        # Timestamps stay contiguous with the silence before it.
        a, b = RtpPacket.parse(got[first - 1].data), RtpPacket.parse(got[first].data)
        assert (b.sequence_number - a.sequence_number) & 0xFFFF == 1
        assert (b.timestamp - a.timestamp) & 0xFFFFFFFF == 160
    finally:
        await call.close()


# -- pacing -------------------------------------------------------------------------------


async def test_pacing_is_one_packet_per_ptime_without_bursts(pool: RtpPortPool) -> None:
    call = await start(pool)
    stream, peer = call.stream, call.peer
    try:
        stream.play(AudioFrame(PCMU, b"".join(voice(n) for n in range(20))))
        await peer.wait_for(lambda: len(peer.rtp(0)) >= 60, within=5.0)
        got = peer.received[:60]
        skipped = stream.stats()["slots_skipped"]
        assert (got[-1].at - got[0].at) * 1000 / 59 == pytest.approx(
            20 * (1 + skipped / 59), abs=1.0
        )
        packets = [RtpPacket.parse(r.data) for r in got]
        # No burst: two packets under 10 ms apart only when the first was late and the
        # second is back on the 20 ms grid (a loop that stalled on a loaded CI host: the
        # pacer keeps its grid). Each packet's place on the grid is its arrival less its
        # slot (from its RTP timestamp); the grid is where most packets are.
        offsets = [
            (r.at - got[0].at) * 1000 - ((p.timestamp - packets[0].timestamp) & 0xFFFFFFFF) / 8
            for r, p in zip(got, packets, strict=True)
        ]
        on_grid = sorted(offsets)[len(offsets) // 2]
        for i in range(len(got) - 1):
            gap = (got[i + 1].at - got[i].at) * 1000
            off = offsets[i + 1] - on_grid
            assert gap > 10 or abs(off) < 5, f"burst: {gap:.1f} ms apart, then {off:+.1f} ms"

        seqs = [p.sequence_number for p in packets]
        assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))
        steps = [
            (b.timestamp - a.timestamp) & 0xFFFFFFFF
            for a, b in zip(packets, packets[1:], strict=False)
        ]
        assert all(s % 160 == 0 and s > 0 for s in steps)
        assert sum(1 for s in steps if s != 160) <= skipped
        assert len({p.ssrc for p in packets}) == 1 and packets[0].ssrc == stream.ssrc
    finally:
        await call.close()


async def test_marker_on_the_first_packet_of_each_talk_spurt(pool: RtpPortPool) -> None:
    call = await start(pool)
    stream, peer = call.stream, call.peer
    try:
        stream.play(AudioFrame(PCMU, voice(1) + voice(2) + voice(3)))
        stream.mark("first")
        await call.events.wait_for(lambda: MarkPlayed("first") in call.events.items)
        await peer.wait_for(lambda: len(peer.rtp(0)) >= 10)  # some silence in between
        stream.play(AudioFrame(PCMU, voice(4) + voice(5)))
        stream.mark("second")
        await call.events.wait_for(lambda: MarkPlayed("second") in call.events.items)
        n = stream.stats()["packets_sent"]
        await peer.wait_for(lambda: len(peer.rtp(0)) >= n)
        packets = peer.rtp(0)
        talk = [p for p in packets if p.payload != SILENCE]
        assert [p.payload for p in talk] == [voice(k) for k in (1, 2, 3, 4, 5)]
        assert [p.marker for p in talk] == [True, False, False, True, False]
        assert not any(p.marker for p in packets if p.payload == SILENCE)
        seqs = [p.sequence_number for p in packets]
        assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))
    finally:
        await call.close()


# -- marks and clear ----------------------------------------------------------------------


async def test_marks_are_acknowledged_when_their_audio_was_sent(pool: RtpPortPool) -> None:
    call = await start(pool)
    stream = call.stream
    try:
        stream.mark("nothing-queued")
        await call.events.wait_for(lambda: bool(call.events.of(MarkPlayed)))
        assert stream.stats()["audio_sent_ms"] == 0

        sent_at_ack: dict[str, object] = {}
        stream.play(AudioFrame(PCMU, voice(1) * 3))  # 60 ms
        stream.mark("a")
        stream.play(AudioFrame(PCMU, voice(2) * 10))  # 200 ms
        stream.mark("b")

        def seen(name: str) -> bool:
            if MarkPlayed(name) in call.events.items and name not in sent_at_ack:
                sent_at_ack[name] = stream.stats()["audio_sent_ms"]
            return name in sent_at_ack

        await call.events.wait_for(lambda: seen("a"))
        await call.events.wait_for(lambda: seen("b"))
        assert sent_at_ack["a"] >= 60  # type: ignore[operator]
        assert sent_at_ack["b"] == 260  # everything, and the ack came with the last packet
        assert [m.name for m in call.events.of(MarkPlayed)] == ["nothing-queued", "a", "b"]
    finally:
        await call.close()


async def test_clear_drops_queued_audio_within_one_ptime(pool: RtpPortPool) -> None:
    call = await start(pool)
    stream, peer = call.stream, call.peer
    try:
        stream.play(AudioFrame(PCMU, b"".join(voice(n) for n in range(100))))  # 2 s
        stream.mark("after-the-speech")
        await peer.wait_for(lambda: sum(p.payload != SILENCE for p in peer.rtp(0)) >= 5)
        sent_before = stream.stats()["packets_sent"]
        stream.clear()
        # The mark behind the dropped audio is acknowledged at once, not after 2 s.
        await call.events.wait_for(lambda: bool(call.events.of(MarkPlayed)), within=0.5)
        assert call.events.of(MarkPlayed) == [MarkPlayed("after-the-speech")]
        assert stream.stats()["audio_sent_ms"] < 1000
        assert stream.stats()["playout_queued_ms"] == 0
        await peer.wait_for(lambda: len(peer.rtp(0)) >= sent_before + 5)
        after = peer.rtp(0)[sent_before:]
        assert all(p.payload == SILENCE for p in after)  # the very next packet is silence
    finally:
        await call.close()


# -- latching -----------------------------------------------------------------------------


async def test_latches_to_the_real_source_and_ignores_a_third(pool: RtpPortPool) -> None:
    sdp_peer = await RtpPeer.open()  # where the SDP says the caller's media is
    real = await RtpPeer.open()  # where it really comes from (NAT)
    stranger = await RtpPeer.open()
    call = await start(pool, peer=sdp_peer)
    stream = call.stream
    try:
        # Before any RTP arrives we send to the SDP address.
        await sdp_peer.wait_for(lambda: len(sdp_peer.rtp()) >= 2)
        assert stream.send_target == sdp_peer.address

        done = real.send_paced([rtp(1000 + n, voice(n)) for n in range(10)], call.ours)
        await real.wait_for(lambda: len(real.rtp()) >= 1)
        assert stream.send_target == real.address
        at_latch = len(sdp_peer.received)
        await done
        for n in range(3):  # another SSRC from another address: not enough to switch
            stranger.send(rtp(5000 + n, b"\x11" * 160, ssrc=0xBAD), call.ours)
        await real.wait_for(lambda: len(real.rtp()) >= 8)
        assert len(sdp_peer.received) <= at_latch + 1  # at most one was already in flight
        assert stranger.received == []
        await call.events.wait_for(lambda: len(call.events.of(AudioFrame)) >= 10)
        assert all(f.payload != b"\x11" * 160 for f in call.events.of(AudioFrame))
        await real.wait_for(lambda: stream.stats()["packets_ignored_source"] == 3)
        stats = stream.stats()
        assert stats["packets_ignored_source"] == 3
        assert stats["packets_received"] == 10
        assert stream.send_target == real.address
    finally:
        await call.close()
        real.close()
        stranger.close()


async def test_nothing_is_sent_before_a_remote_address_is_known(pool: RtpPortPool) -> None:
    peer = await RtpPeer.open()
    call = await start(pool, peer=peer, remote_address="0.0.0.0")
    try:
        call.stream.play(AudioFrame(PCMU, voice(1)))
        await asyncio.sleep(0.1)
        assert peer.received == [] and call.stream.stats()["packets_sent"] == 0
        assert call.stream.send_target is None
        peer.send(rtp(1000, voice(0)), call.ours)  # the first packet tells us where
        await peer.wait_for(lambda: len(peer.rtp(0)) >= 2)
        assert voice(1) in [p.payload for p in peer.rtp(0)]
    finally:
        await call.close()


# -- re-INVITE: hold, resume, new address --------------------------------------------------


async def test_update_holds_resumes_and_moves(pool: RtpPortPool) -> None:
    config = replace(CONFIG, media_timeout=0.3)
    call = await start(pool, config)
    stream, peer = call.stream, call.peer
    moved = await RtpPeer.open()
    try:
        await peer.wait_for(lambda: len(peer.rtp()) >= 2)
        stream.update(replace(stream.media, direction=Direction.INACTIVE))
        count = len(peer.received)
        await asyncio.sleep(0.5)  # longer than the media timeout: on hold, no timeout
        assert len(peer.received) <= count + 1
        assert not call.events.of(LegEnded)

        stream.update(negotiated(moved.port))  # resume, at a new address
        await moved.wait_for(lambda: len(moved.rtp()) >= 2)
        assert stream.send_target == moved.address
        # After resuming, the media timeout counts again.
        await call.events.wait_for(lambda: bool(call.events.of(LegEnded)), within=2.0)

        with pytest.raises(ValueError):
            stream.update(replace(stream.media, codec=G722_16K))
    finally:
        await call.close()
        moved.close()


# -- DTMF ---------------------------------------------------------------------------------


def telephone_event(event: int, end: bool, duration: int) -> bytes:
    # RFC 4733 §2.3: event, E|R|volume, duration
    return struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)


async def test_rfc4733_key_presses_become_one_digit_each(pool: RtpPortPool) -> None:
    config = replace(CONFIG, dtmf_end_timeout=0.2)
    call = await start(pool, config)
    try:
        seq = 1000
        packets = []
        for digit_code, ts in ((5, 200_000), (11, 202_000)):
            for n, duration in enumerate((160, 320, 480, 640, 800, 800, 800)):
                end = n >= 4  # the final packet, sent three times (RFC 4733 §2.5.1.4)
                payload = telephone_event(digit_code, end, duration)
                packets.append(RtpPacket(101, seq, ts, SSRC, payload, marker=n == 0))
                seq += 1
        await call.peer.send_paced(packets, call.ours)
        await call.events.wait_for(lambda: len(call.events.of(DtmfDigit)) >= 2)
        await asyncio.sleep(0.3)  # nothing more comes, not even after the end timeout
        assert call.events.of(DtmfDigit) == [DtmfDigit("5", 100), DtmfDigit("#", 100)]
        assert call.stream.stats()["dtmf_received"] == 2
    finally:
        await call.close()


async def test_send_dtmf(pool: RtpPortPool) -> None:
    call = await start(pool)
    stream, peer = call.stream, call.peer
    try:
        stream.send_dtmf("1#")
        await peer.wait_for(lambda: sum(p.payload[1] & 0x80 > 0 for p in peer.rtp(101)) >= 6)
        events = peer.rtp(101)
        by_ts: dict[int, list[RtpPacket]] = {}
        for p in events:
            by_ts.setdefault(p.timestamp, []).append(p)
        assert [ps[0].payload[0] for ps in by_ts.values()] == [1, 11]
        for ps in by_ts.values():
            assert ps[0].marker and not any(p.marker for p in ps[1:])
            assert [p.payload[1] & 0x80 > 0 for p in ps[-3:]] == [True] * 3
        with pytest.raises(ValueError):
            stream.send_dtmf("x")
    finally:
        await call.close()


# -- G.722 --------------------------------------------------------------------------------


async def test_g722_runs_on_an_8khz_rtp_clock(pool: RtpPortPool) -> None:
    call = await start(pool, payload_type=9, codec=G722_16K, clock_rate=8000)
    stream, peer = call.stream, call.peer
    try:
        assert len(voice(0)) == G722_16K.bytes_for_ms(20)  # 160 bytes: 320 samples
        with pytest.raises(FormatMismatchError):
            stream.play(AudioFrame(PCMU, voice(0)))
        stream.play(AudioFrame(G722_16K, b"".join(voice(n) for n in range(5))))
        sent_in = [voice(50 + n) for n in range(5)]
        # RFC 3551 §4.5.2: 20 ms of G.722 advance the RTP timestamp by 160, not 320.
        await peer.send_paced(
            [rtp(1000 + n, p, pt=9, step=160) for n, p in enumerate(sent_in)], call.ours
        )
        await call.events.wait_for(lambda: len(call.events.of(AudioFrame)) >= 5)
        frames = call.events.of(AudioFrame)[:5]
        assert [f.payload for f in frames] == sent_in
        assert [f.timestamp for f in frames] == [0, 20, 40, 60, 80]
        assert all(f.format == G722_16K and f.duration_ms == 20 for f in frames)

        await peer.wait_for(lambda: len(peer.rtp(9)) >= 12)
        packets = peer.rtp(9)
        spurt = audio_after_marker(packets, 5)
        assert [p.payload for p in spurt] == [voice(n) for n in range(5)]
        steps = {
            (b.timestamp - a.timestamp) & 0xFFFFFFFF
            for a, b in zip(packets, packets[1:], strict=False)
        }
        assert steps <= {160, 320, 480}  # 160 a packet; more only for a skipped slot
        assert 160 in steps
    finally:
        await call.close()


# -- media timeout ------------------------------------------------------------------------


async def test_media_timeout_when_rtp_never_came(pool: RtpPortPool) -> None:
    call = await start(pool, replace(CONFIG, media_timeout=0.3))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        await call.events.wait_for(lambda: bool(call.events.of(LegEnded)), within=2.0)
        assert loop.time() - t0 >= 0.29
        (ended,) = call.events.of(LegEnded)
        assert ended.end.reason is DisconnectReason.RTP_TIMEOUT
        assert ended.end.blame is Blame.CARRIER
        assert ended.end.explanation == (
            "No RTP from the carrier for 0.3 s (no packet arrived at all)"
        )
        await call.events.task
        assert call.events.finished  # the event stream ends after LegEnded
    finally:
        await call.close()


async def test_media_timeout_names_the_last_packet_time(pool: RtpPortPool) -> None:
    call = await start(pool, replace(CONFIG, media_timeout=0.3))
    try:
        await call.peer.send_paced([rtp(1000 + n, voice(n)) for n in range(3)], call.ours)
        last_sent = datetime.now(UTC)
        await call.events.wait_for(lambda: bool(call.events.of(LegEnded)), within=2.0)
        (ended,) = call.events.of(LegEnded)
        match = re.fullmatch(
            r"No RTP from the carrier for 0\.3 s \(last packet at (\d\d:\d\d:\d\d) UTC\)",
            ended.end.explanation,
        )
        assert match is not None, ended.end.explanation
        stamp = datetime.strptime(match.group(1), "%H:%M:%S").time()
        delta = abs(
            datetime.combine(last_sent.date(), stamp, UTC) - last_sent.replace(microsecond=0)
        )
        assert delta.total_seconds() <= 2 or delta.total_seconds() >= 86_398  # midnight
    finally:
        await call.close()


async def test_no_media_timeout_while_on_hold(pool: RtpPortPool) -> None:
    call = await start(pool, replace(CONFIG, media_timeout=0.3))
    loop = asyncio.get_running_loop()
    try:
        call.stream.set_hold(True)
        await asyncio.sleep(0.6)
        assert not call.events.of(LegEnded)
        resumed = loop.time()
        call.stream.set_hold(False)
        await call.events.wait_for(lambda: bool(call.events.of(LegEnded)), within=2.0)
        assert loop.time() - resumed >= 0.29  # counted afresh from the resume
    finally:
        await call.close()


# -- RTCP ---------------------------------------------------------------------------------


async def test_rtcp_reports_and_round_trip_time(pool: RtpPortPool) -> None:
    rtcp_peer = await RtpPeer.open()
    symmetric = await RtpPeer.open()
    config = replace(CONFIG, rtcp_interval=0.2)
    call = await start(pool, config, remote_rtcp_port=rtcp_peer.port)
    stream = call.stream
    try:
        await call.peer.send_paced([rtp(1000 + n, voice(n)) for n in range(5)], call.ours)
        await rtcp_peer.wait_for(lambda: bool(rtcp_peer.received), within=2.0)
        report = parse_compound(rtcp_peer.received[0].data)
        sr, sdes = report
        assert isinstance(sr, SenderReport) and sr.ssrc == stream.ssrc
        assert sr.packet_count > 0 and sr.reports and sr.reports[0].ssrc == SSRC
        assert isinstance(sdes, SourceDescription)
        assert rtcp_peer.received[0].source == ("127.0.0.1", stream.local_port + 1)

        # The caller's receiver report echoes our SR (LSR), answered at once (DLSR 0).
        block = ReportBlock(stream.ssrc, 0, 0, 0, 0, compact_ntp(sr.ntp_timestamp), 0)
        rr = serialize_compound([ReceiverReport(SSRC, (block,))])
        symmetric.send(rr, ("127.0.0.1", stream.local_port + 1))
        await symmetric.wait_for(lambda: bool(symmetric.received), within=2.0)
        stats = stream.stats()
        assert stats["rtcp_received"] == 1
        rtt = stats["rtt_ms"]
        assert isinstance(rtt, float) and 0 <= rtt < 1000
    finally:
        await call.close()
        rtcp_peer.close()
        symmetric.close()


async def test_rtcp_mux_is_demultiplexed_on_the_rtp_port(pool: RtpPortPool) -> None:
    config = replace(CONFIG, rtcp_interval=0.2)
    call = await start(pool, config, rtcp_mux=True, remote_rtcp_port=0)
    stream, peer = call.stream, call.peer
    try:
        peer.send(rtp(1000, voice(0)), call.ours)
        rr = serialize_compound([ReceiverReport(SSRC, ())])
        peer.send(rr, call.ours)  # RFC 5761: RTCP on the RTP port
        await peer.wait_for(lambda: bool(peer.rtcp()), within=2.0)
        assert isinstance(parse_compound(peer.rtcp()[0])[0], SenderReport)
        stats = stream.stats()
        assert stats["rtcp_received"] == 1
        assert stats["packets_malformed"] == 0 and stats["packets_received"] == 1
    finally:
        await call.close()


# -- hostile input ------------------------------------------------------------------------


async def test_garbage_is_counted_and_the_call_goes_on(pool: RtpPortPool) -> None:
    call = await start(pool)
    stream, peer = call.stream, call.peer
    hostile = await RtpPeer.open()
    rng = random.Random(1)
    try:
        peer.send(rtp(1000, voice(0)), call.ours)
        await call.events.wait_for(lambda: bool(call.events.of(AudioFrame)))
        for _ in range(200):
            junk = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 300)))
            hostile.send(junk, call.ours)
            hostile.send(junk, ("127.0.0.1", stream.local_port + 1))
        hostile.send(b"\x80\x00" + b"\x00" * 1998, call.ours)  # oversized
        peer.send(b"\x80\xc8\x00\xff", call.ours)  # RTCP SR header claiming 1 KB
        peer.send(b"\x80", call.ours)  # truncated RTP
        peer.send(rtp(1001, voice(1), pt=96), call.ours)  # a payload type never negotiated
        peer.send(rtp(1002, telephone_event(1, False, 0)[:2], pt=101), call.ours)
        await peer.send_paced([rtp(1003 + n, voice(3 + n)) for n in range(5)], call.ours)
        await call.events.wait_for(
            lambda: voice(7) in [f.payload for f in call.events.of(AudioFrame)]
        )
        stats = stream.stats()
        assert stats["packets_malformed"] >= 100
        assert stats["packets_unknown_payload_type"] == 1
        assert not call.events.finished
    finally:
        await call.close()
        hostile.close()


# -- queues -------------------------------------------------------------------------------


async def test_a_slow_consumer_loses_the_oldest_audio_not_memory(pool: RtpPortPool) -> None:
    peer = await RtpPeer.open()
    sockets = await open_rtp_socket_pair(pool, "127.0.0.1")
    config = replace(CONFIG, event_queue_size=5)
    stream = RtpMediaStream(
        negotiated(peer.port), sockets, rand_bits=random.Random(1).getrandbits, config=config
    )
    try:
        await peer.send_paced(
            [rtp(1000 + n, voice(n)) for n in range(12)], ("127.0.0.1", stream.local_port)
        )
        await asyncio.sleep(0.2)  # let the jitter buffer play everything out
        stream.mark("m")
        received: list[LegEvent] = []
        stream.close()
        async for event in stream.events():
            received.append(event)
        frames = [e for e in received if isinstance(e, AudioFrame)]
        # Only the newest audio is left, and the mark: 4 frames + 1 = the queue size.
        assert len(received) == 5 and received[-1] == MarkPlayed("m")
        stats = stream.stats()
        emitted = 12 + stats["concealed_frames"]
        assert stats["events_dropped"] == emitted - 4
        assert [f.timestamp for f in frames] == [20 * n for n in range(emitted - 4, emitted)]
    finally:
        stream.close()
        await stream.wait_closed()
        peer.close()


# -- close ---------------------------------------------------------------------------------


async def test_close_leaves_no_task_no_socket_and_drains_the_port() -> None:
    base = free_even_base()
    clock = Clock()
    pool = RtpPortPool(base, base + 3, drain_seconds=2.0, clock=clock)
    tasks = asyncio.all_tasks()
    peer = await RtpPeer.open()
    fds = open_fds()
    config = replace(CONFIG, drain_seconds=None)  # the pool's 2 s
    call = await start(pool, config, peer=peer, remote_rtcp_port=peer.port)
    try:
        await peer.send_paced([rtp(1000 + n, voice(n)) for n in range(5)], call.ours)
        call.stream.play(AudioFrame(PCMU, voice(1) * 5))
        await peer.wait_for(lambda: len(peer.rtp()) >= 3)
        assert open_fds() == fds + 2
    finally:
        call.stream.close()
        call.stream.close()  # idempotent
        await call.stream.wait_closed()
        await call.events.task
    assert call.events.finished
    assert open_fds() == fds
    assert asyncio.all_tasks() == tasks
    assert call.stream.closed and call.stream._timer is None
    call.stream.play(AudioFrame(PCMU, voice(1)))  # late calls from the bridge are harmless
    call.stream.mark("late")
    call.stream.clear()
    # RFC 3550 §6.6: a BYE went out on the way.
    await peer.wait_for(
        lambda: any(isinstance(p, Bye) for r in peer.rtcp() for p in parse_compound(r))
    )
    assert (pool.in_use, pool.draining) == (0, 1)
    clock.now += 2.0
    assert pool.available == pool.size
    peer.close()


# -- where RTP may go ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("192.0.2.10", 4000, ("192.0.2.10", 4000)),
        ("2001:db8::1", 4000, ("2001:db8::1", 4000)),
        ("0.0.0.0", 4000, None),  # RFC 3264 §8.4 hold
        ("::", 4000, None),
        ("192.0.2.10", 0, None),  # a rejected stream
        ("media.example.com", 4000, None),  # no DNS lookups on the media path
        ("239.1.2.3", 4000, None),
        ("192.0.2.10", 70000, None),
    ],
)
def test_usable_address(host: str, port: int, expected: tuple[str, int] | None) -> None:
    assert usable_address(host, port) == expected
