"""Quart routes of the carrier media streams: webhooks and the WebSocket endpoints.

Its own blueprint, outside the ``/v1`` API's key authentication: the carriers
authenticate with their signatures (webhooks) and the one-time call token (sockets).

===========================================  =========================================
``POST /v1/carriers/twilio/voice/<trunk>``   Twilio voice URL → TwiML ``<Connect><Stream>``
``POST /v1/carriers/twilio/status/<trunk>``  Twilio call status callback → call record
``POST /v1/carriers/telnyx/voice/<trunk>``   Telnyx TeXML voice URL/status callback (form)
                                             and Call Control webhooks (JSON)
``WS /v1/media/twilio/<token>``              Twilio Media Streams (one-time token)
``WS /v1/media/telnyx/<token>``              Telnyx media streaming (one-time token)
===========================================  =========================================

Routes read the request and call ``CarrierWebhooks`` / ``run_media_stream`` with plain
values (STYLE.md P11).
"""

from __future__ import annotations

import time

from quart import Blueprint, Quart, Response, current_app, request, websocket
from redis.asyncio import Redis

from gateway.media_streams.carrier_api import CarrierApi
from gateway.media_streams.session import MediaStreamHub, run_media_stream
from gateway.media_streams.tokens import LocalTicketStore, RedisTicketStore, TicketStore
from gateway.media_streams.urls import TELNYX_VOICE_PATH, TWILIO_STATUS_PATH, TWILIO_VOICE_PATH
from gateway.media_streams.webhooks import CarrierWebhooks, WebhookReply
from gateway.services import Services
from ingress.media_streams.events import Carrier
from ingress.media_streams.signatures import (
    TELNYX_SIGNATURE_HEADER,
    TELNYX_TIMESTAMP_HEADER,
    TWILIO_SIGNATURE_HEADER,
)

__all__ = ["carriers", "get_hub", "hub_of", "register_media_streams"]

carriers = Blueprint("carriers", __name__)

_EXTENSION = "telepath_media_streams"


def register_media_streams(
    app: Quart, services: Services, *, hub: MediaStreamHub | None = None
) -> MediaStreamHub:
    """Mount the carrier routes on ``app`` with this process's hub (made if not given).

    With ``--redis`` (``services.shared`` set) the call tokens live in Redis, sealed with
    the deployment's keyring, so a webhook and its WebSocket may reach different nodes;
    without it they live in this process.
    """
    settings = services.settings
    redis: Redis | None = None
    tokens: TicketStore
    if hub is None and services.shared is not None and settings.redis_url:
        # Its own small pool: ticket traffic must not queue behind the pub/sub listener.
        redis = Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        tokens = RedisTicketStore(redis, services.keyring)
    else:
        tokens = LocalTicketStore()
    made = hub or MediaStreamHub(
        tokens=tokens,
        api=CarrierApi(
            twilio_api_url=settings.twilio_api_url, telnyx_api_url=settings.telnyx_api_url
        ),
    )
    made.api.warm_up()
    app.extensions[_EXTENSION] = made
    app.register_blueprint(carriers)

    @app.after_serving
    async def _close_carrier_clients() -> None:
        await made.api.aclose()
        if redis is not None:
            await redis.aclose()

    return made


def get_hub() -> MediaStreamHub:
    """The hub stored on the current app."""
    return hub_of(current_app)


def hub_of(app: Quart) -> MediaStreamHub:
    """The hub ``register_media_streams`` stored on ``app``."""
    hub = app.extensions.get(_EXTENSION)
    if not isinstance(hub, MediaStreamHub):
        raise RuntimeError("media streams are not registered on this app")
    return hub


def _services() -> Services:
    services = current_app.extensions["telepath"]
    if not isinstance(services, Services):
        raise RuntimeError("Telepath services are not configured on this app")
    return services


def _handler() -> CarrierWebhooks:
    return CarrierWebhooks(_services(), get_hub())


def _respond(reply: WebhookReply) -> Response:
    response = Response(reply.body, status=reply.status, content_type=reply.content_type)
    if reply.retry_after is not None:
        response.headers["Retry-After"] = str(reply.retry_after)
    return response


async def _body() -> bytes:
    data = await request.get_data(cache=False, as_text=False)
    return data.encode("utf-8") if isinstance(data, str) else data


def _query() -> str:
    return request.query_string.decode("latin-1")


@carriers.post(TWILIO_VOICE_PATH.replace("{trunk_id}", "<trunk_id>"))
async def twilio_voice(trunk_id: str) -> Response:
    """Answer a Twilio call with a bidirectional stream to us (or ``<Reject>``)."""
    raw = await _body()
    reply = await _handler().twilio_voice(
        trunk_id,
        path=request.path,
        query=_query(),
        raw=raw,
        signature=request.headers.get(TWILIO_SIGNATURE_HEADER),
    )
    return _respond(reply)


@carriers.post(TWILIO_STATUS_PATH.replace("{trunk_id}", "<trunk_id>"))
async def twilio_status(trunk_id: str) -> Response:
    """Complete the call record from Twilio's status callback."""
    raw = await _body()
    reply = await _handler().twilio_status(
        trunk_id,
        path=request.path,
        query=_query(),
        raw=raw,
        signature=request.headers.get(TWILIO_SIGNATURE_HEADER),
    )
    return _respond(reply)


@carriers.post(TELNYX_VOICE_PATH.replace("{trunk_id}", "<trunk_id>"))
async def telnyx_voice(trunk_id: str) -> Response:
    """TeXML voice/status webhooks and Call Control events of a Telnyx number."""
    raw = await _body()
    reply = await _handler().telnyx(
        trunk_id,
        raw=raw,
        signature=request.headers.get(TELNYX_SIGNATURE_HEADER),
        timestamp=request.headers.get(TELNYX_TIMESTAMP_HEADER),
        now=time.time(),
    )
    return _respond(reply)


@carriers.websocket("/v1/media/twilio/<token>")
async def twilio_media(token: str) -> None:
    """Twilio Media Streams for one call."""
    await _media(Carrier.TWILIO, token)


@carriers.websocket("/v1/media/telnyx/<token>")
async def telnyx_media(token: str) -> None:
    """Telnyx media streaming for one call."""
    await _media(Carrier.TELNYX, token)


async def _media(carrier: Carrier, token: str) -> None:
    # The proxy resolves in the loop's tasks too: create_task copies the context.
    await run_media_stream(
        get_hub(),
        _services(),
        websocket,
        carrier=carrier,
        token=token,
        path=websocket.path,
        headers={k.lower(): v for k, v in websocket.headers.items()},
    )
