"""Stream framing (RFC 3261 §7.5, §18.3; RFC 5626 §3.5.1), fed whole, byte by byte, and
with trailing bytes, using baresip's recorded TCP stream."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingress.sip.errors import FramingError
from ingress.sip.events import MessageDiscarded, RequestReceived
from ingress.sip.framing import (
    NEED_DATA,
    FramerEvent,
    MessageFramed,
    PingReceived,
    PongReceived,
    StreamFramer,
)
from ingress.sip.message import Peer, Request, Response, TransportKind
from ingress.sip.parser import MessageParser, parse_message
from ingress.sip.transaction import TransactionLayer

DATA = Path(__file__).resolve().parents[2] / "data" / "sip"
STREAM = (DATA / "baresip_invite_tcp.sip").read_bytes()
SIPP = (DATA / "sipp_uac_invite.sip").read_bytes()


def drain(framer: StreamFramer) -> list[FramerEvent]:
    events: list[FramerEvent] = []
    while (event := framer.next_event()) is not NEED_DATA:
        events.append(event)
    return events


Feed = Callable[[bytes], "tuple[list[FramerEvent], StreamFramer]"]


def feed_whole(data: bytes) -> tuple[list[FramerEvent], StreamFramer]:
    framer = StreamFramer()
    framer.receive_data(data)
    return drain(framer), framer


def feed_bytewise(data: bytes) -> tuple[list[FramerEvent], StreamFramer]:
    framer = StreamFramer()
    events: list[FramerEvent] = []
    for i in range(len(data)):
        framer.receive_data(data[i : i + 1])
        events.extend(drain(framer))
    return events, framer


@pytest.mark.parametrize("feed", [feed_whole, feed_bytewise])
def test_baresip_stream_yields_its_invite(feed: Feed) -> None:
    events, _ = feed(STREAM)
    assert events == [MessageFramed(STREAM)]
    assert isinstance(events[0], MessageFramed)
    message = parse_message(events[0].data)
    assert isinstance(message, Request) and message.method == "INVITE"


def test_byte_by_byte_waits_until_the_last_body_octet() -> None:
    framer = StreamFramer()
    framer.receive_data(STREAM[:-1])
    assert framer.next_event() is NEED_DATA
    framer.receive_data(STREAM[-1:])
    assert framer.next_event() == MessageFramed(STREAM)
    assert framer.next_event() is NEED_DATA


@pytest.mark.parametrize("feed", [feed_whole, feed_bytewise])
def test_trailing_bytes_stay_for_the_next_message(feed: Feed) -> None:
    events, framer = feed(STREAM + SIPP + b"OPTIONS sip:x")
    assert events == [MessageFramed(STREAM), MessageFramed(SIPP)]
    framer.receive_data(b"@y SIP/2.0\r\nContent-Length: 0\r\n\r\n")
    [last] = drain(framer)
    assert isinstance(last, MessageFramed) and last.data.startswith(b"OPTIONS sip:x@y")


@pytest.mark.parametrize("feed", [feed_whole, feed_bytewise])
def test_keepalives_pings_and_pongs(feed: Feed) -> None:
    """RFC 5626 §3.5.1: CRLFCRLF is a ping answered by CRLF; a lone CRLF is a pong."""
    events, framer = feed(b"\r\n\r\n" + STREAM + b"\r\n" + SIPP)
    assert events == [PingReceived(), MessageFramed(STREAM), PongReceived(), MessageFramed(SIPP)]
    assert framer.data_to_send() == b"\r\n"
    assert framer.data_to_send() == b""


def test_a_lone_crlf_waits_to_know_whether_a_ping_follows() -> None:
    framer = StreamFramer()
    framer.receive_data(b"\r\n")
    assert framer.next_event() is NEED_DATA
    framer.receive_data(b"\r")
    assert framer.next_event() is NEED_DATA
    framer.receive_data(b"\n")
    assert framer.next_event() == PingReceived()


def test_folded_content_length_is_read() -> None:
    data = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length:\r\n 3\r\n\r\nabc"
    assert feed_whole(data)[0] == [MessageFramed(data)]


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n", "missing"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nl: -5\r\n\r\n", "malformed"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: five\r\n\r\n", "malformed"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1\r\nl: 1\r\n\r\n", "multiple"),
    ],
)
def test_content_length_errors_close_the_stream(head: bytes, reason: str) -> None:
    framer = StreamFramer()
    framer.receive_data(head + b"x")
    with pytest.raises(FramingError) as caught:
        framer.next_event()
    assert reason in caught.value.reason and caught.value.head == head
    assert caught.value.status_hint == 400
    # The salvaged header block still lets the caller answer before closing.
    context = MessageParser().salvage(caught.value.head)
    assert context is not None and context.is_request
    with pytest.raises(FramingError):  # and the framer stays failed
        framer.next_event()


def test_the_rfc4475_mcl01_message_on_a_stream() -> None:
    framer = StreamFramer()
    framer.receive_data(Path("/work/shared/interop/rfc4475/mcl01.dat").read_bytes())
    with pytest.raises(FramingError, match="multiple"):
        framer.next_event()


def test_size_limit_on_the_whole_message() -> None:
    framer = StreamFramer(max_message_size=len(STREAM) - 1)
    framer.receive_data(STREAM)
    with pytest.raises(FramingError) as caught:
        framer.next_event()
    assert caught.value.status_hint == 513


def test_size_limit_on_an_endless_header_block() -> None:
    framer = StreamFramer(max_message_size=1000)
    for _ in range(100):
        framer.receive_data(b"X-Junk: " + b"a" * 50 + b"\r\n")
        try:
            if framer.next_event() is not NEED_DATA:
                pytest.fail("no event expected")
        except FramingError as error:
            assert error.status_hint == 513
            return
    pytest.fail("the limit never tripped")


def test_a_stray_cr_is_a_framing_error() -> None:
    framer = StreamFramer()
    framer.receive_data(b"\rX")
    with pytest.raises(FramingError):
        framer.next_event()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=60))
def test_any_chunking_gives_the_same_messages(sizes: list[int]) -> None:
    data = b"\r\n\r\n" + STREAM + SIPP + b"\r\n" + STREAM
    framer = StreamFramer()
    events: list[FramerEvent] = []
    pos = 0
    for size in sizes * (len(data) // sum(sizes) + 1):
        framer.receive_data(data[pos : pos + size])
        pos += size
        events.extend(drain(framer))
        if pos >= len(data):
            break
    assert events == feed_whole(data)[0]
    assert [e for e in events if isinstance(e, MessageFramed)] == [
        MessageFramed(STREAM),
        MessageFramed(SIPP),
        MessageFramed(STREAM),
    ]


class TestWithTheTransactionLayer:
    """The stream path: framer → layer, as a TCP transport will wire it."""

    peer = Peer(TransportKind.TCP, "127.0.0.1", 40123)

    def test_baresip_invite_over_tcp_reaches_the_tu(self) -> None:
        layer = TransactionLayer(random=lambda n: b"\x01" * n)
        framer = StreamFramer()
        framer.receive_data(b"\r\n\r\n" + STREAM)
        for event in drain(framer):
            if isinstance(event, MessageFramed):
                layer.receive_bytes(event.data, self.peer, 0.0)
        assert framer.data_to_send() == b"\r\n"
        received = layer.next_event()
        assert isinstance(received, RequestReceived) and received.request.method == "INVITE"
        [trying] = layer.messages_to_send()
        assert trying.destination == self.peer  # same connection on a reliable transport
        assert isinstance(trying.message, Response) and trying.message.status == 100

    def test_a_framing_error_is_answered_before_closing(self) -> None:
        layer = TransactionLayer(random=lambda n: b"\x01" * n)
        framer = StreamFramer()
        framer.receive_data(STREAM.replace(b"Content-Length: 336\r\n", b""))
        with pytest.raises(FramingError) as caught:
            drain(framer)
        layer.framing_failed(caught.value, self.peer)
        [answer] = layer.messages_to_send()
        assert isinstance(answer.message, Response) and answer.message.status == 400
        assert answer.message.call_id == "1f59fb05f1c870e9"
        assert isinstance(layer.next_event(), MessageDiscarded)

    def test_an_unreadable_head_is_dropped(self) -> None:
        layer = TransactionLayer(random=lambda n: b"\x01" * n)
        layer.framing_failed(FramingError("header block too large", status_hint=513), self.peer)
        assert layer.messages_to_send() == []
        event = layer.next_event()
        assert isinstance(event, MessageDiscarded) and event.status is None
