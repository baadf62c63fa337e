"""The media listener (``--media-listen``): what only it answers, and the WebSocket rules
a carrier (or anything else) can test it with, over a real socket.

The streams themselves (calls, marks, barge-in, refused tokens) run on it in every test of
this folder through the ``gateway`` fixture's ``listener`` variant. Here: the HTTP it
answers besides the upgrade, frames no library client would send (written with
websockets' sans-I/O protocol, which leaves them as given), the closing handshake from
both ends, its stop at shutdown, and TLS.
"""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from gateway.drain import drain_calls
from gateway.server import start_media_listener
from gateway.settings import HostPort
from models import Call
from tests.ingress.media_streams.conftest import recorded_json
from tests.media_streams.conftest import (
    MEDIA_URL,
    Gateway,
    free_port,
    poll,
    stream_url_of,
    twilio_voice_form,
)
from tests.media_streams.test_twilio_stream import answered, answered_stream_url, final_call
from tests.sip_interop.support import tls_certificate

on_listener = pytest.mark.parametrize("gateway", ["listener"], indirect=True)


class FramePeer:
    """A carrier's socket driven frame by frame through websockets' sans-I/O client."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.protocol: ClientProtocol | None = None
        self.pending: list[Any] = []

    @classmethod
    async def open(cls, port: int, path: str) -> FramePeer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        peer = cls(reader, writer)
        protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}{path}"))
        peer.protocol = protocol
        protocol.send_request(protocol.connect())
        await peer._flush()
        response = await peer.next_event()
        assert isinstance(response, Response) and response.status_code == 101, response
        return peer

    async def _flush(self) -> None:
        assert self.protocol is not None
        for data in self.protocol.data_to_send():
            if data:
                self.writer.write(data)
        await self.writer.drain()

    async def send(self, frame: Frame) -> None:
        assert self.protocol is not None
        self.protocol.send_frame(frame)  # as given: no UTF-8 check, no fragment rules
        await self._flush()

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.send(Frame(Opcode.TEXT, json.dumps(message).encode()))

    async def next_event(self, within: float = 5.0) -> Any:
        """The next parsed event (the handshake response, then frames); None at EOF."""
        assert self.protocol is not None
        async with asyncio.timeout(within):
            while not self.pending:
                data = await self.reader.read(65536)
                if data:
                    self.protocol.receive_data(data)
                else:
                    self.protocol.receive_eof()
                self.pending.extend(self.protocol.events_received())
                await self._flush()  # the protocol answers a close frame by itself
                if not data and not self.pending:
                    return None
        return self.pending.pop(0)

    async def close_frame(self, within: float = 5.0) -> Close:
        """Skip to the server's close frame and return it."""
        while True:
            event = await self.next_event(within)
            assert event is not None, "the connection ended without a close frame"
            if isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
                return Close.parse(event.data)

    async def eof(self, within: float = 5.0) -> None:
        """Until the server closes TCP (the frames before it are read and dropped)."""
        while await self.next_event(within) is not None:
            pass

    def close(self) -> None:
        self.writer.close()


async def http_get(port: int, path: str, headers: str = "") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode())
    await writer.drain()
    async with asyncio.timeout(5):
        answer = await reader.read()
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def stream_path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


async def started_peer(gateway: Gateway, name: str) -> tuple[str, FramePeer]:
    """A trunk, its answered stream on a ``FramePeer``, ``connected`` and ``start`` sent."""
    trunk = await gateway.trunk(name)
    url = await answered_stream_url(gateway, trunk.trunk.id)
    connected, start, *_ = recorded_json("twilio_inbound_call.jsonl")
    peer = await FramePeer.open(gateway.stream_port, stream_path(url))
    await peer.send_json(connected)
    await peer.send_json(start)
    await answered(trunk.trunk.id)
    return trunk.trunk.id, peer


async def assert_ended_by_the_caller(trunk_id: str) -> None:
    call = await final_call(trunk_id)
    assert (call.status, call.disconnect_reason, call.blame) == ("completed", "hangup", "caller")


