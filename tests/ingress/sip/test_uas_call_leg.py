"""``SipCallLeg`` over real loopback sockets: the SIP endpoint, the UAS core, a bound RTP
socket pair and the RTP media stream, with the test playing the caller (UDP SIP + RTP).

Covers answer (200 with the SDP answer, then RTP both ways), INFO DTMF, the caller's BYE,
CANCEL, our BYE on an RTP timeout, and reject with a ``Reason`` header.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from ingress.sip.call import SipCallLeg
from ingress.sip.message import TransportKind
from ingress.sip.offer_answer import SdpSession
from ingress.sip.rtp.packet import RtpPacket
from ingress.sip.transport.endpoint import SipEndpoint
from ingress.sip.transport.media import MediaConfig
from ingress.sip.transport.port_pool import RtpPortPool
from ingress.sip.transport.rtp import open_rtp_socket_pair
from ingress.sip.uas import UasConfig, UserAgentServer
from ingress.sip.uas_events import CallOffered, UasEvent
from media import AudioFrame, Blame, CallContext, CallEnd, DisconnectReason
from media.frames import DtmfDigit, LegEnded
from tests.ingress.sip.transport.rtp_peer import free_even_base


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.queue.put_nowait(data)


@dataclass
class Caller:
    """The test's SIP UA (UDP) and RTP socket."""

    sip: asyncio.DatagramTransport
    sip_in: _Datagrams
    rtp: asyncio.DatagramTransport
    rtp_in: _Datagrams
    server: tuple[str, int]
    sent_invite: str = ""
    to_tag: str = ""
    log: list[str] = field(default_factory=list)

    @property
    def sip_port(self) -> int:
        return int(self.sip.get_extra_info("sockname")[1])

    @property
    def rtp_port(self) -> int:
        return int(self.rtp.get_extra_info("sockname")[1])

    def invite(self, call_id: str) -> None:
        body = (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {self.rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n"
        )
        self.sent_invite = (
            f"INVITE sip:agent@127.0.0.1:{self.server[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.sip_port};branch=z9hG4bK{call_id};rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:+15550001111@127.0.0.1>;tag=caller1\r\n"
            f"To: <sip:agent@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 10 INVITE\r\n"
            f"Contact: <sip:caller@127.0.0.1:{self.sip_port}>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        )
        self.sip.sendto(self.sent_invite.encode(), self.server)

    def request(self, method: str, seq: int, body: str = "", content_type: str = "") -> None:
        call_id = re.search(r"Call-ID: (\S+)", self.sent_invite)
        assert call_id is not None
        lines = [
            f"{method} sip:telepath@127.0.0.1:{self.server[1]} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.sip_port};branch=z9hG4bK{method}{seq};rport",
            "Max-Forwards: 70",
            "From: <sip:+15550001111@127.0.0.1>;tag=caller1",
            f"To: <sip:agent@127.0.0.1>;tag={self.to_tag}",
            f"Call-ID: {call_id.group(1)}",
            f"CSeq: {seq} {method}",
        ]
        if body:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
        self.sip.sendto(("\r\n".join(lines) + "\r\n\r\n" + body).encode(), self.server)

    async def expect(self, start: str, wait: float = 3.0) -> str:
        while True:
            data = (await asyncio.wait_for(self.sip_in.queue.get(), wait)).decode()
            self.log.append(data)
            if data.startswith(start):
                tag = re.search(r"^To: .*;tag=([^;\r\n>]+)", data, re.MULTILINE)
                if tag and not self.to_tag:
                    self.to_tag = tag.group(1)
                return data


@dataclass
class Rig:
    endpoint: SipEndpoint
    caller: Caller
    pool: RtpPortPool
    legs: dict[str, SipCallLeg]
    offered: asyncio.Queue[CallOffered]


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    loop = asyncio.get_running_loop()
    legs: dict[str, SipCallLeg] = {}
    offered: asyncio.Queue[CallOffered] = asyncio.Queue()

    def on_event(event: UasEvent) -> None:
        if isinstance(event, CallOffered):
            offered.put_nowait(event)
        elif event.call in legs:
            legs[event.call].on_signal(event)

    uas = UserAgentServer(
        UasConfig(public_address="127.0.0.1", ports={TransportKind.UDP: 0}),
        random=secrets.token_bytes,
    )
    endpoint = SipEndpoint(uas, on_event=on_event)
    await endpoint.start(udp=("127.0.0.1", 0))
    base = free_even_base(10)
    pool = RtpPortPool(base, base + 9, drain_seconds=0.0)
    sip, sip_in = await loop.create_datagram_endpoint(_Datagrams, local_addr=("127.0.0.1", 0))
    rtp, rtp_in = await loop.create_datagram_endpoint(_Datagrams, local_addr=("127.0.0.1", 0))
    caller = Caller(sip, sip_in, rtp, rtp_in, endpoint.addresses[TransportKind.UDP])
    yield Rig(endpoint, caller, pool, legs, offered)
    sip.close()
    rtp.close()
    await endpoint.close()


async def make_leg(rig: Rig, media_timeout: float = 30.0) -> SipCallLeg:
    rig.caller.invite(secrets.token_hex(4))
    await rig.caller.expect("SIP/2.0 100")
    offered = await asyncio.wait_for(rig.offered.get(), 2)
    sockets = await open_rtp_socket_pair(rig.pool, "127.0.0.1")
    session = SdpSession("127.0.0.1", sockets.port, rand_bits=secrets.randbits)
    uas = rig.endpoint.uas
    media = rig.endpoint.act(lambda now: uas.set_offer(offered.call, session))
    assert media is not None
    rig.endpoint.act(lambda now: uas.ring(offered.call, now))
    context = CallContext("call_test", "trunk_test", "sip-id", "+15550001111", "agent")
    leg = SipCallLeg(
        endpoint=rig.endpoint,
        call=offered.call,
        context=context,
        media=media,
        audio_format=media.codec,
        sockets=sockets,
        media_config=MediaConfig(media_timeout=media_timeout, drain_seconds=0.0),
    )
    rig.legs[offered.call] = leg
    return leg


async def next_event(events: AsyncIterator[object], kind: type, wait: float = 3.0) -> object:
    async def find() -> object:
        async for event in events:
            if isinstance(event, kind):
                return event
        raise AssertionError(f"stream ended before {kind.__name__}")

    return await asyncio.wait_for(find(), wait)


def rtp_packet(seq: int, payload: bytes = b"\xff" * 160) -> bytes:
    return bytes(RtpPacket(0, seq, seq * 160, 0x1234, payload))


async def test_answer_media_dtmf_and_caller_bye(rig: Rig) -> None:
    leg = await make_leg(rig)
    await rig.caller.expect("SIP/2.0 180")
    await leg.answer()
    ok = await rig.caller.expect("SIP/2.0 200")
    port = int(re.search(r"m=audio (\d+)", ok).group(1))  # type: ignore[union-attr]
    rig.caller.request("ACK", 10)
    events = leg.events()
    for seq in range(1, 8):
        rig.caller.rtp.sendto(rtp_packet(seq), ("127.0.0.1", port))
        await asyncio.sleep(0.02)
    frame = await next_event(events, AudioFrame)
    assert isinstance(frame, AudioFrame) and frame.payload == b"\xff" * 160
    leg.play(AudioFrame(leg.format, b"\x00" * 160, 0))
    heard = RtpPacket.parse(await asyncio.wait_for(rig.caller.rtp_in.queue.get(), 2))
    assert heard.payload_type == 0
    rig.caller.request("INFO", 11, "Signal=7\r\nDuration=200\r\n", "application/dtmf-relay")
    await rig.caller.expect("SIP/2.0 200")
    digit = await next_event(events, DtmfDigit)
    assert digit == DtmfDigit("7", 200)
    rig.caller.request("BYE", 12)
    await rig.caller.expect("SIP/2.0 200")
    ended = await next_event(events, LegEnded)
    assert isinstance(ended, LegEnded)
    assert ended.end.reason is DisconnectReason.HANGUP and ended.end.blame is Blame.CALLER
    assert leg.media_stats()["packets_received"] == 7


async def test_rtp_timeout_sends_bye(rig: Rig) -> None:
    leg = await make_leg(rig, media_timeout=0.6)
    await leg.answer()
    await rig.caller.expect("SIP/2.0 200")
    rig.caller.request("ACK", 10)
    ended = await next_event(leg.events(), LegEnded, wait=5)
    assert isinstance(ended, LegEnded) and ended.end.reason is DisconnectReason.RTP_TIMEOUT
    bye = await rig.caller.expect("BYE ")
    assert 'Reason: SIP;cause=408;text="RTP timeout"' in bye
    assert "To: <sip:+15550001111@127.0.0.1>;tag=caller1" in bye


async def test_reject_sends_503_with_reason(rig: Rig) -> None:
    leg = await make_leg(rig)
    await rig.caller.expect("SIP/2.0 180")
    end = CallEnd(DisconnectReason.AGENT_UNREACHABLE, Blame.AI_AGENT, "Agent not ready in 5 s", 503)
    await leg.reject(end)
    refusal = await rig.caller.expect("SIP/2.0 503")
    assert 'Reason: SIP;cause=503;text="Agent not ready in 5 s"' in refusal
    assert "Retry-After: 5" in refusal


async def test_cancel_ends_the_leg(rig: Rig) -> None:
    leg = await make_leg(rig)
    await rig.caller.expect("SIP/2.0 180")
    cancel = rig.caller.sent_invite.split("\r\n\r\n")[0]
    cancel = cancel.replace("INVITE sip:", "CANCEL sip:", 1).replace(
        "CSeq: 10 INVITE", "CSeq: 10 CANCEL"
    )
    cancel = "\r\n".join(
        ln for ln in cancel.split("\r\n") if not ln.startswith(("Content-", "Contact"))
    )
    rig.caller.sip.sendto((cancel + "\r\nContent-Length: 0\r\n\r\n").encode(), rig.caller.server)
    await rig.caller.expect("SIP/2.0 487")
    ended = await next_event(leg.events(), LegEnded)
    assert isinstance(ended, LegEnded) and ended.end.reason is DisconnectReason.CANCEL
    await leg.answer()  # the bridge may still try: nothing is sent
    await leg.hangup(CallEnd.caller_hangup())
    await asyncio.sleep(0.1)
    assert not [d for d in rig.caller.log if d.startswith("SIP/2.0 200 OK") and "INVITE" in d]


async def test_timeline_notes_reinvites_info_dtmf_and_bye_with_their_moments(rig: Rig) -> None:
    leg = await make_leg(rig)
    await rig.caller.expect("SIP/2.0 180")
    await leg.answer()
    await rig.caller.expect("SIP/2.0 200")
    rig.caller.request("ACK", 10)
    hold = (
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {rig.caller.rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n"
    )
    rig.caller.request("INVITE", 11, hold, "application/sdp")
    assert "a=recvonly" in await rig.caller.expect("SIP/2.0 200")
    rig.caller.request("ACK", 11)
    rig.caller.request("INFO", 12, "Signal=5\r\nDuration=160\r\n", "application/dtmf-relay")
    await rig.caller.expect("SIP/2.0 200")
    rig.caller.request("BYE", 13)
    await rig.caller.expect("SIP/2.0 200")
    await next_event(leg.events(), LegEnded)
    timeline = leg.timeline()
    names = [name for name, _ in timeline]
    assert names == ["ack", "reinvite", "dtmf_info", "bye_received"], timeline
    reinvite = timeline[1][1]
    assert reinvite["hold"] is True and reinvite["direction"] == "recvonly"
    assert timeline[2][1]["digit"] == "5"
    moments = [detail["at"] for _, detail in timeline]
    loop_now = asyncio.get_running_loop().time()
    assert all(isinstance(m, float) and m <= loop_now for m in moments)
    assert moments == sorted(moments)
    timeline.clear()  # a copy: the leg's own record is untouched
    assert len(leg.timeline()) == 4
