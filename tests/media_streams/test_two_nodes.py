"""A Twilio call across two gateway processes: the webhook on node A, the stream on node B.

Two ``telepath serve`` processes share a throwaway PostgreSQL database, Redis and
``TELEPATH_SECRET_KEY`` (the documented scale-out, docs/deployment.md). Twilio's voice
webhook (signed with the ``twilio`` package's ``RequestValidator``) reaches node A; the
carrier's WebSocket then reaches node B, which finds the one-time ticket in Redis, and the
recorded Twilio stream echoes back through the echo agent on B. Outside CI a missing
PostgreSQL or Redis skips the test with the reason; in CI it fails it.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from urllib.parse import urlencode, urlsplit

import pytest
import requests
from twilio.request_validator import RequestValidator

from tests.ingress.media_streams.conftest import recorded_json
from tests.media_streams.conftest import (
    CALLED,
    PUBLIC_URL,
    TWILIO_ACCOUNT,
    TWILIO_CALL,
    CarrierSocket,
    stream_url_of,
    twilio_voice_form,
)
from tests.scaleout.support import node_args, require_redis
from tests.sip_interop.support import free_udp_port
from tests.support.live_server import LiveServer, free_port, live_server, new_secret_key
from tests.support.postgres import throwaway_database

pytestmark = pytest.mark.slow

TWILIO_TOKEN = "twilio-auth-token-" + "0123456789abcdef"


@pytest.fixture
def two_nodes() -> Iterator[tuple[LiveServer, LiveServer]]:
    """Node A and node B: one database, one Redis, one master key, --public-url alike."""
    require_redis()
    with throwaway_database("telepath_streams") as database_url, ExitStack() as stack:
        env = {
            "TELEPATH_SECRET_KEY": new_secret_key(),
            "TELEPATH_PUBLIC_URL": PUBLIC_URL,
            # Nothing listens there: no REST call may leave loopback.
            "TELEPATH_TWILIO_API_URL": f"http://127.0.0.1:{free_port()}",
        }
        a, b = (
            stack.enter_context(
                live_server(database_url, args=node_args(free_udp_port(), drain_timeout=1), env=env)
            )
            for _ in range(2)  # one after the other: the first one creates the schema
        )
        yield a, b


def create_trunk(node: LiveServer, api: requests.Session) -> str:
    body = {
        "name": "two nodes",
        "sip_username": f"tw{secrets.token_hex(5)}",
        "ai_provider": "echo",
        "provider_config": {"delay_ms": 0},
        "inbound_numbers": [CALLED],
        "twilio_account_sid": TWILIO_ACCOUNT,
        "twilio_auth_token": TWILIO_TOKEN,
    }
    response = api.post(node.url + "/v1/trunks", json=body, timeout=10)
    assert response.status_code == 201, response.text
    trunk_id: str = response.json()["id"]
    return trunk_id


def twilio_voice(node: LiveServer, trunk_id: str) -> requests.Response:
    """Twilio's voice webhook as Twilio sends it: signed over the public URL (TW-SIG)."""
    path = f"/v1/carriers/twilio/voice/{trunk_id}"
    form = twilio_voice_form()
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC_URL + path, form)
    return requests.post(
        node.url + path,
        data=urlencode(form),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
        timeout=10,
    )


def on_node(node: LiveServer, stream_url: str) -> str:
    parts = urlsplit(stream_url)
    assert (parts.scheme, parts.netloc) == ("wss", urlsplit(PUBLIC_URL).netloc), stream_url
    return node.url.replace("http://", "ws://") + parts.path


async def until(check: Callable[[], bool], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 - a row in another process's database has no event
            await asyncio.sleep(0.05)


async def test_webhook_on_node_a_stream_on_node_b(
    two_nodes: tuple[LiveServer, LiveServer],
) -> None:
    a, b = two_nodes
    api = a.session(a.api_key())
    trunk_id = create_trunk(a, api)
    answer = twilio_voice(a, trunk_id)
    assert answer.status_code == 200, answer.text
    stream_url = stream_url_of(answer.text)
    connected, start, *media, stop = recorded_json("twilio_inbound_call.jsonl")

    def call() -> dict[str, object]:
        listed = api.get(a.url + "/v1/calls", params={"trunk_id": trunk_id}, timeout=5).json()
        assert len(listed["data"]) == 1, listed
        found: dict[str, object] = listed["data"][0]
        return found

    assert call()["status"] == "ringing"  # written by node A when it answered the webhook
    async with CarrierSocket(on_node(b, stream_url), {}) as carrier:
        for message in (connected, start):
            await carrier.send(message)
        await until(lambda: call()["status"] == "in-progress")
        for message in media:
            await carrier.send(message)
            await asyncio.sleep(0.02)
        await carrier.wait_for(lambda: len(carrier.events("media")) >= len(media), within=10)
        sent = b"".join(base64.b64decode(m["media"]["payload"]) for m in media)
        echoed = b"".join(base64.b64decode(m["media"]["payload"]) for m in carrier.events("media"))
        assert echoed == sent  # PCMU in, PCMU back, through the echo agent on node B
        await carrier.send(stop)
        await carrier.wait_closed(within=10)
    await until(lambda: call()["status"] == "completed")
    ended = call()
    assert (ended["disconnect_reason"], ended["blame"]) == ("hangup", "caller")
    assert ended["sip_call_id"] == TWILIO_CALL

    # The token was spent on node B: presenting it again, on either node, is refused.
    for node in (a, b):
        async with CarrierSocket(on_node(node, stream_url), {}) as replay:
            await replay.wait_closed()
            assert replay.close_code == 1008