@on_listener
async def test_health_answer_and_what_is_not_a_stream(gateway: Gateway) -> None:
    assert await http_get(gateway.stream_port, "/healthz") == (200, b"ok")
    status, _ = await http_get(gateway.stream_port, "/v1/trunks")
    assert status == 404
    status, _ = await http_get(gateway.stream_port, "/v1/media/skype/" + "a" * 32)
    assert status == 404
    # A stream path without the upgrade headers: no WebSocket, no session.
    status, _ = await http_get(gateway.stream_port, "/v1/media/twilio/" + "a" * 32)
    assert 400 <= status < 500
    assert gateway.hub.legs == {}


async def test_a_fragmented_start_is_reassembled_and_the_call_runs(gateway: Gateway) -> None:
    trunk = await gateway.trunk("tw-fragments")
    url = await answered_stream_url(gateway, trunk.trunk.id)
    connected, start, *media, stop = recorded_json("twilio_inbound_call.jsonl")
    peer = await FramePeer.open(gateway.stream_port, stream_path(url))
    try:
        await peer.send_json(connected)
        text = json.dumps(start).encode()
        thirds = len(text) // 3
        await peer.send(Frame(Opcode.TEXT, text[:thirds], fin=False))
        await peer.send(Frame(Opcode.CONT, text[thirds : 2 * thirds], fin=False))
        await peer.send(Frame(Opcode.CONT, text[2 * thirds :], fin=True))
        await answered(trunk.trunk.id)
        for message in media[:10]:
            await peer.send_json(message)
        # The echo agent's audio comes back as media messages on the same socket.
        while True:
            event = await peer.next_event()
            assert isinstance(event, Frame), event
            if event.opcode is Opcode.TEXT and json.loads(bytes(event.data))["event"] == "media":
                break
        await peer.send_json(stop)
        assert (await peer.close_frame()).code == 1000
        await peer.eof()
    finally:
        peer.close()
    await assert_ended_by_the_caller(trunk.trunk.id)


@on_listener  # Hypercorn's route drops the connection without a close frame
async def test_invalid_utf8_in_a_text_message_fails_the_stream_1007(gateway: Gateway) -> None:
    trunk_id, peer = await started_peer(gateway, "tw-utf8")
    try:
        await peer.send(Frame(Opcode.TEXT, b'{"event": "media", "x": "\xff\xfe"}'))
        # RFC 6455 §8.1: invalid UTF-8 in a text message fails the connection with 1007.
        assert (await peer.close_frame()).code == 1007
        await peer.eof()
    finally:
        peer.close()
    await assert_ended_by_the_caller(trunk_id)


@on_listener
async def test_an_oversized_message_is_refused_1009(gateway: Gateway) -> None:
    trunk = await gateway.trunk("tw-big")
    url = await answered_stream_url(gateway, trunk.trunk.id)
    peer = await FramePeer.open(gateway.stream_port, stream_path(url))
    try:
        await peer.send(Frame(Opcode.TEXT, b"x" * (64 * 1024 + 1)))
        assert (await peer.close_frame()).code == 1009
        await peer.eof()
    finally:
        peer.close()
    assert gateway.hub.legs == {}
    # The stream never started: the call is not left ringing forever (the status callback
    # or the token's expiry ends it), and no session is left running on the listener.
    assert gateway.listener is not None
    await poll(lambda: not gateway.listener._sessions)  # noqa: SLF001 - its only trace


@on_listener
async def test_a_continuation_of_no_message_fails_the_stream_1002(gateway: Gateway) -> None:
    trunk = await gateway.trunk("tw-cont")
    url = await answered_stream_url(gateway, trunk.trunk.id)
    peer = await FramePeer.open(gateway.stream_port, stream_path(url))
    try:
        await peer.send(Frame(Opcode.CONT, b"orphan", fin=True))
        assert (await peer.close_frame()).code == 1002  # RFC 6455 §5.4
        await peer.eof()
    finally:
        peer.close()


async def test_the_carrier_closing_ends_the_call_and_the_server_closes_tcp(
    gateway: Gateway,
) -> None:
    trunk_id, peer = await started_peer(gateway, "tw-close")
    try:
        assert peer.protocol is not None
        peer.protocol.send_close(1000, "bye")
        await peer._flush()  # noqa: SLF001
        # The close is answered with the same code, then TCP is closed by the server
        # (RFC 6455 §7.1.1), not left for the carrier to time out.
        assert (await peer.close_frame()).code == 1000
        await peer.eof()
    finally:
        peer.close()
    await assert_ended_by_the_caller(trunk_id)


