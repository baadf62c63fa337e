"""Requests inside a dialog, answered by the UAS core (RFC 3261 §12.2.2, §14, §15.1.2;
RFC 3311; RFC 6086; RFC 4028), sans-I/O.

:class:`InDialog` matches a request to its call by dialog id and checks the CSeq order
(481/500), then: BYE → 200 and the call ends (a BYE before our final response also ends
the INVITE with 487); OPTIONS → 200 with our capabilities; INFO with DTMF → 200 and
``DtmfInfoReceived`` (415/400 otherwise); re-INVITE and UPDATE through the call's
:class:`~.offer_answer.SdpSession` (hold, resume, session refresh; 488 or 400 keeps the
call as it was; 491 while our own refresh is pending; 500 with Retry-After while another
INVITE is in progress); and the ACK for our 2xx (§13.3.1.4, with the late answer when
our offer went in the 2xx).
"""

from __future__ import annotations

from .call_table import CallInput, CallState
from .dialog import dialog_id_of
from .errors import SipParseError
from .info_dtmf import DTMF_INFO_TYPES, parse_info_dtmf
from .message import Peer, Request, build_response
from .offer_answer import IncompatibleMedia, NegotiatedMedia
from .sdp import SdpError
from .session_timer import IntervalTooSmall, SessionTimer, negotiate
from .transaction import TransactionKey
from .uas_client import ClientSide
from .uas_events import CallConfirmed, DtmfInfoReceived, EndCause, MediaUpdated
from .uas_state import CallRecord, ClientPurpose

__all__ = ["InDialog"]


