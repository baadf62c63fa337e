"""One SIP call as a ``CallLeg`` (gateway/leg.py): signalling through the UAS core, media
through an :class:`~ingress.sip.transport.media.RtpMediaStream`.

The gateway builds a :class:`SipCallLeg` once it has accepted an INVITE (authenticated,
admitted, SDP negotiated, RTP ports bound) and hands it to the bridge:

* ``answer()`` sends 200 OK with the SDP answer and starts the RTP stream;
* ``reject(end)`` sends ``end.sip_status`` (503 with a ``Reason`` header when the agent
  could not be reached) and frees the RTP ports;
* ``hangup(end)`` sends BYE (after the ACK, RFC 3261 §15) and stops the media;
* ``play``/``mark``/``clear``/``send_dtmf`` go to the RTP stream (dropped before answer);
* ``events()`` merges the stream's events (caller audio, RFC 4733 DTMF, mark
  acknowledgements) with signalling: INFO DTMF, the caller's BYE
  (``LegEnded(HANGUP, CALLER)``), CANCEL (``LegEnded(CANCEL, CALLER)``), and the stream's
  RTP timeout, on which we send BYE ourselves.

The endpoint's owner routes the UAS events of this call to :meth:`SipCallLeg.on_signal`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Final

from ingress.sip.offer_answer import NegotiatedMedia
from ingress.sip.transport.endpoint import SipEndpoint
from ingress.sip.transport.media import MediaConfig, RtpMediaStream
from ingress.sip.transport.rtp import RtpSocketPair
from ingress.sip.uas_events import (
    CallConfirmed,
    CallEnded,
    DtmfInfoReceived,
    EndCause,
    MediaUpdated,
    UasEvent,
)
from media import AudioFormat, AudioFrame, Blame, CallContext, CallEnd, DisconnectReason
from media.frames import DTMF_DIGITS, DtmfDigit, LegEnded, LegEvent, MarkPlayed
from media.pull import Pull
from media.relay import Relay

__all__ = ["SipCallLeg", "end_for_cause"]

logger = logging.getLogger(__name__)

_MAX_QUEUED: Final = 500  # inbound events held until the bridge listens; audio beyond is dropped
_BYE_WAIT: Final = 1.5  # how long hangup() waits for the BYE's response
_MAX_NOTES: Final = 64  # timeline entries kept per call (a re-INVITE storm stays bounded)
_MEDIA_NOTES: Final = {"INVITE": "reinvite", "UPDATE": "update", "ACK": "late_answer"}
_END_NOTES: Final = {
    EndCause.CALLER_BYE: "bye_received",
    EndCause.CALLER_CANCEL: "cancel_received",
    EndCause.LOCAL_BYE: "bye_completed",
}

_ENDS: Final[dict[EndCause, CallEnd]] = {
    EndCause.CALLER_BYE: CallEnd(DisconnectReason.HANGUP, Blame.CALLER, "Caller hung up (BYE)"),
    EndCause.CALLER_CANCEL: CallEnd(
        DisconnectReason.CANCEL, Blame.CALLER, "Caller cancelled the call before it was answered"
    ),
    EndCause.ACK_TIMEOUT: CallEnd(
        DisconnectReason.CARRIER_ERROR,
        Blame.CARRIER,
        "The caller never acknowledged our 200 OK (no ACK within 64*T1); BYE sent",
    ),
    EndCause.SESSION_EXPIRED: CallEnd(
        DisconnectReason.CARRIER_ERROR,
        Blame.CARRIER,
        "The session timer expired without a refresh (RFC 4028); BYE sent",
    ),
    EndCause.REFRESH_FAILED: CallEnd(
        DisconnectReason.CARRIER_ERROR,
        Blame.CARRIER,
        "The caller rejected or ignored our session refresh (408/481); BYE sent",
    ),
    EndCause.RING_TIMEOUT: CallEnd(
        DisconnectReason.SYSTEM_ERROR, Blame.SYSTEM, "The call was not answered in time (480)"
    ),
    EndCause.TRANSPORT_FAILED: CallEnd(
        DisconnectReason.CARRIER_ERROR, Blame.CARRIER, "The caller's SIP connection closed"
    ),
}


def end_for_cause(cause: EndCause) -> CallEnd | None:
    """The ``CallEnd`` a signalling end means for the bridge (``None``: we ended it)."""
    return _ENDS.get(cause)


class SipCallLeg:
    """A SIP caller as a ``CallLeg``; see the module docstring."""

    def __init__(
        self,
        *,
        endpoint: SipEndpoint,
        call: str,
        context: CallContext,
        media: NegotiatedMedia | None,
        audio_format: AudioFormat,
        sockets: RtpSocketPair,
        media_config: MediaConfig | None = None,
        rand_bits: Callable[[int], int] = secrets.randbits,
    ) -> None:
        self._endpoint = endpoint
        self.call = call
        self._context = context
        self._format = audio_format
        self._media = media
        self._sockets = sockets
        self._media_config = media_config or MediaConfig()
        self._rand_bits = rand_bits
        self._stream: RtpMediaStream | None = None
        self._queue: Relay[LegEvent] = Relay()  # held until the bridge listens
        self._pull = Pull(self.listen, lambda event: isinstance(event, LegEnded))
        self._answered = False
        self._ended = False  # LegEnded queued or we ended it
        self._bye_done: asyncio.Future[None] | None = None
        self._dropped = 0
        self._timeline: list[tuple[str, dict[str, object]]] = []

    # -- CallLeg: description ---------------------------------------------------------------
    @property
    def context(self) -> CallContext:
        return self._context

    @property
    def format(self) -> AudioFormat:
        return self._format

    # -- CallLeg: control -------------------------------------------------------------------
    async def answer(self) -> None:
        """Send 200 OK and start the media (a no-op when the caller already left)."""
        if self._answered or self._ended:
            return
        uas = self._endpoint.uas
        if not self._endpoint.act(lambda now: uas.answer(self.call, now)):
            return
        self._answered = True
        if self._media is not None:
            self._start_media(self._media)

    async def reject(self, end: CallEnd) -> None:
        """Refuse the unanswered call with ``end.sip_status`` (default 503)."""
        status = end.sip_status or 503
        if not 300 <= status <= 699:
            status = 503
        extra: list[tuple[str, str]] = []
        if status == 503:
            # RFC 3326: say why; Retry-After lets carriers fail over instead of retrying here.
            text = end.explanation.replace('"', "'")[:120]
            extra.append(("Reason", f'SIP;cause=503;text="{text}"'))
            extra.append(("Retry-After", "5"))
        uas = self._endpoint.uas
        if not self._answered and not self._ended:
            self._endpoint.act(lambda now: uas.reject(self.call, status, now, extra=extra))
            self._note("rejected", status=status)
        self._ended = True
        self._shutdown_media()

    async def hangup(self, end: CallEnd) -> None:
        """Send BYE (or reject a call that was never answered) and stop the media."""
        if not self._answered:
            await self.reject(end)
            return
        if self._ended:
            self._shutdown_media()
            return
        self._ended = True
        uas = self._endpoint.uas
        loop = asyncio.get_running_loop()
        self._bye_done = loop.create_future()
        extra: tuple[tuple[str, str], ...] = ()
        if end.reason is DisconnectReason.RTP_TIMEOUT:
            extra = (("Reason", 'SIP;cause=408;text="RTP timeout"'),)
        sent = self._endpoint.act(lambda now: uas.hangup(self.call, now, extra=extra))
        self._note("bye_sent", reason=end.reason.value)
        if sent:
            # asyncio.timeout rather than wait_for: on Python 3.11 wait_for drops a
            # cancellation that meets the response in the same loop iteration.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_BYE_WAIT):
                    await asyncio.shield(self._bye_done)
        self._shutdown_media()

    def play(self, frame: AudioFrame) -> None:
        if self._stream is not None and not self._ended:
            self._stream.play(frame)

    def mark(self, name: str) -> None:
        if self._stream is not None and not self._ended:
            self._stream.mark(name)
        else:
            self._queue.put(MarkPlayed(name))  # nothing can be sent: acknowledge

    def clear(self) -> None:
        if self._stream is not None:
            self._stream.clear()

    def send_dtmf(self, digits: str) -> None:
        if self._stream is None or self._ended:
            return
        clean = "".join(d for d in digits.upper() if d in DTMF_DIGITS)
        try:
            self._stream.send_dtmf(clean)
        except ValueError as error:  # telephone-event not negotiated
            logger.info("call %s: cannot send DTMF: %s", self._context.call_id, error)

    async def transfer(self, target: str) -> bool:
        """SIP REFER is not offered by this gateway: the bridge falls back to its policy."""
        return False

    # -- CallLeg: events ----------------------------------------------------------------------
    def listen(self, on_event: Callable[[LegEvent], None]) -> None:
        self._queue.listen(on_event)

    def events(self) -> AsyncIterator[LegEvent]:
        return self._pull()

    # -- signalling from the endpoint's owner -----------------------------------------------
    def on_signal(self, event: UasEvent) -> None:
        """A UAS event of this call (routed by the owner of the endpoint)."""
        if isinstance(event, DtmfInfoReceived):
            self._note("dtmf_info", digit=event.digit)
            self._put(DtmfDigit(event.digit, event.duration_ms))
        elif isinstance(event, MediaUpdated):
            self._on_media(event.media, event.request)
        elif isinstance(event, CallConfirmed):
            self._note("ack")  # RFC 3261 §13.3.1.4: the caller confirmed our 200 OK
        elif isinstance(event, CallEnded):
            if self._bye_done is not None and not self._bye_done.done():
                self._bye_done.set_result(None)
            end = end_for_cause(event.cause)
            self._note(_END_NOTES.get(event.cause, "call_ended"), cause=event.cause.value)
            if end is not None and not self._ended:
                self._ended = True
                self._shutdown_media()
                self._queue.put(LegEnded(end))

    def timeline(self) -> list[tuple[str, dict[str, object]]]:
        """The leg's own signalling events so far, ``(name, detail)`` with ``detail["at"]``
        on the event loop's clock: ``ack``, ``reinvite``/``update`` (hold, resume),
        ``dtmf_info``, ``bye_received``, ``cancel_received``, ``bye_sent``, ``rtp_timeout``,
        ``rejected``. Read by the call runner when the call is over, like ``media_stats``."""
        return list(self._timeline)

    def media_stats(self) -> Mapping[str, object]:
        """The RTP stream's counters for the call record (empty before answer)."""
        if self._stream is None:
            return {}
        stats: dict[str, object] = dict(self._stream.stats())
        stats["inbound_events_dropped"] = self._dropped
        return stats

    # -- internals -----------------------------------------------------------------------------
    def _note(self, name: str, **detail: object) -> None:
        if len(self._timeline) < _MAX_NOTES:
            self._timeline.append((name, {**detail, "at": asyncio.get_running_loop().time()}))

    def _on_media(self, media: NegotiatedMedia, request: str = "") -> None:
        self._media = media
        name = _MEDIA_NOTES.get(request, "media_updated")
        self._note(name, hold=media.on_hold, direction=media.direction.value)
        if self._stream is not None:
            try:
                self._stream.update(media)
            except ValueError as error:
                logger.warning("call %s: media update refused: %s", self._context.call_id, error)
        elif self._answered and not self._ended:
            self._start_media(media)

    def _start_media(self, media: NegotiatedMedia) -> None:
        try:
            self._stream = RtpMediaStream(
                media,
                self._sockets,
                rand_bits=self._rand_bits,
                config=self._media_config,
                call_id=self._context.call_id,
                on_event=self._on_stream_event,
            )
        except Exception:
            logger.exception("call %s: RTP stream failed to start", self._context.call_id)
            return

    def _on_stream_event(self, event: LegEvent) -> None:
        """The stream's events, as they happen (no task in between: a frame reaches the
        bridge's queue in the callback that read its datagram)."""
        if isinstance(event, LegEnded):
            if not self._ended:
                # RTP timeout: we end the call with BYE; the bridge learns it here.
                self._ended = True
                self._send_timeout_bye()
                self._note("rtp_timeout")
                self._queue.put(event)
            return
        self._put(event)

    def _send_timeout_bye(self) -> None:
        uas = self._endpoint.uas
        reason = (("Reason", 'SIP;cause=408;text="RTP timeout"'),)
        self._endpoint.act(lambda now: uas.hangup(self.call, now, extra=reason))

    def _put(self, event: LegEvent) -> None:
        if isinstance(event, AudioFrame) and len(self._queue) >= _MAX_QUEUED:
            self._dropped += 1
            return
        self._queue.put(event)

    def _shutdown_media(self) -> None:
        if self._stream is not None:
            self._stream.close()
        else:
            self._sockets.close()
