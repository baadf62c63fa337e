"""``providers.agent_socket`` against real peers on loopback: websockets' own server, and a
bare TCP server for the peers that misbehave (no pong, no close, invalid UTF-8, slow
reader)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvloop
from picows import WSInvalidStatusError
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK
from websockets.http11 import Request, Response

from providers.agent_socket import AgentSocket, open_agent_socket
from tests.sip_interop.support import tls_certificate

Handler = Callable[[ServerConnection], Awaitable[None]]


async def connect(url: str, **options: Any) -> AgentSocket:
    """``open_agent_socket``, bounded as ``connect_agent`` bounds it (a failed open must
    fail the test, not hang it)."""
    async with asyncio.timeout(10):
        return await open_agent_socket(url, **options)


@asynccontextmanager
async def websockets_server(handler: Handler, **options: object) -> AsyncIterator[str]:
    async with serve(handler, "127.0.0.1", 0, **options) as server:  # type: ignore[arg-type]
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/agent"


@asynccontextmanager
async def raw_server(
    after_handshake: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """Completes the opening handshake by hand (RFC 6455 §4.2.2), then runs
    ``after_handshake`` with the socket: a peer that does whatever the test needs."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(
            hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        )
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        await writer.drain()
        try:
            await after_handshake(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/agent"


@asynccontextmanager
async def peer_sending(
    frames: bytes, **options: Any
) -> AsyncIterator[tuple[AgentSocket, asyncio.Future[bytes]]]:
    """A peer that sends ``frames`` once the handshake is done; the future gets what the
    client answers (its first 64 bytes)."""
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def send(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(frames)
        await writer.drain()
        got.set_result(await reader.read(64))

    async with raw_server(send) as url:
        yield await connect(url, **options), got


async def test_messages_both_ways_and_a_fragmented_one_arrives_whole() -> None:
    seen: list[object] = []

    async def handler(ws: ServerConnection) -> None:
        seen.append(ws.request.headers.get("User-Agent") if ws.request else None)
        seen.append(ws.request.headers.get("Authorization") if ws.request else None)
        async for message in ws:
            seen.append(message)
            await ws.send(message)
            if message == "fragments":
                await ws.send(["par", "ts ", "joined"])  # three frames, one message

    async with websockets_server(handler) as url:
        ws = await connect(url, headers={"Authorization": "Bearer k"})
        assert ws.open
        ws.write('{"type":"audio"}')
        assert await ws.recv() == '{"type":"audio"}'
        await ws.send(b"\x00\x01\xff")
        assert await ws.recv() == b"\x00\x01\xff"
        await ws.send("fragments")
        assert await ws.recv() == "fragments"
        assert await ws.recv() == "parts joined"
        await ws.close()
        assert ws.close_code == 1000
        assert not ws.open
    assert seen == ["Telepath", "Bearer k", '{"type":"audio"}', b"\x00\x01\xff", "fragments"]


async def test_the_peer_closing_hands_out_what_arrived_then_raises_with_its_code() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("last words")
        await ws.close(1011, "agent crashed")

    async with websockets_server(handler) as url:
        ws = await connect(url)
        assert await ws.recv() == "last words"
        with pytest.raises(ConnectionClosedError):
            await ws.recv()
        assert (ws.close_code, ws.close_reason) == (1011, "agent crashed")
        assert not ws.open  # what the sessions check before writing
        with pytest.raises(ConnectionClosedError):
            ws.write("too late")

    async def polite(ws: ServerConnection) -> None:
        await ws.close(1000, "bye")

    async with websockets_server(polite) as url:
        ws = await connect(url)
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()
        assert (ws.close_code, ws.close_reason) == (1000, "bye")


async def test_a_refused_handshake_carries_the_status() -> None:
    def refuse(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(401, "no key\n")

    async def handler(ws: ServerConnection) -> None:
        raise AssertionError("not reached")

    async with websockets_server(handler, process_request=refuse) as url:
        with pytest.raises(WSInvalidStatusError) as refused:
            await connect(url)
    assert refused.value.response is not None
    assert refused.value.response.status == 401
    assert refused.value.raw_body == b"no key\n"


async def test_closing_tells_the_peer_why() -> None:
    closed: asyncio.Future[tuple[int | None, str | None]] = (
        asyncio.get_running_loop().create_future()
    )

    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosedError):  # 1008 is not a normal close
            async for _ in ws:
                pass
        closed.set_result((ws.close_code, ws.close_reason))

    async with websockets_server(handler) as url:
        ws = await connect(url)
        await ws.close(1008, "protocol errors")
        assert await asyncio.wait_for(closed, 5) == (1008, "protocol errors")


async def test_a_peer_that_never_answers_pings_is_failed() -> None:
    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(4096):  # reads our pings, answers nothing
            pass

    async with raw_server(deaf) as url:
        ws = await connect(url, ping_interval=0.2, ping_timeout=0.2, close_timeout=0.2)
        started = time.monotonic()
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(ws.recv(), 5)
        assert 0.3 < time.monotonic() - started < 3
        assert ws.close_code == 1006  # no close frame came back


async def test_close_gives_up_on_a_peer_that_ignores_it() -> None:
    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(4096):
            pass

    async with raw_server(deaf) as url:
        ws = await connect(url, ping_interval=None, close_timeout=0.3)
        started = time.monotonic()
        await ws.close(1000, "done")
        assert 0.25 < time.monotonic() - started < 3


async def test_invalid_utf8_in_a_text_message_fails_the_connection_with_1007() -> None:
    bad_text = b"\x81\x02\xc3\x28"  # a text frame, unmasked (server), invalid UTF-8
    async with peer_sending(bad_text, ping_interval=None, close_timeout=0.3) as (ws, got):
        assert client_close(await asyncio.wait_for(got, 5))[0] == 1007
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(ws.recv(), 5)


def client_close(reply: bytes) -> tuple[int, bytes]:
    """The code and reason of the masked close frame (0x88) a client sent."""
    assert reply[0] == 0x88 and reply[1] & 0x80, reply
    mask, payload = reply[2:6], reply[6 : 6 + (reply[1] & 0x7F)]
    unmasked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return int.from_bytes(unmasked[:2], "big"), unmasked[2:]


@pytest.mark.parametrize(
    "frames",
    [
        b"\x82\x7e\x04\x4c" + b"\x00" * 1100,  # one binary frame of 1,100 bytes
        # A text message in two frames of 600 bytes each: each fits, the message not.
        b"\x01\x7e\x02\x58" + b"a" * 600 + b"\x80\x7e\x02\x58" + b"b" * 600,
    ],
    ids=["one-frame", "fragmented"],
)
async def test_a_message_over_max_size_fails_the_connection_with_1009(frames: bytes) -> None:
    options: dict[str, Any] = {"ping_interval": None, "close_timeout": 0.3, "max_size": 1000}
    async with peer_sending(frames, **options) as (ws, got):
        assert client_close(await asyncio.wait_for(got, 5))[0] == 1009
        with pytest.raises(ConnectionClosedError) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    # What custom_ws's session reads to tell "we refused an oversized message".
    assert closed.value.sent is not None and closed.value.sent.code == 1009
    assert closed.value.rcvd is None


async def test_a_close_without_a_code_is_answered_1000_and_reads_1005() -> None:
    """RFC 6455 §7.1.5: no code received is 1005; §7.4.1: 0 may not go on the wire."""
    no_code = b"\x88\x00"  # a close frame, no payload
    async with peer_sending(no_code, ping_interval=None, close_timeout=2) as (ws, got):
        assert client_close(await asyncio.wait_for(got, 5)) == (1000, b"")
        with pytest.raises(ConnectionClosedOK):  # websockets counts 1005 as a normal end
            await asyncio.wait_for(ws.recv(), 5)
        assert (ws.close_code, ws.close_reason) == (1005, "")


@pytest.mark.parametrize(
    "frames",
    [
        b"\x80\x02ab",  # a continuation of no message
        b"\x01\x02ab\x81\x02cd",  # a new text message before the fragmented one ended
    ],
    ids=["orphan-continuation", "interleaved"],
)
async def test_broken_fragmentation_fails_the_connection_with_1002(frames: bytes) -> None:
    """RFC 6455 §5.4, which picows leaves to its user: nothing of it is delivered."""
    async with peer_sending(frames, ping_interval=None, close_timeout=0.3) as (ws, got):
        assert client_close(await asyncio.wait_for(got, 5))[0] == 1002
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(ws.recv(), 5)


async def test_the_peers_close_is_answered_with_its_code() -> None:
    """RFC 6455 §5.5.1: a close frame is answered with one; the server then ends TCP."""
    bye = b"\x88\x05\x03\xe9bye"  # close 1001 "bye", unmasked (server)
    async with peer_sending(bye, ping_interval=None, close_timeout=2) as (ws, got):
        assert client_close(await asyncio.wait_for(got, 5)) == (1001, b"bye")
        with pytest.raises(ConnectionClosedOK):  # 1001 both ways: a normal end
            await asyncio.wait_for(ws.recv(), 5)
        assert (ws.close_code, ws.close_reason) == (1001, "bye")


async def test_send_waits_while_the_peer_does_not_read() -> None:
    start_reading = asyncio.Event()
    received = 0

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        await start_reading.wait()
        while chunk := await reader.read(65536):
            received += len(chunk)

    async with raw_server(slow) as url:
        ws: AgentSocket = await connect(url, ping_interval=None, close_timeout=0.3)
        block = b"\x00" * 65536
        for _ in range(400):  # up to 26 MB, far beyond the socket buffers
            ws.write(block)
            if ws.congested:
                break
        assert ws.congested
        waiting = asyncio.ensure_future(ws.send(block))
        await asyncio.sleep(0.1)
        assert not waiting.done()  # flow control holds the sender
        start_reading.set()
        await asyncio.wait_for(waiting, 10)
        assert not ws.congested
        await ws.close()
    assert received > 65536


async def test_a_fast_sender_is_paused_while_messages_wait_and_loses_nothing() -> None:
    """300 messages arrive while nobody reads: reading pauses once ``max_queue`` wait
    (the peer's sends then back up in TCP), resumes as they are taken, and every message
    comes out once, in order."""
    sent_all: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def flood(ws: ServerConnection) -> None:
        for n in range(300):
            await ws.send(f"{n:04d}" + "x" * 1000)
        sent_all.set_result(None)
        await ws.wait_closed()

    async with websockets_server(flood) as url:
        ws = await connect(url, max_queue=4)
        with contextlib.suppress(TimeoutError):  # it may well block on our paused reading
            await asyncio.wait_for(asyncio.shield(sent_all), 0.5)
        got = [await asyncio.wait_for(ws.recv(), 5) for _ in range(300)]
        assert [int(m[:4]) for m in got] == list(range(300))
        await asyncio.wait_for(asyncio.shield(sent_all), 5)
        await ws.close()


async def test_a_handler_takes_the_waiting_messages_first_then_each_as_it_is_parsed() -> None:
    """300 messages, sent while nobody reads: reading pauses at ``max_queue``; a handler
    set then gets the waiting ones first, reading resumes, and every later message reaches
    it inside ``data_received`` (no ``recv``), once and in order. ``None`` goes back to
    queueing for ``recv``."""
    sent_all: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    go_on = asyncio.Event()

    async def flood(ws: ServerConnection) -> None:
        for n in range(300):
            await ws.send(f"{n:04d}" + "x" * 1000)
        sent_all.set_result(None)
        await go_on.wait()
        await ws.send("after")
        await ws.wait_closed()

    async with websockets_server(flood) as url:
        ws = await connect(url, max_queue=4)
        with contextlib.suppress(TimeoutError):  # blocked on our paused reading
            await asyncio.wait_for(asyncio.shield(sent_all), 0.5)
        heard: list[str | bytes] = []
        all_heard = asyncio.Event()

        def handler(message: str | bytes) -> None:
            heard.append(message)
            if len(heard) == 300:
                all_heard.set()

        ws.set_handler(handler)
        assert len(heard) >= 4  # what waited went to the handler at once
        await asyncio.wait_for(asyncio.shield(sent_all), 5)
        await asyncio.wait_for(all_heard.wait(), 5)
        assert [int(m[:4]) for m in heard] == list(range(300))
        ws.set_handler(None)
        go_on.set()
        assert await asyncio.wait_for(ws.recv(), 5) == "after"
        assert len(heard) == 300
        await ws.close()


async def test_wss_verifies_the_server_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Agents are reached over TLS (wss://): the certificate is checked against the trust
    store (here one CA file, through OpenSSL's SSL_CERT_FILE) and the host name."""
    cert, key = tls_certificate(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with websockets_server(echo, ssl=server_context) as url:
        secure = url.replace("ws://127.0.0.1", "wss://localhost")
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect(secure)  # not trusted yet
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        ws = await connect(secure)
        await ws.send("over TLS")
        assert await ws.recv() == "over TLS"
        await ws.close()
        assert ws.close_code == 1000


ALL = [
    test_messages_both_ways_and_a_fragmented_one_arrives_whole,
    test_the_peer_closing_hands_out_what_arrived_then_raises_with_its_code,
    test_a_refused_handshake_carries_the_status,
    test_a_handler_takes_the_waiting_messages_first_then_each_as_it_is_parsed,
    test_closing_tells_the_peer_why,
    test_a_peer_that_never_answers_pings_is_failed,
    test_close_gives_up_on_a_peer_that_ignores_it,
    test_invalid_utf8_in_a_text_message_fails_the_connection_with_1007,
    test_send_waits_while_the_peer_does_not_read,
    test_a_fast_sender_is_paused_while_messages_wait_and_loses_nothing,
]


@pytest.mark.parametrize("scenario", ALL, ids=lambda f: f.__name__.removeprefix("test_"))
def test_on_uvloop(scenario: Callable[[], Awaitable[None]]) -> None:
    """Each test above again on uvloop, the gateway's loop (its transports are not
    asyncio's classes)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())  # type: ignore[arg-type]


def test_wss_on_uvloop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The TLS test on uvloop, whose TLS transport is its own."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(test_wss_verifies_the_server_certificate(tmp_path, monkeypatch))
