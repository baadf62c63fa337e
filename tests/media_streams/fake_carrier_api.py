"""The carriers' REST APIs on loopback: records every request, answers as scripted.

``FakeCarrierApi`` is an aiohttp server that speaks the parts of the Twilio and Telnyx REST
APIs Telepath calls (the shapes of carriers.md §1.8, §2.3, §2.7) and keeps each request
(method, path, headers, body) so a test asserts exactly what was sent. ``respond(path,
status, body)`` scripts an answer (e.g. Twilio's 404/20404 or Telnyx's 422/90018).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode()))

    def json(self) -> dict[str, Any]:
        value = json.loads(self.body)
        assert isinstance(value, dict)
        return value


class FakeCarrierApi:
    """See the module docstring; ``url`` is the base URL to configure."""

    def __init__(self) -> None:
        self.requests: list[SeenRequest] = []
        self._scripted: dict[str, tuple[int, object]] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def respond(self, path: str, status: int, body: object) -> None:
        """Answer requests to ``path`` with ``status`` and the JSON ``body``."""
        self._scripted[path] = (status, body)

    def seen(self, path_part: str) -> list[SeenRequest]:
        return [r for r in self.requests if path_part in r.path]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(SeenRequest(request.method, request.path, dict(request.headers), body))
        status, answer = self._scripted.get(request.path, (200, None))
        if answer is None:
            if request.path.startswith("/2010-04-01/"):
                sid = request.path.rsplit("/", 1)[-1].removesuffix(".json")
                answer = {"sid": sid, "status": "completed"}
            elif "/texml/" in request.path:
                answer = {"call_sid": request.path.rsplit("/", 1)[-1], "status": "completed"}
            else:
                answer = {"data": {"result": "ok"}}
        return web.json_response(answer, status=status)

    async def __aenter__(self) -> FakeCarrierApi:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        addresses = self._runner.addresses
        assert addresses, "the fake carrier API is not listening"
        self.port = int(addresses[0][1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
