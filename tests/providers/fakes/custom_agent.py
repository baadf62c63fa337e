"""A customer's WebSocket agent on loopback, scripted by the test, asserting what we send.

``FakeCustomAgent(script)`` runs a real ``websockets`` server on 127.0.0.1; for each
connection it calls ``script(peer)`` with an ``AgentPeer`` that reads the gateway's frames
(``expect("start")`` fails the test if the next frame is anything else) and sends agent
frames. Assertion failures inside the script are collected and re-raised by
``await agent.finished()`` and on leaving the ``async with`` block, so a fake that saw
the wrong thing fails the test even though it runs in the server's task.

It can also refuse the handshake with an HTTP status (``reject_status=401``) and records
every handshake's headers in ``handshakes``.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from types import TracebackType
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

RECV_TIMEOUT = 3.0  # generous: a frame the gateway should send arrives in milliseconds

Script = Callable[["AgentPeer"], Awaitable[None]]


class AgentPeer:
    """The agent's end of one connection."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.received: list[str | bytes] = []

    @property
    def headers(self) -> Headers:
        """The gateway's handshake headers."""
        assert self.ws.request is not None
        return self.ws.request.headers

    async def recv(self, within: float = RECV_TIMEOUT) -> str | bytes:
        """The next frame from the gateway (fails the script after ``within`` s)."""
        async with asyncio.timeout(within):
            data = await self.ws.recv()
        self.received.append(data)
        return data

    async def recv_json(self, within: float = RECV_TIMEOUT) -> dict[str, Any]:
        """The next frame, which must be a JSON text frame holding an object."""
        data = await self.recv(within)
        assert isinstance(data, str), f"expected a text frame, got {len(data)} binary bytes"
        obj = json.loads(data)
        assert isinstance(obj, dict), obj
        return obj

    async def expect(self, kind: str, *, key: str = "type") -> dict[str, Any]:
        """The next frame, which must be the message ``kind`` (``type``/``event`` = kind)."""
        obj = await self.recv_json()
        assert obj.get(key) == kind, f"expected {kind!r}, got {obj!r}"
        return obj

    async def send_json(self, obj: object) -> None:
        await self.ws.send(json.dumps(obj))

    async def send_text(self, text: str) -> None:
        await self.ws.send(text)

    async def send_bytes(self, data: bytes) -> None:
        await self.ws.send(data)

    async def send_media(self, payload: bytes) -> None:
        """A telepath ``media`` message with ``payload`` in base64."""
        await self.send_json({"type": "media", "payload": base64.b64encode(payload).decode()})

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.ws.close(code, reason)

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (a crashed agent)."""
        self.ws.transport.abort()

    async def wait_closed(self, within: float = RECV_TIMEOUT) -> None:
        async with asyncio.timeout(within):
            await self.ws.wait_closed()


class FakeCustomAgent:
    """A scripted agent server; ``url`` is where the gateway should connect."""

    def __init__(
        self,
        script: Script,
        *,
        reject_status: int | None = None,
        max_size: int | None = 8 * 1024 * 1024,
    ) -> None:
        self._script = script
        self._reject_status = reject_status
        self._max_size = max_size
        self._server: Server | None = None
        self._done: asyncio.Queue[BaseException | None] = asyncio.Queue()
        self.failures: list[BaseException] = []
        self.handshakes: list[Headers] = []
        self.peers: list[AgentPeer] = []

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/agent"

    async def __aenter__(self) -> FakeCustomAgent:
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            max_size=self._max_size,
            compression=None,
            ping_interval=None,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        if exc is None and self.failures:
            raise self.failures[0]

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.handshakes.append(request.headers)
        if self._reject_status is not None:
            status = HTTPStatus(self._reject_status)
            return connection.respond(status, f"{status.phrase}\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        peer = AgentPeer(ws)
        self.peers.append(peer)
        outcome: BaseException | None = None
        try:
            await self._script(peer)
        except BaseException as exc:  # noqa: BLE001 - reported to the test, not swallowed
            outcome = exc
            self.failures.append(exc)
        finally:
            self._done.put_nowait(outcome)

    async def finished(self, within: float = RECV_TIMEOUT) -> None:
        """Wait for the script of the next connection to end; re-raise its failure."""
        async with asyncio.timeout(within):
            outcome = await self._done.get()
        if outcome is not None:
            raise outcome
