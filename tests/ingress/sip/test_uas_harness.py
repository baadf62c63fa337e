"""A virtual-time harness around ``UserAgentServer`` for the UAS tests (no tests here).

It plays the caller: feeds recorded or built messages as bytes, parses what the core
sends back, and keeps the core's events. Time only moves when the test says so
(``advance``), firing every timer due on the way, as the asyncio pump would.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ingress.sip.errors import SipParseError
from ingress.sip.message import Peer, Request, Response, TransportKind
from ingress.sip.offer_answer import SdpSession
from ingress.sip.parser import parse_message
from ingress.sip.uas import UasConfig, UserAgentServer
from ingress.sip.uas_events import CallOffered, UasEvent

E = TypeVar("E", bound=UasEvent)
T = TypeVar("T")
DATA = Path(__file__).resolve().parents[2] / "data" / "sip"
UDP_PEER = Peer(TransportKind.UDP, "198.51.100.40", 5060)
TCP_PEER = Peer(TransportKind.TCP, "198.51.100.50", 41234)


def counter_random() -> Callable[[int], bytes]:
    counter = itertools.count(1)

    def random(n: int) -> bytes:
        return next(counter).to_bytes(n, "big")

    return random


def recorded(name: str) -> bytes:
    return (DATA / name).read_bytes()


@dataclass
class Sent:
    message: Request | Response
    destination: Peer


@dataclass
class Harness:
    transport: TransportKind = TransportKind.UDP
    now: float = 1000.0
    sent: list[Sent] = field(default_factory=list)
    events: list[UasEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.uas = UserAgentServer(
            UasConfig(
                public_address="203.0.113.10",
                ports={TransportKind.UDP: 5060, TransportKind.TCP: 5060, TransportKind.TLS: 5061},
            ),
            random=counter_random(),
        )

    # -- driving ---------------------------------------------------------------------
    def feed(self, data: bytes | str, source: Peer = UDP_PEER) -> None:
        raw = data.encode() if isinstance(data, str) else data
        self.uas.receive_bytes(raw, source, self.now)
        self._drain()

    def act(self, decision: Callable[[float], T]) -> T:
        result = decision(self.now)
        self._drain()
        return result

    def advance(self, seconds: float) -> None:
        """Move virtual time, firing every timer on the way (as the asyncio pump does)."""
        end = self.now + seconds
        while True:
            deadline = self.uas.get_timer()
            if deadline is None or deadline > end:
                break
            self.now = max(self.now, deadline)
            self.uas.handle_timer(self.now)
            self._drain()
        self.now = end

    def _drain(self) -> None:
        for out in self.uas.messages_to_send():
            data = out.message.serialise()  # must always serialise
            try:
                message = parse_message(data)  # what the peer would read
            except SipParseError:
                # An error response copies the broken headers it answers (RFC 3261 §8.2.6);
                # so does the 100 Trying the INVITE transaction sends before the UAS
                # checks the headers (e.g. a request without CSeq: 100, then 400).
                assert isinstance(out.message, Response)
                assert out.message.status == 100 or out.message.status >= 400
                message = out.message
            self.sent.append(Sent(message, out.destination))
        while (event := self.uas.next_event()) is not None:
            self.events.append(event)

    # -- reading ---------------------------------------------------------------------
    def take(self) -> list[Request | Response]:
        out = [s.message for s in self.sent]
        self.sent.clear()
        return out

    def responses(self) -> list[Response]:
        return [m for m in self.take() if isinstance(m, Response)]

    def statuses(self) -> list[int]:
        return [r.status for r in self.responses()]

    def offered(self) -> CallOffered:
        found = [e for e in self.events if isinstance(e, CallOffered)]
        assert found, self.events
        return found[-1]

    def of_type(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    # -- a whole answered call ---------------------------------------------------------
    def answered_call(self, invite: bytes, source: Peer = UDP_PEER) -> tuple[str, Response]:
        """Feed ``invite``, negotiate, ring and answer; returns (call, the 200 OK)."""
        self.feed(invite, source)
        call = self.offered().call
        session = SdpSession("203.0.113.10", 30000, rand_bits=lambda k: 7)
        self.act(lambda now: self.uas.set_offer(call, session))
        self.act(lambda now: self.uas.ring(call, now))
        self.act(lambda now: self.uas.answer(call, now))
        ok = [r for r in self.responses() if r.status == 200]
        assert len(ok) == 1
        return call, ok[0]


def ack_for(invite: bytes, ok: Response, *, branch: str = "z9hG4bKack1", body: str = "") -> str:
    """The caller's ACK for our 2xx (new branch, To with our tag, §13.2.2.4)."""
    request = parse_message(invite)
    assert isinstance(request, Request)
    via = request.headers.get("Via") or ""
    via = re.sub(r"branch=[^;,\s]+", f"branch={branch}", via)
    cseq = request.cseq
    assert cseq is not None
    lines = [
        f"ACK {ok.contacts[0].uri} SIP/2.0",
        f"Via: {via}",
        "Max-Forwards: 70",
        f"From: {request.headers.get('From')}",
        f"To: {ok.headers.get('To')}",
        f"Call-ID: {request.call_id}",
        f"CSeq: {cseq.seq} ACK",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body.encode())}")
    return "\r\n".join(lines) + "\r\n\r\n" + body


def in_dialog(
    invite: bytes,
    ok: Response,
    method: str,
    seq: int,
    *,
    branch: str,
    extra: tuple[str, ...] = (),
    body: str = "",
    content_type: str = "application/sdp",
    to_tag: str | None = None,
) -> str:
    """A request from the caller inside the dialog our 2xx created."""
    request = parse_message(invite)
    assert isinstance(request, Request)
    via = re.sub(r"branch=[^;,\s]+", f"branch={branch}", request.headers.get("Via") or "")
    to = ok.headers.get("To") or ""
    if to_tag is not None:
        to = re.sub(r"tag=[^;>\s]+", f"tag={to_tag}", to)
    lines = [
        f"{method} {ok.contacts[0].uri} SIP/2.0",
        f"Via: {via}",
        "Max-Forwards: 70",
        f"From: {request.headers.get('From')}",
        f"To: {to}",
        f"Call-ID: {request.call_id}",
        f"CSeq: {seq} {method}",
        f"Contact: {request.headers.get('Contact')}",
        *extra,
    ]
    if body:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body.encode())}")
    return "\r\n".join(lines) + "\r\n\r\n" + body


def sdp(direction: str = "sendrecv", port: int = 12042, codecs: str = "0 101") -> str:
    return (
        "v=0\r\no=- 1 2 IN IP4 198.51.100.40\r\ns=-\r\nc=IN IP4 198.51.100.40\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {codecs}\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        f"a={direction}\r\n"
    )