@on_listener
async def test_shutdown_drains_then_stops_the_listener(gateway: Gateway) -> None:
    """As ``run_server`` shuts down: the drain ends the calls (reason ``shutdown``), then
    the listener stops; the carrier sees a normal close and the record is complete."""
    trunk = await gateway.trunk("tw-stop")
    url = await answered_stream_url(gateway, trunk.trunk.id)
    connected, start, *_ = recorded_json("twilio_inbound_call.jsonl")
    async with gateway.stream(url) as carrier:
        await carrier.send(connected)
        await carrier.send(start)
        await answered(trunk.trunk.id)
        services = gateway.services
        await drain_calls(services.drain, services.runner, deadline_s=0.0)
        assert gateway.listener is not None
        await gateway.listener.stop(5.0)
        await carrier.wait_closed()
        assert carrier.close_code == 1000
    call = await final_call(trunk.trunk.id)
    assert (call.status, call.disconnect_reason, call.blame) == ("completed", "shutdown", "system")
    assert gateway.hub.legs == {}
    with pytest.raises(OSError):  # stopped: the port takes no new connection
        await asyncio.open_connection("127.0.0.1", gateway.stream_port)


@on_listener
async def test_stop_cuts_streams_that_outlive_the_grace(gateway: Gateway) -> None:
    """A session still running after the grace (no drain ran) is cancelled; its call
    still gets a complete record and the carrier a close frame."""
    trunk = await gateway.trunk("tw-cut")
    url = await answered_stream_url(gateway, trunk.trunk.id)
    connected, start, *_ = recorded_json("twilio_inbound_call.jsonl")
    async with gateway.stream(url) as carrier:
        await carrier.send(connected)
        await carrier.send(start)
        await answered(trunk.trunk.id)
        assert gateway.listener is not None
        await gateway.listener.stop(0.2)
        await carrier.wait_closed()
        assert carrier.close_code == 1000
    call = await final_call(trunk.trunk.id)
    assert call.status == "completed" and call.end_time is not None
    assert gateway.hub.legs == {}


@on_listener
async def test_with_http_tls_the_listener_serves_wss(gateway: Gateway, tmp_path: Path) -> None:
    cert, key = tls_certificate(tmp_path)
    settings = replace(
        gateway.services.settings,
        http_tls=True,
        tls_cert=cert,
        tls_key=key,
        media_listen=HostPort("127.0.0.1", free_port()),
    )
    assert gateway.app is not None
    listener = await start_media_listener(settings, gateway.app, gateway.services)
    assert listener is not None
    try:
        port = listener.addresses[0][1]
        client = ssl.create_default_context(cafile=str(cert))
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        async with asyncio.timeout(5):
            answer = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"ok")
        # Plain TCP to a TLS port gets no HTTP answer.
        assert (await http_get_or_none(port)) is None
    finally:
        await listener.stop(1.0)


async def http_get_or_none(port: int) -> int | None:
    try:
        return (await http_get(port, "/healthz"))[0]
    except (ValueError, IndexError, ConnectionError):
        return None


