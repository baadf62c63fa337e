"""With ``--redis`` and Redis gone, media streams fail closed.

The gateway (conftest: Hypercorn on loopback) gets a ``RedisTicketStore`` whose Redis port
has nothing listening, as a node sees it when Redis is down. The voice webhook is answered
503 (Twilio then plays its fallback; no call record is left ringing) and a carrier socket
is closed 1008 before a frame is read, with the reason in the log.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gateway.media_streams.tokens import RedisTicketStore
from models import Call
from tests.media_streams.conftest import (
    Gateway,
    free_port,
    twilio_voice_form,
)


@pytest.fixture
async def redis_down(gateway: Gateway) -> AsyncIterator[Gateway]:
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    gateway.hub.tokens = RedisTicketStore(dead, gateway.services.keyring)
    yield gateway
    await dead.aclose()


async def test_the_voice_webhook_is_answered_503(
    redis_down: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    trunk = await redis_down.trunk("tw-redis-down")
    with caplog.at_level(logging.ERROR, logger="gateway.media_streams.webhooks"):
        response = await redis_down.twilio_post("voice", trunk.trunk.id, twilio_voice_form())
    assert response.status_code == 503
    assert "token store is unavailable" in response.text
    assert "<Stream" not in response.text
    assert await Call.filter(trunk_id=trunk.trunk.id).count() == 0
    assert "no stream token issued" in caplog.text and "ConnectionError" in caplog.text


async def test_the_carrier_socket_is_refused_1008(
    redis_down: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{redis_down.stream_origin}/v1/media/twilio/{secrets.token_urlsafe(32)}"
    with caplog.at_level(logging.WARNING, logger="gateway.media_streams.session"):
        async with redis_down.stream(url) as carrier:
            await carrier.wait_closed()
            assert carrier.close_code == 1008
            assert carrier.ws is not None
            assert carrier.ws.close_reason == "call token store unavailable"
    assert carrier.received == []
    assert "media stream refused" in caplog.text and "ConnectionError" in caplog.text
