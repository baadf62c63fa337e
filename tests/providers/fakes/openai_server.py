"""A loopback stand-in for OpenAI's Realtime WebSocket (GA), speaking the real protocol.

What it does like the real service (shared/protocols/providers.md §1.2-§1.9): checks the
``Authorization: Bearer`` key (401 in the handshake otherwise), closes with 4000
``beta_api_shape_disabled`` on an ``OpenAI-Beta`` header or a beta-shaped
``session.update``, sends ``session.created`` on connect and answers ``session.update``
with ``session.updated``. Everything else is scripted by the test through
``FakeOpenAIConnection``: it records what the gateway sent (audio appends decoded into
``audio``) and sends vendor-shaped server events built by the helpers below.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

BETA_REJECTION = (
    '{"type":"invalid_request_error","code":"beta_api_shape_disabled",'
    '"message":"The Realtime Beta API is no longer supported. Please use /v1/realtime for '
    'the GA API."}'
)

# --- server events as OpenAI sends them (GA names; field sets from the GA reference) ---


def session_created() -> dict[str, Any]:
    return {
        "type": "session.created",
        "event_id": "event_C7lZ0oXq1cwGQ3CB",
        "session": {"type": "realtime", "object": "realtime.session", "id": "sess_C7lZ0o"},
    }


def audio_delta(item_id: str, payload: bytes, response_id: str = "resp_1") -> dict[str, Any]:
    return {
        "type": "response.output_audio.delta",
        "event_id": "event_delta",
        "response_id": response_id,
        "item_id": item_id,
        "output_index": 0,
        "content_index": 0,
        "delta": base64.b64encode(payload).decode(),
    }


def response_created(response_id: str = "resp_1") -> dict[str, Any]:
    return {
        "type": "response.created",
        "event_id": "event_rc",
        "response": {"object": "realtime.response", "id": response_id, "status": "in_progress"},
    }


def response_done(
    response_id: str = "resp_1", item_ids: tuple[str, ...] = (), status: str = "completed"
) -> dict[str, Any]:
    return {
        "type": "response.done",
        "event_id": "event_rd",
        "response": {
            "object": "realtime.response",
            "id": response_id,
            "status": status,
            "status_details": None,
            "output": [
                {"id": i, "type": "message", "role": "assistant", "status": "completed"}
                for i in item_ids
            ],
            "usage": {"total_tokens": 120},
        },
    }


def speech_started(item_id: str = "item_caller_1", ms: int = 1200) -> dict[str, Any]:
    return {
        "type": "input_audio_buffer.speech_started",
        "event_id": "event_ss",
        "audio_start_ms": ms,
        "item_id": item_id,
    }


def speech_stopped(item_id: str = "item_caller_1", ms: int = 2400) -> dict[str, Any]:
    return {
        "type": "input_audio_buffer.speech_stopped",
        "event_id": "event_sp",
        "audio_end_ms": ms,
        "item_id": item_id,
    }


def error_event(type_: str, code: str, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "event_id": "event_err",
        "error": {"type": type_, "code": code, "message": message, "param": None, "event_id": None},
    }


def function_call_done(name: str, arguments: str, call_id: str = "call_1") -> dict[str, Any]:
    return {
        "type": "response.function_call_arguments.done",
        "event_id": "event_fc",
        "response_id": "resp_1",
        "item_id": "item_fc",
        "output_index": 0,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


class FakeOpenAIConnection:
    """One accepted gateway connection, as the test sees it."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.request_headers: Headers = ws.request.headers if ws.request else Headers()
        self.path = ws.request.path if ws.request else ""
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.audio = bytearray()
        self.appends = 0
        self.audio_arrived = asyncio.Event()

    async def next_message(self, within: float = 2.0) -> dict[str, Any]:
        """The next non-audio message the gateway sent."""
        return await asyncio.wait_for(self.messages.get(), within)

    async def send(self, event: dict[str, Any] | str) -> None:
        await self.ws.send(event if isinstance(event, str) else json.dumps(event))

    async def wait_audio(self, size: int, within: float = 2.0) -> bytes:
        """Wait until at least ``size`` bytes of appended audio arrived."""
        async with asyncio.timeout(within):
            while len(self.audio) < size:
                self.audio_arrived.clear()
                await self.audio_arrived.wait()
        return bytes(self.audio)


class FakeOpenAIRealtime:
    """The fake service. Use ``async with FakeOpenAIRealtime() as fake: fake.url …``."""

    def __init__(self, *, api_key: str = "sk-test", confirm_session: bool = True) -> None:
        self.api_key = api_key
        self.confirm_session = confirm_session
        self.reject_beta = True
        self.connections: asyncio.Queue[FakeOpenAIConnection] = asyncio.Queue()
        self.on_session_update: (
            Callable[[FakeOpenAIConnection, dict[str, Any]], Awaitable[None]] | None
        ) = None
        self._server: Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/v1/realtime"

    async def __aenter__(self) -> FakeOpenAIRealtime:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, process_request=self._check_auth, compression=None
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def accepted(self, within: float = 2.0) -> FakeOpenAIConnection:
        return await asyncio.wait_for(self.connections.get(), within)

    def _check_auth(self, ws: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return ws.respond(HTTPStatus.UNAUTHORIZED, '{"error":{"code":"invalid_api_key"}}')
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        conn = FakeOpenAIConnection(ws)
        self.connections.put_nowait(conn)
        if self.reject_beta and "OpenAI-Beta" in conn.request_headers:
            await ws.close(4000, "invalid_request_error.beta_api_shape_disabled")
            return
        try:
            await conn.send(session_created())
            async for raw in ws:
                message = json.loads(raw)
                if message.get("type") == "input_audio_buffer.append":
                    conn.audio += base64.b64decode(message["audio"], validate=True)
                    conn.appends += 1
                    conn.audio_arrived.set()
                    continue
                conn.messages.put_nowait(message)
                if message.get("type") == "session.update":
                    await self._session_update(conn, message)
        except ConnectionClosed:
            pass

    async def _session_update(self, conn: FakeOpenAIConnection, message: dict[str, Any]) -> None:
        session = message.get("session", {})
        if self.reject_beta and (session.get("type") != "realtime" or "modalities" in session):
            await conn.ws.close(4000, "invalid_request_error.beta_api_shape_disabled")
            return
        if self.on_session_update is not None:
            await self.on_session_update(conn, message)
            return
        if self.confirm_session:
            await conn.send({"type": "session.updated", "event_id": "event_su", "session": session})


class SilentServer:
    """A TCP listener that accepts and never answers: a WebSocket handshake that hangs."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/v1/realtime"

    async def __aenter__(self) -> SilentServer:
        async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.append(writer)

        self._server = await asyncio.start_server(hold, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in self._writers:
            writer.close()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
