"""A loopback stand-in for ElevenLabs' Agents Platform, speaking the real protocol.

``FakeElevenLabs`` serves ``/v1/convai/conversation?agent_id=…`` over WebSocket and, like
the service (shared/protocols/providers.md §2.1-§2.6): refuses an unknown agent, or a private
agent without a valid ``conversation_signature``, with 403 in the handshake; expects
``conversation_initiation_client_data`` as the first message (else closes 1008) and
answers it with ``conversation_initiation_metadata`` carrying the agent's formats. The rest
is scripted by the test through ``FakeConvaiConnection``, which records what the gateway
sent (``user_audio_chunk`` decoded into ``audio``; every other message with its arrival
time).

``FakeElevenLabsApi`` is the REST side: a tiny HTTP/1.1 server on loopback answering
``GET /v1/convai/conversation/get-signed-url`` when ``xi-api-key`` matches.
"""

from __future__ import annotations

import asyncio
import base64
import json
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

SIGNATURE = "sig_4f1c2a"

# --- server events as ElevenLabs sends them (AsyncAPI field names) ---


def initiation_metadata(
    user_format: str = "ulaw_8000", agent_format: str = "ulaw_8000"
) -> dict[str, Any]:
    return {
        "type": "conversation_initiation_metadata",
        "conversation_initiation_metadata_event": {
            "conversation_id": "conv_01jx8m2k3n4p",
            "agent_output_audio_format": agent_format,
            "user_input_audio_format": user_format,
        },
    }


def audio(event_id: int, payload: bytes) -> dict[str, Any]:
    return {
        "type": "audio",
        "audio_event": {"audio_base_64": base64.b64encode(payload).decode(), "event_id": event_id},
    }


def interruption(event_id: int) -> dict[str, Any]:
    return {"type": "interruption", "interruption_event": {"event_id": event_id}}


def ping(event_id: int, ping_ms: int | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"event_id": event_id}
    if ping_ms is not None:
        event["ping_ms"] = ping_ms
    return {"type": "ping", "ping_event": event}


def client_tool_call(name: str, call_id: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "client_tool_call",
        "client_tool_call": {"tool_name": name, "tool_call_id": call_id, "parameters": parameters},
    }


class FakeConvaiConnection:
    """One accepted gateway connection, as the test sees it."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.path = ws.request.path if ws.request else ""
        self.query = parse_qs(urlsplit(self.path).query)
        self.initiation: dict[str, Any] = {}
        self.messages: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        self.audio = bytearray()
        self.audio_arrived = asyncio.Event()

    async def next_message(self, within: float = 2.0) -> dict[str, Any]:
        return (await self.next_timed(within))[1]

    async def next_timed(self, within: float = 2.0) -> tuple[float, dict[str, Any]]:
        """The next non-audio message and the loop time it arrived at."""
        return await asyncio.wait_for(self.messages.get(), within)

    async def send(self, event: dict[str, Any] | str) -> None:
        await self.ws.send(event if isinstance(event, str) else json.dumps(event))

    async def wait_audio(self, size: int, within: float = 2.0) -> bytes:
        async with asyncio.timeout(within):
            while len(self.audio) < size:
                self.audio_arrived.clear()
                await self.audio_arrived.wait()
        return bytes(self.audio)


class FakeElevenLabs:
    """The conversation WebSocket. ``async with FakeElevenLabs() as fake: fake.url …``."""

    def __init__(
        self,
        *,
        agent_id: str = "agent_7401k2",
        private: bool = False,
        user_format: str = "ulaw_8000",
        agent_format: str = "ulaw_8000",
        send_metadata: bool = True,
    ) -> None:
        self.agent_id = agent_id
        self.private = private
        self.user_format = user_format
        self.agent_format = agent_format
        self.send_metadata = send_metadata
        self.refuse_overrides = False
        self.pings_before_metadata = 0
        self.connections: asyncio.Queue[FakeConvaiConnection] = asyncio.Queue()
        self._server: Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/v1/convai/conversation"

    async def __aenter__(self) -> FakeElevenLabs:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, process_request=self._check, compression=None
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def accepted(self, within: float = 2.0) -> FakeConvaiConnection:
        return await asyncio.wait_for(self.connections.get(), within)

    def _check(self, ws: ServerConnection, request: Request) -> Response | None:
        query = parse_qs(urlsplit(request.path).query)
        if query.get("agent_id") != [self.agent_id]:
            return ws.respond(HTTPStatus.NOT_FOUND, "agent not found")
        if self.private and query.get("conversation_signature") != [SIGNATURE]:
            return ws.respond(HTTPStatus.FORBIDDEN, "agent requires authentication")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        conn = FakeConvaiConnection(ws)
        self.connections.put_nowait(conn)
        loop = asyncio.get_running_loop()
        try:
            first = json.loads(await ws.recv())
            if first.get("type") != "conversation_initiation_client_data":
                await ws.close(1008, "Invalid message received")
                return
            conn.initiation = first
            if self.refuse_overrides and "conversation_config_override" in first:
                await ws.close(1008, "Override for field 'first_message' is not allowed by config.")
                return
            for i in range(self.pings_before_metadata):
                await conn.send(ping(100 + i))
            if self.send_metadata:
                await conn.send(initiation_metadata(self.user_format, self.agent_format))
            async for raw in ws:
                message = json.loads(raw)
                if "user_audio_chunk" in message:
                    conn.audio += base64.b64decode(message["user_audio_chunk"], validate=True)
                    conn.audio_arrived.set()
                    continue
                conn.messages.put_nowait((loop.time(), message))
        except ConnectionClosed:
            pass


class FakeElevenLabsApi:
    """The REST endpoint for signed URLs, on a tiny loopback HTTP/1.1 server."""

    def __init__(self, *, api_key: str, agent_id: str, signed_base: str) -> None:
        self.api_key = api_key
        self.agent_id = agent_id
        self.signed_base = signed_base
        self.status: int | None = None  # force an error status
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> FakeElevenLabsApi:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode("latin-1").strip()
            headers: dict[str, str] = {}
            while line := (await reader.readline()).decode("latin-1").strip():
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            method, target, _ = request_line.split(" ", 2)
            self.requests.append((f"{method} {target}", headers))
            parts = urlsplit(target)
            status, body = self._answer(method, parts.path, parse_qs(parts.query), headers)
            payload = json.dumps(body).encode()
            writer.write(
                f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        finally:
            writer.close()

    def _answer(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        if self.status is not None:
            return self.status, {"detail": {"status": "forced", "message": "forced error"}}
        if method != "GET" or path != "/v1/convai/conversation/get-signed-url":
            return 404, {"detail": "Not Found"}
        if headers.get("xi-api-key") != self.api_key:
            return 401, {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}
        if query.get("agent_id") != [self.agent_id]:
            return 404, {"detail": {"status": "agent_not_found"}}
        return 200, {
            "signed_url": f"{self.signed_base}?agent_id={self.agent_id}"
            f"&conversation_signature={SIGNATURE}"
        }
