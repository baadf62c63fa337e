"""The carriers' voice and status webhooks, as plain values in and a reply out.

The routes (``routes.py``) only read the request; everything here works on the raw body,
the signature headers and the path/query Twilio or Telnyx requested (STYLE.md P11).

Twilio (``/v1/carriers/twilio/voice/{trunk}``, ``…/status/{trunk}``): form POSTs signed
with ``X-Twilio-Signature`` over the public URL (carriers.md §1.10).
Telnyx (``/v1/carriers/telnyx/voice/{trunk}``), one URL for both control planes, told
apart by the body: a JSON body is a Call Control event (``call.initiated`` is answered
and streamed through the REST API; ``call.hangup`` and ``streaming.failed`` complete the
record), a form body is TeXML (a final ``CallStatus`` is a status callback, anything else
the voice webhook, answered with TeXML). Both are Ed25519-signed (carriers.md §2.6).

Replies: unknown trunk → ``<Reject/>`` (TwiML/TeXML) or 404 (Call Control); a bad
signature → 403; an inactive trunk → ``<Reject/>``; a number the trunk does not serve →
``<Reject reason="rejected"/>``; a trunk at its concurrency cap → ``<Reject reason="busy"/>``.

A new call while this node drains (gateway.drain) or is overloaded (gateway.overload) →
503 with ``Retry-After``, as a SIP INVITE would get: the carrier then asks the number's
fallback URL ("If Twilio is unable to retrieve or execute TwiML from your web server, a
request is immediately made to the number's Fallback URL", twilio.com/docs/usage/security/
availability-reliability; Telnyx: "The server must return an HTTP 200, otherwise we will
reattempt delivery at the failover webhook URL", carriers.md §2). Status callbacks and
events of running calls are still taken: they complete records.
"""

from __future__ import annotations

import asyncio
import logging
import secrets as random_source
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qsl

from gateway.ids import new_id
from gateway.media_streams.carrier_api import CarrierApiError
from gateway.media_streams.records import CarrierReport, apply_carrier_report, find_carrier_call
from gateway.media_streams.session import MediaStreamHub
from gateway.media_streams.tokens import CallTicket, TelnyxMode, TicketStoreError
from ingress.media_streams.errors import (
    MediaStreamConfigError,
    MediaStreamProtocolError,
    SignatureError,
)
from ingress.media_streams.events import (
    Carrier,
    TelnyxCallHungUp,
    TelnyxCallInitiated,
    TelnyxStreamingFailed,
    TwilioCallStatusChanged,
)
from ingress.media_streams.signatures import (
    TelnyxWebhookVerifier,
    twilio_public_url,
    verify_twilio_signature,
)
from ingress.media_streams.telnyx import parse_telnyx_call_event, telnyx_streaming_start_body
from ingress.media_streams.twilio import parse_twilio_call_status
from ingress.media_streams.twiml import (
    RejectReason,
    media_stream_url,
    texml_connect_stream,
    texml_reject,
    twilio_connect_stream,
    twilio_reject,
)
from media import PCMU, Blame, CallContext, CallEnd, DisconnectReason

if TYPE_CHECKING:
    from gateway.services import Services
    from gateway.services.trunks import TrunkState

__all__ = ["CarrierWebhooks", "WebhookReply"]

logger = logging.getLogger(__name__)

XML = "text/xml; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
_MAX_FIELDS = 200
_FINAL = ("completed", "busy", "failed", "no-answer", "canceled")
Pairs = Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class WebhookReply:
    """What to answer the carrier."""

    status: int
    body: str = ""
    content_type: str = TEXT
    retry_after: int | None = None  # seconds, for a 503 (RFC 9110 §10.2.3)


_FORBIDDEN = WebhookReply(403, "signature check failed")
_BAD = WebhookReply(400, "malformed webhook")
_OK = WebhookReply(200)


