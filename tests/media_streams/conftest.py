"""A real Telepath (Quart on Hypercorn, on loopback) with a fake carrier REST API beside it.

``gateway``: services over a fresh SQLite file, the app served by Hypercorn on a free
127.0.0.1 port, ``--public-url https://gw.example.test`` (what the carriers would be told),
and the carriers' REST base URLs pointed at ``FakeCarrierApi``. Every test using it runs
twice: with the streams on the HTTP listener's route (``route``), and on the media
listener (``listener``: ``--media-listen`` on its own port, ``--media-url
wss://media.gw.example.test``), started by the server's own ``start_media_listener``. Helpers sign webhooks with
the carriers' own algorithms: ``twilio``'s ``RequestValidator`` and an Ed25519 key pair
made here for Telnyx.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect

from gateway.app import create_app
from gateway.database import close_database, open_database
from gateway.media_streams.listener import MediaStreamListener
from gateway.media_streams.routes import get_hub
from gateway.media_streams.session import MediaStreamHub
from gateway.secret_box import generate_key
from gateway.server import start_media_listener
from gateway.services import Services
from gateway.services.trunks import TrunkState
from gateway.settings import HostPort, Settings
from tests.ingress.media_streams.conftest import recorded_json
from tests.media_streams.fake_carrier_api import FakeCarrierApi

PUBLIC_URL = "https://gw.example.test"
MEDIA_URL = "wss://media.gw.example.test"
TWILIO_ACCOUNT = "AC00000000000000000000000000000003"
TWILIO_CALL = "CA00000000000000000000000000000002"
TWILIO_TOKEN = "twilio-auth-token-0123456789abcdef"
TELNYX_CALL = "v3:00000000000000000000000000000000000000000000000000aa"
CALLER = "+15550100001"
CALLED = "+15550100002"


async def poll(condition: Any, within: float = 5.0) -> None:
    """Until ``condition()`` holds: for the gateway's own state, which has no event."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - the gateway's state has no event to await
            await asyncio.sleep(0.01)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Gateway:
    """The running gateway and what a test needs around it."""

    services: Services
    carrier: FakeCarrierApi
    port: int
    hub: MediaStreamHub
    account_id: str
    telnyx_key: Ed25519PrivateKey
    http: httpx.AsyncClient
    # Where the streams are served: the HTTP port's route, or the media listener's port.
    stream_port: int = 0
    stream_origin: str = "wss://gw.example.test"  # what the carriers are told
    listener: MediaStreamListener | None = None
    app: Quart | None = None
    trunks: dict[str, TrunkState] = field(default_factory=dict)

    @property
    def telnyx_public_key(self) -> str:
        raw = self.telnyx_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    async def trunk(self, name: str, **fields: Any) -> TrunkState:
        """A trunk of the test account (echo agent, no delay, unless ``fields`` say else)."""
        changes: dict[str, Any] = {
            "sip_username": name,
            "ai_provider": "echo",
            "provider_config": {"delay_ms": 0},
            "twilio_account_sid": TWILIO_ACCOUNT,
            "twilio_auth_token": TWILIO_TOKEN,
            "telnyx_api_key": "KEYtelnyx-test-api-key",
            "telnyx_public_key": self.telnyx_public_key,
        }
        changes.update(fields)
        state = await self.services.trunks.create(self.account_id, changes)
        self.trunks[name] = state
        return state

    # --- Twilio ---

    def twilio_url(self, kind: str, trunk_id: str) -> str:
        return f"{PUBLIC_URL}/v1/carriers/twilio/{kind}/{trunk_id}"

    async def twilio_post(
        self,
        kind: str,
        trunk_id: str,
        form: dict[str, str],
        *,
        signed_url: str | None = None,
        signed_form: dict[str, str] | None = None,
        token: str = TWILIO_TOKEN,
        signature: str | None = None,
    ) -> httpx.Response:
        """POST a form as Twilio would, signed over ``signed_url``/``signed_form``."""
        url = self.twilio_url(kind, trunk_id)
        if signature is None:
            signature = RequestValidator(token).compute_signature(
                signed_url or url, signed_form if signed_form is not None else form
            )
        path = urlsplit(url).path
        return await self.http.post(
            path,
            content=urlencode(form),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
            },
        )

    # --- Telnyx ---

    def telnyx_headers(self, body: bytes, *, at: float | None = None) -> dict[str, str]:
        stamp = str(int(time.time() if at is None else at))
        signature = self.telnyx_key.sign(stamp.encode() + b"|" + body)
        return {
            "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
            "telnyx-timestamp": stamp,
        }

    async def telnyx_post(
        self,
        trunk_id: str,
        body: bytes,
        *,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        return await self.http.post(
            f"/v1/carriers/telnyx/voice/{trunk_id}",
            content=body,
            headers={
                "Content-Type": content_type,
                **(self.telnyx_headers(body) if headers is None else headers),
            },
        )

    # --- the media stream ---

    def ws_url(self, stream_url: str) -> str:
        """The loopback address of a stream URL on ``stream_origin``."""
        parts = urlsplit(stream_url)
        assert f"{parts.scheme}://{parts.netloc}" == self.stream_origin, stream_url
        return f"ws://127.0.0.1:{self.stream_port}{parts.path}"

    def stream(
        self, stream_url: str, headers: dict[str, str] | None = None, *, telnyx: bool = False
    ) -> CarrierSocket:
        return CarrierSocket(self.ws_url(stream_url), headers or {}, telnyx=telnyx)


class CarrierSocket:
    """The carrier's end of a media stream: sends recorded messages, logs what comes back.

    Like the carriers (TW-WSM, TX-MS), it plays the audio it receives back to back in real
    time and echoes each ``mark`` when the audio before it has played; ``clear`` drops the
    queued audio and echoes every pending mark at once.
    """

    def __init__(self, url: str, headers: dict[str, str], *, telnyx: bool = False) -> None:
        self.url = url
        self.headers = headers
        self.telnyx = telnyx
        self.ws: ClientConnection | None = None
        self.received: list[tuple[float, dict[str, Any]]] = []
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.playhead = 0.0
        self.pending_marks: list[tuple[asyncio.TimerHandle, dict[str, Any]]] = []
        self.stream_id = ""
        self.echo_sequence = 1000
        self.echoed: list[str] = []
        self.changed = asyncio.Event()
        self._sends: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> CarrierSocket:
        self.ws = await connect(self.url, additional_headers=self.headers)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.ws is not None
        await self.ws.close()
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5)

    async def _read(self) -> None:
        assert self.ws is not None
        loop = asyncio.get_running_loop()
        try:
            async for message in self.ws:
                assert isinstance(message, str)
                now = loop.time()
                obj = json.loads(message)
                self.received.append((now, obj))
                self._play(obj, now)
                self.changed.set()
        except Exception:
            pass
        finally:
            for handle, _ in self.pending_marks:
                handle.cancel()
            self.closed.set()
            self.changed.set()

    def _play(self, obj: dict[str, Any], now: float) -> None:
        kind = obj.get("event")
        if kind == "media":
            size = len(base64.b64decode(obj["media"]["payload"]))
            self.playhead = max(self.playhead, now) + size / 8000  # G.711: 8000 bytes a second
        elif kind == "mark":
            handle = asyncio.get_running_loop().call_at(
                max(self.playhead, now), self._echo, obj["mark"]["name"]
            )
            self.pending_marks.append((handle, obj))
        elif kind == "clear":
            self.playhead = now
            for handle, mark in self.pending_marks:
                if not handle.cancelled():
                    handle.cancel()
                    self._echo(mark["mark"]["name"])
            self.pending_marks.clear()

    def _echo(self, name: str) -> None:
        self.echo_sequence += 1
        key = "stream_id" if self.telnyx else "streamSid"
        seq = "sequence_number" if self.telnyx else "sequenceNumber"
        message = {
            "event": "mark",
            seq: str(self.echo_sequence),
            key: self.stream_id,
            "mark": {"name": name},
        }
        self.echoed.append(name)
        if self.ws is not None:
            task = asyncio.get_running_loop().create_task(self._send_quietly(message))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    async def _send_quietly(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            await self.send(message)

    @property
    def close_code(self) -> int | None:
        assert self.ws is not None
        return self.ws.close_code

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        self.changed.set()
        if message.get("event") == "start":
            self.stream_id = message.get("streamSid") or message.get("stream_id") or ""
        await self.ws.send(json.dumps(message))

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [m for _, m in self.received if m.get("event") == kind]

    def timed(self, kind: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.received if m.get("event") == kind]

    async def wait_for(self, predicate: Any, within: float = 5.0) -> None:
        """Until ``predicate()`` holds, re-checked after each message either way."""
        async with asyncio.timeout(within):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    async def wait_closed(self, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            await self.closed.wait()


@pytest.fixture(params=["route", "listener"])
async def gateway(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Gateway]:
    """The gateway on loopback (see the module docstring)."""
    on_listener = request.param == "listener"
    async with FakeCarrierApi() as carrier:
        url = f"sqlite://{tmp_path / 't.db'}"
        await open_database(url)
        port = free_port()
        media_port = free_port() if on_listener else port
        settings = Settings(
            database_url=url,
            secret_key=generate_key(),
            agent_ready_timeout=2.0,
            public_url=PUBLIC_URL,
            media_listen=HostPort("127.0.0.1", media_port) if on_listener else None,
            media_url=MEDIA_URL if on_listener else None,
            twilio_api_url=carrier.url,
            telnyx_api_url=carrier.url,
        )
        services = Services.build(settings)
        app = create_app(services)
        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        config.accesslog = None
        stop = asyncio.Event()
        server = asyncio.get_running_loop().create_task(
            serve(app, config, shutdown_trigger=stop.wait)
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            async with asyncio.timeout(5):
                while True:
                    try:
                        await http.get("/healthz")
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.02)
            async with app.app_context():
                hub = get_hub()
            listener = await start_media_listener(settings, app, services)
            assert (listener is not None) == on_listener
            created = await services.api_keys.create("acme", "test")
            account_id = created.key.account_id  # type: ignore[attr-defined]
            try:
                yield Gateway(
                    services,
                    carrier,
                    port,
                    hub,
                    account_id,
                    Ed25519PrivateKey.generate(),
                    http,
                    stream_port=media_port,
                    stream_origin=MEDIA_URL if on_listener else "wss://gw.example.test",
                    listener=listener,
                    app=app,
                )
            finally:
                if listener is not None:
                    await listener.stop(5.0)
                stop.set()
                await asyncio.wait_for(server, 10)
                await services.close()
                await close_database()


def twilio_voice_form(call_sid: str = TWILIO_CALL, to: str = CALLED) -> dict[str, str]:
    """The voice webhook form of an inbound call (carriers.md §1.9), from the recording."""
    form = {
        k: v
        for k, v in recorded_json("twilio_status_callbacks.jsonl")[0].items()
        if isinstance(v, str)
    }
    form.update({"CallSid": call_sid, "To": to, "Called": to})
    return form


def stream_url_of(xml: str) -> str:
    """The ``<Stream url=…>`` of a TwiML/TeXML answer."""
    import xml.etree.ElementTree as ET

    stream = ET.fromstring(xml.split("?>", 1)[1]).find("./Connect/Stream")
    assert stream is not None, xml
    return stream.attrib["url"]
