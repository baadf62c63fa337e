"""The WebSocket loop of one carrier media stream: authorise, wait for ``start``, bridge.

A thin pump (STYLE.md P2) around the pure codecs of ``ingress.media_streams``::

    accept → redeem the one-time token (else close 1008)
           → [Telnyx: x-telnyx-streaming-auth-token, if sent, must match (else 1008)]
           → [Twilio: X-Twilio-Signature, if sent, must verify over wss://… (else 1008)]
    connected → start          (bounded wait; start must name the ticket's call, else 1008)
           → MediaStreamLeg + services.runner.run(transport="websocket", codec=…)
    media / dtmf / mark / stop → leg.receive(…)         until the call ends either way
    socket closed by the carrier → the call ends, blamed on the caller
    malformed message           → the call ends, blamed on the carrier (close 1008)

Nothing is read from the socket before the token is checked, and no agent session is
opened before a valid ``start``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from gateway.media_streams.carrier_api import CarrierApi, CarrierApiError
from gateway.media_streams.leg import MediaStreamLeg
from gateway.media_streams.records import reconcile
from gateway.media_streams.tokens import CallTicket, TicketStore, TicketStoreError
from ingress.media_streams.errors import MediaStreamProtocolError, SignatureError
from ingress.media_streams.events import (
    Carrier,
    MediaStreamCodec,
    StreamConnected,
    StreamStarted,
)
from ingress.media_streams.signatures import (
    TWILIO_SIGNATURE_HEADER,
    check_stream_auth_token,
    twilio_public_url,
    verify_twilio_signature,
)
from ingress.media_streams.telnyx import TelnyxStreamCodec
from ingress.media_streams.twilio import TwilioStreamCodec
from media import AudioFormat, Blame, CallContext, CallEnd, DisconnectReason

if TYPE_CHECKING:
    from gateway.services import Services
    from gateway.services.trunks import TrunkState

__all__ = [
    "POLICY_VIOLATION",
    "MediaStreamHub",
    "PushStreamSocket",
    "StreamSocket",
    "carrier_hang_up",
    "run_media_stream",
]

logger = logging.getLogger(__name__)

POLICY_VIOLATION = 1008  # RFC 6455 §7.4.1
NORMAL_CLOSURE = 1000
INTERNAL_ERROR = 1011  # RFC 6455 §7.4.1
TELNYX_AUTH_HEADER = "x-telnyx-streaming-auth-token"
_RUN_WIND_DOWN_S = 10.0  # bridge teardown: agent close and hang-up are bounded inside
_CARRIER_CLOSED = CallEnd.caller_hangup("The carrier closed the media stream: the call ended")


class StreamSocket(Protocol):
    """The few WebSocket operations the loop needs (Quart's ``websocket`` has them)."""

    async def accept(self) -> None: ...

    async def receive(self) -> str | bytes: ...

    async def send(self, data: str) -> None: ...

    async def close(self, code: int, reason: str = "") -> None: ...


@runtime_checkable
class PushStreamSocket(StreamSocket, Protocol):
    """A socket that hands each message over in its own read callback, and writes without
    waiting when it can (the media listener's, ``listener.CarrierStream``): no task wakes
    per message either way."""

    @property
    def lost(self) -> asyncio.Future[None]: ...

    def set_handler(self, handler: Callable[[str | bytes], None] | None) -> None: ...

    def write_now(self, data: str) -> bool: ...


@dataclass
class MediaStreamHub:
    """Per-process state of the media-stream routes, kept on the app (``app.extensions``).

    ``legs``: the running legs by our call id, so a carrier status callback can end a
    call whose stream is still open. ``seen_events``: recent Telnyx webhook ids (Telnyx
    retries and reorders webhooks, carriers.md §2.1), bounded.
    """

    tokens: TicketStore
    api: CarrierApi
    start_timeout_s: float = 10.0
    legs: dict[str, MediaStreamLeg] = field(default_factory=dict)
    seen_events: dict[str, None] = field(default_factory=dict)
    max_seen_events: int = 4096

    def first_time(self, event_id: str) -> bool:
        """True the first time a Telnyx webhook id is seen (and remember it)."""
        if event_id in self.seen_events:
            return False
        self.seen_events[event_id] = None
        while len(self.seen_events) > self.max_seen_events:
            del self.seen_events[next(iter(self.seen_events))]
        return True


def carrier_hang_up(
    api: CarrierApi, trunk: TrunkState, ticket: CallTicket
) -> Callable[[CallEnd], Awaitable[None]]:
    """The leg's REST hang-up for this call (failures are logged, never raised)."""

    async def hang_up(end: CallEnd) -> None:
        secrets = trunk.secrets
        try:
            if ticket.carrier == "twilio":
                account = secrets.get("twilio_account_sid") or ticket.carrier_account_id
                token = secrets.get("twilio_auth_token")
                if not account or not token:
                    logger.warning("call_id=%s no Twilio credentials to hang up", ticket.call_id)
                    return
                outcome = await api.twilio_hangup(account, token, ticket.carrier_call_id)
            else:
                key = secrets.get("telnyx_api_key")
                if not key:
                    logger.warning("call_id=%s no Telnyx API key to hang up", ticket.call_id)
                    return
                if ticket.telnyx_mode == "texml" and ticket.carrier_account_id:
                    outcome = await api.telnyx_texml_hangup(
                        key, ticket.carrier_account_id, ticket.carrier_call_id
                    )
                else:
                    outcome = await api.telnyx_hangup(key, ticket.carrier_call_id)
        except CarrierApiError as exc:
            logger.warning("call_id=%s carrier hang-up failed: %s", ticket.call_id, exc)
            return
        logger.info(
            "call_id=%s carrier hang-up (%s): %s", ticket.call_id, end.reason.value, outcome.value
        )

    return hang_up


def _check_handshake(
    services: Services,
    trunk: TrunkState,
    ticket: CallTicket,
    path: str,
    headers: Mapping[str, str],
) -> None:
    """Extra handshake checks when the carrier sends them; raises ``SignatureError``."""
    if ticket.carrier == "twilio":
        signature = headers.get(TWILIO_SIGNATURE_HEADER.lower())
        token = trunk.secrets.get("twilio_auth_token")
        if signature and token:
            # TW-FW: Twilio signs the upgrade; the URL is the wss:// one it connected to.
            url = twilio_public_url(services.settings.media_stream_base_url, path, websocket=True)
            verify_twilio_signature(token, url, None, signature)
        return
    presented = headers.get(TELNYX_AUTH_HEADER)
    if presented is not None and ticket.stream_auth_token:
        check_stream_auth_token(ticket.stream_auth_token, presented)


async def run_media_stream(
    hub: MediaStreamHub,
    services: Services,
    ws: StreamSocket,
    *,
    carrier: Carrier,
    token: str,
    path: str,
    headers: Mapping[str, str],
) -> None:
    """Serve one carrier WebSocket to its end. Never raises for what the peer does."""
    loop = asyncio.get_running_loop()
    await ws.accept()
    try:
        ticket = await hub.tokens.redeem(token, carrier.value, now=loop.time())
    except TicketStoreError as exc:
        # Fail closed: a token we cannot spend cluster-wide must not let a socket in.
        logger.warning("%s media stream refused: %s", carrier.value, exc)
        await ws.close(POLICY_VIOLATION, "call token store unavailable")
        return
    if ticket is None:
        logger.info("%s media stream refused: unknown, used or expired token", carrier.value)
        await ws.close(POLICY_VIOLATION, "invalid call token")
        return
    trunk = await services.trunks.find_by_id(ticket.trunk_id)
    if trunk is None:
        await ws.close(POLICY_VIOLATION, "trunk no longer exists")
        return
    try:
        _check_handshake(services, trunk, ticket, path, headers)
    except SignatureError as exc:
        logger.warning("call_id=%s media stream handshake refused: %s", ticket.call_id, exc)
        await ws.close(POLICY_VIOLATION, "handshake not authenticated")
        return
    codec: MediaStreamCodec
    outbound: AudioFormat | None = None
    if carrier is Carrier.TWILIO:
        codec = TwilioStreamCodec()
    else:
        outbound = AudioFormat.parse(ticket.codec)
        codec = TelnyxStreamCodec(outbound_format=outbound)
    timeline: list[tuple[str, Mapping[str, object]]] = [
        ("carrier_webhook", {"at": ticket.expires_at - hub.tokens.ttl_s}),
        ("stream_connected", {"at": loop.time()}),
    ]
    started = await _await_start(hub, ws, codec, ticket, timeline)
    if started is None:
        return
    context = CallContext(
        call_id=ticket.call_id,
        trunk_id=ticket.trunk_id,
        sip_call_id=started.call_id,
        from_number=started.from_number or ticket.from_number,
        to_number=started.to_number or ticket.to_number,
        carrier=carrier.value,
        transport="websocket",
        headers=_carrier_headers(carrier, started),
        custom_parameters=dict(started.custom_parameters),
    )
    leg = MediaStreamLeg(
        codec=codec,
        started=started,
        context=context,
        send=ws.send,
        write_now=ws.write_now if isinstance(ws, PushStreamSocket) else None,
        hang_up=carrier_hang_up(hub.api, trunk, ticket),
        outbound_format=outbound,
    )
    leg.start()
    hub.legs[ticket.call_id] = leg

    def media_stats() -> dict[str, object]:
        stats = codec.stats
        return {
            "packets_received": stats.media_frames,
            "packets_lost": stats.frames_missing,
            "duplicate_packets": stats.duplicates,
            "late_packets": stats.out_of_order,
            "packets_sent": leg.stats.frames_sent,
        }

    run = loop.create_task(
        services.runner.run(
            trunk=trunk,
            leg=leg,
            transport="websocket",
            codec=leg.format.name,
            timeline=timeline,
            call_id=ticket.call_id,
            media_stats=media_stats,
        ),
        name=f"media-stream-call-{ticket.call_id}",
    )
    reading = (
        _read_pushed(ws, codec, leg) if isinstance(ws, PushStreamSocket) else _read(ws, codec, leg)
    )
    reader = loop.create_task(reading, name=f"media-stream-reader-{ticket.call_id}")
    close_code = NORMAL_CLOSURE
    try:
        await asyncio.wait({run, reader}, return_when=asyncio.FIRST_COMPLETED)
        if reader.done() and not reader.cancelled():
            close_code = reader.result()
    finally:
        # Quart cancels this handler when the carrier disconnects: the call still ends
        # cleanly (blamed on the caller) and its record is written before we return.
        if not leg.ended:
            leg.carrier_closed(_CARRIER_CLOSED)
        if not reader.done():
            reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        with contextlib.suppress(Exception):
            # The leg has ended either way, so the bridge winds down; shielded so that a
            # cancelled handler does not cut the record short.
            async with asyncio.timeout(_RUN_WIND_DOWN_S):
                await asyncio.shield(run)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await leg.flush()
        await leg.aclose()
        hub.legs.pop(ticket.call_id, None)
        with contextlib.suppress(Exception):
            await ws.close(close_code)
        with contextlib.suppress(Exception):
            await reconcile(services, trunk, ticket.call_id)


async def _await_start(
    hub: MediaStreamHub,
    ws: StreamSocket,
    codec: MediaStreamCodec,
    ticket: CallTicket,
    timeline: list[tuple[str, Mapping[str, object]]],
) -> StreamStarted | None:
    """Read ``connected`` then ``start`` (bounded); ``None`` after closing the socket."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(hub.start_timeout_s):
            while True:
                message = await ws.receive()
                for event in codec.decode(message, received_at=loop.time()):
                    if isinstance(event, StreamConnected):
                        continue
                    if isinstance(event, StreamStarted):
                        if event.call_id != ticket.carrier_call_id:
                            logger.warning(
                                "call_id=%s start names another call (%s)",
                                ticket.call_id,
                                event.call_id,
                            )
                            await ws.close(POLICY_VIOLATION, "token is for another call")
                            return None
                        timeline.append(("stream_started", {"at": loop.time()}))
                        return event
                    # Anything else before start is a broken stream (the codec raises for
                    # media/dtmf/mark before start; Telnyx may send error).
                    logger.warning("call_id=%s %r before start", ticket.call_id, event)
    except TimeoutError:
        logger.warning("call_id=%s no start within %.0f s", ticket.call_id, hub.start_timeout_s)
        await ws.close(POLICY_VIOLATION, "no start message")
    except MediaStreamProtocolError as exc:
        logger.warning("call_id=%s stream refused: %s", ticket.call_id, exc)
        await ws.close(POLICY_VIOLATION, "malformed stream")
    except Exception as exc:  # the socket went away before start
        logger.info("call_id=%s stream closed before start: %r", ticket.call_id, exc)
    return None


async def _read(ws: StreamSocket, codec: MediaStreamCodec, leg: MediaStreamLeg) -> int:
    """Feed the carrier's messages to the leg until the stream ends; the close code."""
    loop = asyncio.get_running_loop()
    while not leg.ended:
        try:
            message = await ws.receive()
        except asyncio.CancelledError:
            raise
        except Exception:
            leg.carrier_closed(_CARRIER_CLOSED)
            return NORMAL_CLOSURE
        try:
            events = codec.decode(message, received_at=loop.time())
        except MediaStreamProtocolError as exc:
            leg.carrier_closed(_malformed(exc))
            return POLICY_VIOLATION
        for event in events:
            leg.receive(event)
    return NORMAL_CLOSURE


async def _read_pushed(ws: PushStreamSocket, codec: MediaStreamCodec, leg: MediaStreamLeg) -> int:
    """``_read`` for a socket that pushes: each message is decoded and handed to the leg in
    the socket's read callback. The close code once the stream ends, as ``_read``'s."""
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[int] = loop.create_future()

    def finish(code: int) -> None:
        if not outcome.done():
            ws.set_handler(None)  # what still arrives waits in the socket, unread
            outcome.set_result(code)

    def on_message(message: str | bytes) -> None:
        try:
            events = codec.decode(message, received_at=loop.time())
        except MediaStreamProtocolError as exc:
            leg.carrier_closed(_malformed(exc))
            finish(POLICY_VIOLATION)
            return
        try:
            for event in events:
                leg.receive(event)
        except Exception:
            # Our bug, in the socket's callback: end this call, not the process's reading.
            logger.exception("call_id=%s media-stream event failed", leg.context.call_id)
            leg.carrier_closed(
                CallEnd(DisconnectReason.SYSTEM_ERROR, Blame.SYSTEM, "Telepath failed the call")
            )
            finish(INTERNAL_ERROR)
            return
        if leg.ended:
            finish(NORMAL_CLOSURE)

    def on_lost(_: asyncio.Future[None]) -> None:
        if not outcome.done():
            leg.carrier_closed(_CARRIER_CLOSED)
            finish(NORMAL_CLOSURE)

    ws.lost.add_done_callback(on_lost)
    try:
        ws.set_handler(on_message)  # the messages already waiting go first, in order
        return await outcome
    finally:
        ws.lost.remove_done_callback(on_lost)
        ws.set_handler(None)


def _malformed(exc: MediaStreamProtocolError) -> CallEnd:
    """How a call ends on a message the carrier should not have sent."""
    return CallEnd(
        DisconnectReason.CARRIER_ERROR,
        Blame.CARRIER,
        f"The carrier sent a malformed media-stream message: {exc}"[:500],
    )


def _carrier_headers(carrier: Carrier, started: StreamStarted) -> dict[str, str]:
    """The carrier's ids, as the agent sees X- headers on SIP calls (media/context.py)."""
    if carrier is Carrier.TWILIO:
        headers = {"X-Twilio-CallSid": started.call_id, "X-Twilio-StreamSid": started.stream_id}
        if started.account_id:
            headers["X-Twilio-AccountSid"] = started.account_id
        return headers
    headers = {
        "X-Telnyx-Call-Control-Id": started.call_id,
        "X-Telnyx-Stream-Id": started.stream_id,
    }
    if started.call_session_id:
        headers["X-Telnyx-Call-Session-Id"] = started.call_session_id
    return headers