def parse_form(raw: bytes) -> Pairs | None:
    """The decoded ``(name, value)`` pairs of a urlencoded body; ``None`` if it is not one."""
    try:
        text = raw.decode("utf-8")
        return parse_qsl(
            text, keep_blank_values=True, strict_parsing=False, max_num_fields=_MAX_FIELDS
        )
    except (UnicodeDecodeError, ValueError):
        return None


class CarrierWebhooks:
    """Handles carrier webhooks for the process's ``MediaStreamHub``."""

    def __init__(self, services: Services, hub: MediaStreamHub) -> None:
        self.services = services
        self.hub = hub

    def _shed(self, carrier: Carrier) -> WebhookReply | None:
        """The 503 for a new call this node must not take now, else ``None``."""
        refusal = self.services.new_call_refusal(asyncio.get_running_loop().time())
        if refusal is None:
            return None
        reason, retry = refusal
        logger.info("%s voice webhook refused: node %s status=503", carrier.value, reason)
        return WebhookReply(
            503, f"this node is {reason}: try another (fallback URL)", retry_after=retry
        )

    # --- Twilio -------------------------------------------------------------------------

    async def _twilio_authenticated(
        self, trunk_id: str, path: str, query: str, raw: bytes, signature: str | None
    ) -> tuple[TrunkState | None, Pairs | None, WebhookReply | None]:
        trunk = await self.services.trunks.find_by_id(trunk_id)
        if trunk is None:
            return None, None, None
        pairs = parse_form(raw)
        if pairs is None:
            return trunk, None, _BAD
        token = trunk.secrets.get("twilio_auth_token")
        try:
            if not token:
                raise SignatureError("the trunk has no twilio_auth_token")
            url = twilio_public_url(self.services.settings.http_base_url, path, query)
            verify_twilio_signature(token, url, pairs, signature)
        except SignatureError as exc:
            logger.warning("trunk_id=%s Twilio webhook refused: %s", trunk.trunk.id, exc)
            return trunk, None, _FORBIDDEN
        return trunk, pairs, None

    async def twilio_voice(
        self, trunk_id: str, *, path: str, query: str, raw: bytes, signature: str | None
    ) -> WebhookReply:
        """A call reached a Twilio number whose voice URL is this trunk's."""
        trunk, pairs, refusal = await self._twilio_authenticated(
            trunk_id, path, query, raw, signature
        )
        if trunk is None:
            return WebhookReply(200, twilio_reject(), XML)
        if refusal is not None or pairs is None:
            return refusal or _BAD
        event = _call_status(pairs, trunk_id, "Twilio voice webhook")
        if event is None:
            return _BAD
        shed = self._shed(Carrier.TWILIO)
        if shed is not None:
            return shed
        return await self._answer_form_call(
            trunk, Carrier.TWILIO, event, twilio_reject, twilio_connect_stream, None
        )

    async def twilio_status(
        self, trunk_id: str, *, path: str, query: str, raw: bytes, signature: str | None
    ) -> WebhookReply:
        """A Twilio call status callback: a final status completes the call record."""
        trunk, pairs, refusal = await self._twilio_authenticated(
            trunk_id, path, query, raw, signature
        )
        if trunk is None:
            return WebhookReply(404, "unknown trunk")
        if refusal is not None or pairs is None:
            return refusal or _BAD
        event = _call_status(pairs, trunk_id, "Twilio status callback")
        if event is None:
            return _BAD
        if event.end is None:
            return _OK  # ringing / in-progress: nothing to record
        report = CarrierReport(
            event.end,
            carrier_status=event.call_status,
            duration_s=event.call_duration_s,
            source="twilio_status_callback",
        )
        await self._report(trunk, Carrier.TWILIO, event.call_sid, report)
        return _OK

    # --- Telnyx -------------------------------------------------------------------------

    async def telnyx(
        self,
        trunk_id: str,
        *,
        raw: bytes,
        signature: str | None,
        timestamp: str | None,
        now: float,
    ) -> WebhookReply:
        """Any Telnyx webhook for this trunk: TeXML (form) or Call Control (JSON)."""
        is_json = raw.lstrip()[:1] == b"{"
        trunk = await self.services.trunks.find_by_id(trunk_id)
        if trunk is None:
            return (
                WebhookReply(404, "unknown trunk")
                if is_json
                else WebhookReply(200, texml_reject(), XML)
            )
        key = trunk.secrets.get("telnyx_public_key")
        try:
            if not key:
                raise SignatureError("the trunk has no telnyx_public_key")
            TelnyxWebhookVerifier(key).verify(raw, signature, timestamp, now=now)
        except SignatureError as exc:
            logger.warning("trunk_id=%s Telnyx webhook refused: %s", trunk.trunk.id, exc)
            return _FORBIDDEN
        if is_json:
            return await self._telnyx_call_control(trunk, raw)
        pairs = parse_form(raw)
        if pairs is None:
            return _BAD
        return await self._texml(trunk, pairs)

    async def _texml(self, trunk: TrunkState, pairs: Pairs) -> WebhookReply:
        # TeXML webhooks are Twilio-shaped forms (TX-TEXML-CB); CallSid = call_control_id.
        event = _call_status(pairs, trunk.trunk.id, "TeXML webhook")
        if event is None:
            return _BAD
        if event.end is not None:
            report = CarrierReport(
                event.end,
                carrier_status=event.call_status,
                duration_s=event.call_duration_s,
                source="telnyx_texml_status",
            )
            await self._report(trunk, Carrier.TELNYX, event.call_sid, report)
            return _OK
        shed = self._shed(Carrier.TELNYX)
        if shed is not None:
            return shed
        return await self._answer_form_call(
            trunk, Carrier.TELNYX, event, texml_reject, texml_connect_stream, "texml"
        )

    async def _telnyx_call_control(self, trunk: TrunkState, raw: bytes) -> WebhookReply:
        try:
            event = parse_telnyx_call_event(raw)
        except MediaStreamProtocolError as exc:
            logger.warning("trunk_id=%s Call Control webhook malformed: %s", trunk.trunk.id, exc)
            return _BAD
        new_call = isinstance(event, TelnyxCallInitiated) and event.direction in (None, "incoming")
        if new_call:
            # Before the duplicate check: the retry of a refused event must be acted on.
            shed = self._shed(Carrier.TELNYX)
            if shed is not None:
                return shed
        # Telnyx retries and reorders webhooks (carriers.md §2.1): act on each id once.
        if not self.hub.first_time(event.call.event_id):
            return _OK
        if isinstance(event, TelnyxCallInitiated):
            if not new_call:
                return _OK
            await self._call_control_initiated(trunk, event)
        elif isinstance(event, TelnyxCallHungUp):
            report = CarrierReport(
                event.end, carrier_status=None, duration_s=None, source="telnyx_call_hangup"
            )
            await self._report(trunk, Carrier.TELNYX, event.call.call_control_id, report)
        elif isinstance(event, TelnyxStreamingFailed):
            end = CallEnd(
                DisconnectReason.CARRIER_ERROR,
                Blame.CARRIER,
                f"Telnyx could not stream the call: {event.failure_reason or 'unknown'}",
            )
            report = CarrierReport(
                end, carrier_status="failed", duration_s=None, source="telnyx_streaming_failed"
            )
            await self._report(trunk, Carrier.TELNYX, event.call.call_control_id, report)
        return _OK

    async def _call_control_initiated(self, trunk: TrunkState, event: TelnyxCallInitiated) -> None:
        ccid = event.call.call_control_id
        key = trunk.secrets.get("telnyx_api_key")
        if not key:
            logger.warning("trunk_id=%s Call Control call but no telnyx_api_key", trunk.trunk.id)
            return
        context = _context(trunk, Carrier.TELNYX, ccid, event.from_number, event.to_number)
        refused = await self._admit(trunk, context)
        if refused is not None:
            try:
                await self.hub.api.telnyx_reject(key, ccid, busy=refused == "busy")
            except CarrierApiError as exc:
                logger.warning("call %s: Telnyx reject failed: %s", ccid, exc)
            return
        auth_token = random_source.token_urlsafe(32)
        ticket = CallTicket(
            carrier="telnyx",
            trunk_id=trunk.trunk.id,
            account_id=_account_id(trunk),
            call_id=context.call_id,
            carrier_call_id=ccid,
            from_number=context.from_number,
            to_number=context.to_number,
            codec=PCMU.name,
            telnyx_mode="call_control",
            stream_auth_token=auth_token,
        )
        url = await self._stream_url(trunk, context, ticket)
        if isinstance(url, WebhookReply):
            return
        body = telnyx_streaming_start_body(
            url,
            auth_token=auth_token,
            codec=PCMU,
            custom_parameters=_parameters(context),
            client_state=context.call_id,
        )
        try:
            await self.hub.api.telnyx_answer_and_stream(key, ccid, body, command_id=context.call_id)
        except CarrierApiError as exc:
            logger.warning("call_id=%s Telnyx answer/stream failed: %s", context.call_id, exc)
            await self._revoke(context.call_id)
            end = CallEnd(
                DisconnectReason.CARRIER_ERROR,
                Blame.CARRIER,
                f"Telnyx refused to answer or stream the call: {exc}"[:500],
            )
            report = CarrierReport(
                end, carrier_status="failed", duration_s=None, source="telnyx_answer"
            )
            await self._report(trunk, Carrier.TELNYX, ccid, report)

    # --- shared steps -------------------------------------------------------------------

    async def _answer_form_call(
        self,
        trunk: TrunkState,
        carrier: Carrier,
        event: TwilioCallStatusChanged,
        reject: Callable[[RejectReason | None], str],
        connect: Callable[[str, Mapping[str, str]], str],
        telnyx_mode: TelnyxMode | None,
    ) -> WebhookReply:
        """Answer a TwiML/TeXML voice webhook: ``<Reject>`` the call or stream it (PCMU)."""
        context = _context(trunk, carrier, event.call_sid, event.from_number, event.to_number)
        refused = await self._admit(trunk, context)
        if refused is not None:
            reason = None if refused == "inactive" else refused
            return WebhookReply(200, reject(reason), XML)
        ticket = CallTicket(
            carrier="twilio" if carrier is Carrier.TWILIO else "telnyx",
            trunk_id=trunk.trunk.id,
            account_id=_account_id(trunk),
            call_id=context.call_id,
            carrier_call_id=event.call_sid,
            from_number=context.from_number,
            to_number=context.to_number,
            codec=PCMU.name,
            telnyx_mode=telnyx_mode,
            carrier_account_id=event.account_sid,
        )
        url = await self._stream_url(trunk, context, ticket)
        if isinstance(url, WebhookReply):
            return url
        return WebhookReply(200, connect(url, _parameters(context)), XML)

    async def _admit(
        self, trunk: TrunkState, context: CallContext
    ) -> Literal["inactive", "rejected", "busy"] | None:
        """Why the call is refused (and recorded as refused), or ``None`` to take it."""
        runner = self.services.runner
        end: CallEnd | None = None
        verdict: Literal["inactive", "rejected", "busy"] | None = None
        if trunk.trunk.status != "active":
            verdict = "inactive"
            end = CallEnd(
                DisconnectReason.REJECTED,
                Blame.SYSTEM,
                f"The trunk is {trunk.trunk.status}: calls are refused",
                480,
            )
        elif trunk.trunk.inbound_numbers and context.to_number not in trunk.trunk.inbound_numbers:
            verdict = "rejected"
            end = CallEnd(
                DisconnectReason.REJECTED,
                Blame.SYSTEM,
                f"{context.to_number or 'The called number'} is not one of the trunk's "
                "inbound_numbers",
                404,
            )
        elif runner.at_capacity(trunk):
            verdict = "busy"
            end = CallEnd(
                DisconnectReason.BUSY,
                Blame.SYSTEM,
                "The trunk is at its max_concurrent_calls",
                486,
            )
        if end is not None:
            await runner.record_rejected(
                trunk=trunk,
                account_id=None,
                context=context,
                end=end,
                transport="websocket",
                timeline=[("carrier_webhook", {})],
            )
        return verdict

    async def _stream_url(
        self, trunk: TrunkState, context: CallContext, ticket: CallTicket
    ) -> str | WebhookReply:
        """Write the call record (ringing) and issue the one-time token; the WS URL, or
        the 503 to answer when the gateway cannot take the stream."""
        loop = asyncio.get_running_loop()
        try:
            token = await self.hub.tokens.issue(ticket, now=loop.time())
        except TicketStoreError as exc:
            logger.error("call_id=%s no stream token issued: %s", context.call_id, exc)
            return WebhookReply(503, "the gateway's call token store is unavailable")
        try:
            url = media_stream_url(
                self.services.settings.media_stream_base_url, Carrier(ticket.carrier), token
            )
        except MediaStreamConfigError as exc:
            await self._revoke(ticket.call_id)
            logger.error("media streams need an https:// --public-url or --media-url: %s", exc)
            return WebhookReply(503, "set --public-url to the gateway's https:// address")
        await self.services.calls.create(
            call_id=context.call_id,
            account_id=ticket.account_id,
            context=context,
            start_time=datetime.now(UTC),
            transport="websocket",
            codec=ticket.codec,
        )
        logger.info(
            "call_id=%s %s call %s from %s to %s: streaming",
            context.call_id,
            ticket.carrier,
            ticket.carrier_call_id,
            context.from_number,
            context.to_number,
        )
        return url

    async def _revoke(self, call_id: str) -> None:
        # A ticket left behind expires with its TTL; a failed revoke only shortens nothing.
        try:
            await self.hub.tokens.revoke_call(call_id)
        except TicketStoreError as exc:
            logger.warning("call_id=%s stream tokens not revoked: %s", call_id, exc)

    async def _report(
        self, trunk: TrunkState, carrier: Carrier, carrier_call_id: str, report: CarrierReport
    ) -> None:
        call = await find_carrier_call(trunk.trunk.id, carrier.value, carrier_call_id)
        if call is None:
            logger.info("%s status for unknown call %s ignored", carrier.value, carrier_call_id)
            return
        leg = self.hub.legs.get(call.id)
        if leg is not None:
            leg.carrier_closed(report.end)
        else:
            await self._revoke(call.id)  # the stream never came: it never will
        done = await apply_carrier_report(
            self.services, trunk, call, report, stream_running=leg is not None
        )
        logger.info(
            "call_id=%s %s reports %s/%s: %s",
            call.id,
            carrier.value,
            report.end.reason.value,
            report.end.blame.value,
            done,
        )


def _call_status(pairs: Pairs, trunk_id: str, what: str) -> TwilioCallStatusChanged | None:
    """The Twilio-shaped form as a typed event; ``None`` (logged) when it is malformed."""
    try:
        return parse_twilio_call_status(dict(pairs))
    except MediaStreamProtocolError as exc:
        logger.warning("trunk_id=%s %s malformed: %s", trunk_id, what, exc)
        return None


def _account_id(trunk: TrunkState) -> str:
    return str(trunk.trunk.account_id)


def _context(
    trunk: TrunkState,
    carrier: Carrier,
    carrier_call_id: str,
    from_number: str | None,
    to_number: str | None,
) -> CallContext:
    return CallContext(
        call_id=new_id("call"),
        trunk_id=trunk.trunk.id,
        sip_call_id=carrier_call_id,
        from_number=(from_number or "")[:64],
        to_number=(to_number or "")[:64],
        carrier=carrier.value,
        transport="websocket",
    )


def _parameters(context: CallContext) -> dict[str, str]:
    """The call context as stream ``<Parameter>``s: ids and numbers, nothing secret."""
    return {
        "telepath_call_id": context.call_id,
        "telepath_trunk_id": context.trunk_id,
        "from": context.from_number,
        "to": context.to_number,
    }