@on_listener
async def test_a_taken_port_is_reported_and_the_gateway_goes_on(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = replace(
        gateway.services.settings, media_listen=HostPort("127.0.0.1", gateway.stream_port)
    )
    assert gateway.app is not None
    assert await start_media_listener(settings, gateway.app, gateway.services) is None
    assert f"media-stream listener 127.0.0.1:{gateway.stream_port} not started" in (
        capsys.readouterr().err
    )


@on_listener
async def test_ten_streams_at_once_each_with_its_own_call_and_record(gateway: Gateway) -> None:
    trunk = await gateway.trunk("tw-many")
    connected, start, *_, stop = recorded_json("twilio_inbound_call.jsonl")
    peers: list[FramePeer] = []
    try:
        for i in range(10):
            call_sid = f"CA{i:032d}"
            form = twilio_voice_form(call_sid)
            response = await gateway.twilio_post("voice", trunk.trunk.id, form)
            url = stream_url_of(response.text)
            peer = await FramePeer.open(gateway.stream_port, stream_path(url))
            peers.append(peer)
            await peer.send_json(connected)
            await peer.send_json({**start, "start": {**start["start"], "callSid": call_sid}})
        await poll(lambda: len(gateway.hub.legs) == 10)
        for i, peer in enumerate(peers):
            await peer.send_json({**stop, "stop": {**stop["stop"], "callSid": f"CA{i:032d}"}})
        for peer in peers:
            assert (await peer.close_frame()).code == 1000
    finally:
        for peer in peers:
            peer.close()
    await poll(lambda: not gateway.hub.legs)
    async with asyncio.timeout(5):
        while True:
            calls = await Call.filter(trunk_id=trunk.trunk.id)
            if len(calls) == 10 and all(c.status == "completed" for c in calls):
                break
            await asyncio.sleep(0.02)
    assert sorted(c.sip_call_id for c in calls) == [f"CA{i:032d}" for i in range(10)]


@pytest.mark.slow
def test_a_live_node_serves_streams_on_the_listener_and_drains_them(tmp_path: Path) -> None:
    """``telepath serve --media-listen``: the TwiML names ``--media-url``, the stream runs
    on the listener, and SIGTERM drains it like a SIP call: the call goes on until the
    second signal, then ends with reason ``shutdown`` and the carrier sees a normal close
    before the process exits."""
    from twilio.request_validator import RequestValidator
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect as sync_connect

    from tests.media_streams.conftest import TWILIO_TOKEN
    from tests.scaleout.test_drain import _calls
    from tests.sip_interop.support import free_udp_port, rtp_range
    from tests.support.live_server import live_server

    media_port = free_port()
    low, high = rtp_range(40)
    args = [
        *("--sip", f"127.0.0.1:{free_udp_port()}", "--rtp-ports", f"{low}-{high}"),
        *("--public-url", "https://gw.example.test"),
        *("--media-listen", f"127.0.0.1:{media_port}", "--media-url", MEDIA_URL),
        *("--drain-timeout", "600"),
    ]
    with live_server(f"sqlite://{tmp_path / 'telepath.db'}", args=args) as server:
        api = server.session(server.api_key())
        body: dict[str, Any] = {
            "name": "streams",
            "ai_provider": "echo",
            "sip_username": "streams",
            "twilio_auth_token": TWILIO_TOKEN,
            "provider_config": {"delay_ms": 0},
        }
        created = api.post(server.url + "/v1/trunks", json=body, timeout=10)
        assert created.status_code == 201, created.text
        trunk_id = created.json()["id"]
        path = f"/v1/carriers/twilio/voice/{trunk_id}"
        form = twilio_voice_form()
        signature = RequestValidator(TWILIO_TOKEN).compute_signature(
            "https://gw.example.test" + path, form
        )
        answer = api.post(
            server.url + path, data=form, headers={"X-Twilio-Signature": signature}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        url = stream_url_of(answer.text)
        assert url.startswith(f"{MEDIA_URL}/v1/media/twilio/")
        connected, start, *media, _ = recorded_json("twilio_inbound_call.jsonl")
        with sync_connect(f"ws://127.0.0.1:{media_port}{stream_path(url)}") as ws:
            ws.send(json.dumps(connected))
            ws.send(json.dumps(start))
            deadline = time.monotonic() + 10  # answered: caller audio before it is dropped
            while (
                api.get(server.url + "/v1/calls", timeout=10).json()["data"][0]["status"]
                != "in-progress"
            ):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            for message in media:
                ws.send(json.dumps(message))
            echoed = json.loads(ws.recv(timeout=10))  # the echo agent's audio comes back
            assert echoed["event"] in ("media", "mark"), echoed

            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert server.process.poll() is None  # the call keeps the node up
            ws.send(json.dumps(media[0]))  # and its stream still takes audio

            server.process.send_signal(signal.SIGTERM)  # hurry: the call ends now
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.recv(timeout=20)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
        assert server.process.wait(timeout=30) == 0
    assert _calls(tmp_path / "telepath.db") == [("completed", "shutdown", "system", True)]