class InDialog(ClientSide):
    """Requests inside dialogs and the ACK for our 2xx (see the module docstring)."""

    def _in_dialog(
        self, request: Request, source: Peer, key: TransactionKey | None, now: float
    ) -> None:
        did = dialog_id_of(request)
        handle = self._by_dialog.get((did.call_id, did.local_tag, did.remote_tag)) if did else None
        call = self._calls.get(handle) if handle else None
        if call is None or call.dialog is None or call.state is CallState.ENDED:
            if request.method == "OPTIONS":
                self._respond(request, key, source, 200, now, extra=self._capabilities())
            else:
                self._respond(request, key, source, 481, now)  # §12.2.2
            return
        dialog = call.dialog
        status = dialog.accept_cseq(request)
        tag = call.local_tag
        if status is not None:
            self._respond(request, key, source, status, now, to_tag=tag, call=call.handle)
            return
        method = request.method
        if method == "BYE":
            self._respond(request, key, source, 200, now, to_tag=tag)
            if call.state in (CallState.OFFERED, CallState.RINGING):
                # §15: a BYE before our final response also ends the INVITE with 487.
                self._respond(call.invite, call.key, call.source, 487, now, to_tag=tag)
            self._step(call, CallInput.BYE)
            self._finish(call, EndCause.CALLER_BYE, None)
        elif method == "OPTIONS":
            self._respond(request, key, source, 200, now, to_tag=tag, extra=self._capabilities())
        elif method == "INFO":
            self._on_info(call, request, source, key, now)
        elif method in ("INVITE", "UPDATE"):
            self._on_refresh(call, request, source, key, now)
        else:
            self._respond(request, key, source, 501, now, to_tag=tag)

    def _on_info(
        self,
        call: CallRecord,
        request: Request,
        source: Peer,
        key: TransactionKey | None,
        now: float,
    ) -> None:
        tag = call.local_tag
        ctype = request.content_type
        if not request.body:
            self._respond(request, key, source, 200, now, to_tag=tag)  # a keep-alive INFO
            return
        if ctype not in DTMF_INFO_TYPES:
            accept = (("Accept", ", ".join(DTMF_INFO_TYPES)),)
            self._respond(
                request, key, source, 415, now, to_tag=tag, extra=accept, call=call.handle
            )
            return
        parsed = parse_info_dtmf(ctype, request.body)
        if parsed is None:
            self._respond(
                request, key, source, 400, now, to_tag=tag, reason="Bad DTMF", call=call.handle
            )
            return
        self._respond(request, key, source, 200, now, to_tag=tag)
        self._events.append(
            DtmfInfoReceived(call=call.handle, digit=parsed[0], duration_ms=parsed[1])
        )

    def _on_refresh(
        self,
        call: CallRecord,
        request: Request,
        source: Peer,
        key: TransactionKey | None,
        now: float,
    ) -> None:
        """A re-INVITE or UPDATE: offer/answer (hold, resume) and/or session refresh."""
        tag = call.local_tag
        is_invite = request.method == "INVITE"
        if call.state is not CallState.CONFIRMED or call.reinvite_key is not None:
            # §14.2: an INVITE while one is in progress → 500 with Retry-After; same for UPDATE
            # before the call is up (RFC 3311 §5.2).
            self._respond(
                request,
                key,
                source,
                500,
                now,
                to_tag=tag,
                extra=(("Retry-After", "1"),),
                call=call.handle,
            )
            return
        if any(
            p in (ClientPurpose.REFRESH_INVITE, ClientPurpose.REFRESH_UPDATE)
            for h, p in self._clients.values()
            if h == call.handle
        ):
            self._respond(request, key, source, 491, now, to_tag=tag, call=call.handle)  # §14.2
            return
        try:
            agreed = negotiate(request, self.config.session_timer)
        except SipParseError as error:
            self._respond(request, key, source, 400, now, to_tag=tag, reason=error.reason[:60])
            return
        if isinstance(agreed, IntervalTooSmall):
            self._respond(request, key, source, 422, now, to_tag=tag, extra=agreed.headers)
            return
        assert call.sdp is not None  # a confirmed call always has its session
        body = b""
        media: NegotiatedMedia | None = None
        late_offer = False
        if request.body:
            try:
                answered = call.sdp.receive_offer(request.body)
            except IncompatibleMedia as error:
                # RFC 3261 §14.2: a failed re-INVITE leaves the session as it was.
                self._respond(
                    request,
                    key,
                    source,
                    488,
                    now,
                    to_tag=tag,
                    extra=(("Warning", error.warning),),
                    call=call.handle,
                )
                return
            except SdpError:
                self._respond(
                    request, key, source, 400, now, to_tag=tag, reason="Bad SDP", call=call.handle
                )
                return
            body, media = answered.answer, answered.media
        elif is_invite:
            body, late_offer = call.sdp.create_offer(), True  # §14.2: offer in the 2xx
        call.agreed = agreed
        call.timer = SessionTimer.start(agreed, now) if agreed is not None else None
        extra = list(self._contact_headers(call))
        if agreed is not None:
            extra.extend(agreed.headers)
        response = build_response(
            request,
            200,
            to_tag=tag,
            extra=self._server_headers(extra),
            body=body,
            content_type="application/sdp" if body else None,
        )
        if key is not None:
            self.transactions.send_response(key, response, now)
        if is_invite and key is not None:
            call.reinvite_key = key
            call.offered_late = late_offer
            self._retransmit_2xx(call, response, key, now)
        if media is not None:
            self._events.append(MediaUpdated(call=call.handle, media=media, request=request.method))

    def _on_ack(self, request: Request, now: float) -> None:
        did = dialog_id_of(request)
        handle = self._by_dialog.get((did.call_id, did.local_tag, did.remote_tag)) if did else None
        call = self._calls.get(handle) if handle else None
        if call is None or call.pending_2xx is None:
            return  # §17: an ACK matching nothing is dropped
        cseq = request.cseq
        if cseq is None or cseq.seq != call.pending_2xx.cseq:
            return
        call.pending_2xx = None
        if call.offered_late and call.sdp is not None and call.sdp.awaiting_answer:
            call.offered_late = False
            if request.body:
                try:
                    media = call.sdp.receive_answer(request.body)
                except SdpError:
                    media = None
                if media is not None:
                    self._events.append(MediaUpdated(call=call.handle, media=media, request="ACK"))
        if call.reinvite_key is not None:
            call.reinvite_key = None
            return
        self._step(call, CallInput.ACK)
        self._events.append(CallConfirmed(call=call.handle))
        if call.bye_wanted:
            call.bye_wanted = False
            self._step(call, CallInput.HANGUP)
            self._send_bye(call, now)
