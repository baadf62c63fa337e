"""A webhook receiver on loopback: a real HTTP/1.1 server that records raw requests.

Written on asyncio streams (no framework between the bytes and the test), so the tests see
exactly the body bytes the gateway signed. ``statuses`` scripts the answers in order (the
last one repeats); ``hang_first`` requests are never answered (a receiver that times out).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Received:
    """One request as it arrived."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = 0.0


@dataclass
class WebhookReceiver:
    """``async with WebhookReceiver([503, 503, 200]) as rx: rx.url …``."""

    statuses: list[int] = field(default_factory=lambda: [200])
    hang_first: int = 0
    requests: list[Received] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hooks/calls"

    async def __aenter__(self) -> WebhookReceiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        for writer in self._writers:
            writer.close()
        self._server.close()
        await self._server.wait_closed()

    async def wait(self, count: int, within: float = 5.0) -> list[Received]:
        """Wait until ``count`` requests arrived."""
        async with asyncio.timeout(within):
            while len(self.requests) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.requests

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    raw = await reader.readline()
                    if raw in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = raw.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                index = len(self.requests)
                self.requests.append(
                    Received(method, path, headers, body, asyncio.get_running_loop().time())
                )
                self._arrived.set()
                if index < self.hang_first:
                    await asyncio.sleep(3600)  # never answers; the client times out
                status = self.statuses[min(index - self.hang_first, len(self.statuses) - 1)]
                writer.write(f"HTTP/1.1 {status} Scripted\r\nContent-Length: 2\r\n\r\nok".encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            writer.close()
