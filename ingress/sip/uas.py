"""The SIP user-agent server core (RFC 3261 §8.2, §9, §12-15; RFC 4028; RFC 6026), sans-I/O.

:class:`UserAgentServer` sits on a :class:`~.transaction.TransactionLayer` and turns
transactions into calls. It decides everything the protocol decides by itself:

* protocol checks of every request (``validation.check_request_detail``: 400/405/415/416/
  420/501 with ``Allow``/``Unsupported``/``Accept``), merged requests (482, §8.2.2.2);
* OPTIONS → 200 with ``Allow``, ``Accept``, ``Supported`` in and out of dialogs;
* CANCEL → 200 for the CANCEL and 487 for the INVITE (§9.2), or 481 when nothing matches;
* in-dialog requests: dialog matching and CSeq order (481/500, §12.2.2), BYE → 200,
  re-INVITE and UPDATE through the call's :class:`~.offer_answer.SdpSession` (hold,
  resume, session refresh; 488 keeps the call), INFO DTMF, the ACK for our 2xx;
* RFC 4028 session timers (422, refresher, refresh by UPDATE or re-INVITE, BYE on expiry);
* our 2xx retransmitted (T1 doubling to T2) until the ACK, BYE after 64*T1 without one
  (§13.3.1.4); our BYE as a client transaction, finished by any final response, 408/481
  or a timeout (§15.1.1).

What it leaves to its owner (the gateway): who may call (digest, policy, trunk limits) and
when to answer. For every new INVITE it reports :class:`~.uas_events.CallOffered`; the
owner then calls :meth:`~UserAgentServer.set_offer` (SDP negotiation), ``ring``,
``answer`` or ``reject``, and later ``hangup``. Against a source that keeps failing
authentication it may ``drop`` an INVITE without any response and ``silence`` the source
(its new INVITEs are dropped before any transaction exists) for a cool-off.

Calling contract (the aioquic shape): feed ``receive_bytes(data, source, now)``,
``framing_failed``, ``handle_timer(now)`` and the decisions above; then drain
``messages_to_send()``, ``next_event()`` until ``None`` and re-arm one timer at
``get_timer()``. Decisions on a call that already ended (a CANCEL raced the owner)
return ``False`` and do nothing; a decision the call's state forbids, or an unknown
handle, raises ``LocalProtocolError``.

Call states are a table (:data:`CALL_TABLE`), ``(state, input) → next state``.

The core is split by RFC concept: this module handles new INVITEs, CANCEL and the owner's
decisions; :mod:`.uas_dialog` the requests inside dialogs; :mod:`.uas_client` our BYE,
our session refreshes and the call timers; :mod:`.uas_state` the call records and the
helpers they share.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Final

from .call_table import CALL_TABLE, CallInput, CallState
from .dialog import DialogInput, dialog_id_of
from .errors import FramingError, LocalProtocolError, SipParseError
from .events import (
    MessageDiscarded,
    RequestReceived,
    ResponseReceived,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
)
from .message import Peer, Request, build_response, new_tag
from .offer_answer import Answered, NegotiatedMedia, SdpSession
from .received import stamp_received
from .session_timer import IntervalTooSmall, SessionTimer, negotiate
from .transaction import Outgoing, TransactionKey
from .uas_dialog import InDialog
from .uas_events import CallOffered, EndCause, UasEvent
from .uas_state import UAS_ACCEPT, UAS_METHODS, UAS_SUPPORTED, CallRecord, UasConfig
from .validation import check_request_detail

__all__ = [
    "CALL_TABLE",
    "CallInput",
    "CallState",
    "UasConfig",
    "UserAgentServer",
    "stamp_received",
]

logger = logging.getLogger(__name__)

_SILENCED_REMEMBERED: Final = 10_000  # sources whose new INVITEs we drop, oldest forgotten


class UserAgentServer(InDialog):
    """Calls over one transaction layer; see the module docstring for the contract."""

    # == input ===========================================================================
    def receive_bytes(self, data: bytes, source: Peer, now: float) -> None:
        """One datagram or framed stream message from ``source``. Never raises."""
        try:
            message = self.transactions.parser.parse(data)
        except SipParseError:
            # Keep-alives and broken input: the transaction layer answers or drops them.
            self.transactions.receive_bytes(data, source, now)
        else:
            if isinstance(message, Request):
                if self._silenced_invite(message, source, now):
                    return
                message = stamp_received(message, source)
            self.transactions.receive_message(message, source, now)
        self._process(now)

    def framing_failed(self, error: FramingError, source: Peer) -> None:
        """A stream lost its framing: queue the 400/513 if possible (close it afterwards)."""
        self.transactions.framing_failed(error, source)

    def handle_timer(self, now: float) -> None:
        """Fire everything due at ``now``."""
        self.transactions.handle_timer(now)
        self._process(now)
        for call in list(self._calls.values()):
            self._call_timers(call, now)
        self._process(now)

    def transport_failed(self, destination: Peer, now: float) -> None:
        """The stream connection to ``destination`` closed.

        Unanswered calls that came on it end (their final response can no longer be
        delivered, RFC 3261 §18.2.2). Answered calls go on: RTP does not depend on the
        signalling connection, and a BYE we cannot deliver still completes by Timer F.
        """
        del now
        for call in list(self._calls.values()):
            if call.source == destination and call.state in (CallState.OFFERED, CallState.RINGING):
                self._finish(call, EndCause.TRANSPORT_FAILED, None)

    # == output ==========================================================================
    def messages_to_send(self) -> list[Outgoing]:
        """Everything to transmit, in order (the queue is cleared)."""
        self._collect()
        out, self._outgoing = self._outgoing, []
        return out

    def next_event(self) -> UasEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        deadlines = [self.transactions.get_timer()]
        deadlines.extend(self._call_deadline(c) for c in self._calls.values())
        return min((d for d in deadlines if d is not None), default=None)

    # == the owner's decisions =============================================================
    def call_request(self, call: str) -> Request:
        """The INVITE that created ``call``."""
        return self._get(call).invite

    def call_state(self, call: str) -> CallState:
        if call in self._ended_set:
            return CallState.ENDED
        return self._get(call).state

    def media(self, call: str) -> NegotiatedMedia | None:
        """The media negotiated so far (``None`` before an answer to our own offer)."""
        sdp = self._get(call).sdp
        return None if sdp is None else sdp.media

    def set_offer(self, call: str, session: SdpSession) -> NegotiatedMedia | None:
        """Negotiate the INVITE's SDP with ``session`` (kept for re-INVITEs).

        Returns the media (``None`` when the INVITE had no SDP: our offer then goes in
        the 2xx and the answer comes in the ACK, reported as ``MediaUpdated``).

        Raises:
            SdpError: ``IncompatibleMedia`` (answer 488 with its ``warning``) or
                ``MalformedSdp`` (answer 400); the call is untouched.
        """
        c = self._live(call)
        if c.sdp is not None:
            raise LocalProtocolError("the offer was already negotiated")
        if not c.invite.body:
            c.sdp = session
            c.offered_late = True
            return None
        answered: Answered = session.receive_offer(c.invite.body)
        c.sdp = session
        c.answer = answered.answer
        return answered.media

    def ring(self, call: str, now: float, *, status: int = 180, early_media: bool = False) -> bool:
        """Send 180 Ringing (or 183 Session Progress with the SDP answer if ``early_media``)."""
        c = self._call_or_none(call)
        if c is None:
            return False
        if not 101 <= status <= 199:
            raise LocalProtocolError("ring needs a provisional status")
        self._step(c, CallInput.RING)
        body = c.answer if early_media and c.answer is not None else b""
        response = self._dialog_response(c, status, body=body)
        self.transactions.send_response(c.key, response, now)
        return True

    def answer(self, call: str, now: float) -> bool:
        """Send 200 OK with the SDP answer (or our offer) and start waiting for the ACK."""
        c = self._call_or_none(call)
        if c is None:
            return False
        if c.sdp is None:
            raise LocalProtocolError("set_offer() must come before answer()")
        self._step(c, CallInput.ANSWER)
        body = c.sdp.create_offer() if c.offered_late else (c.answer or b"")
        response = self._dialog_response(c, 200, body=body, timers=True)
        self.transactions.send_response(c.key, response, now)
        assert c.dialog is not None  # set by _dialog_response
        c.dialog.transition(DialogInput.SENT_2XX)
        self._retransmit_2xx(c, response, c.key, now)
        if c.agreed is not None:
            c.timer = SessionTimer.start(c.agreed, now)
        return True

    def reject(
        self,
        call: str,
        status: int,
        now: float,
        *,
        reason: str | None = None,
        extra: Iterable[tuple[str, str]] = (),
    ) -> bool:
        """Send a final failure response (3xx-6xx) to the INVITE; the call ends."""
        c = self._call_or_none(call)
        if c is None:
            return False
        if not 300 <= status <= 699:
            raise LocalProtocolError("reject needs a 3xx-6xx status")
        self._step(c, CallInput.REJECT)
        response = build_response(
            c.invite, status, reason, to_tag=self._tag(c), extra=self._server_headers(extra)
        )
        self.transactions.send_response(c.key, response, now)
        self._finish(c, EndCause.REJECTED, status)
        return True

    def drop(self, call: str, now: float) -> bool:
        """Drop an unanswered INVITE without any response (its transaction is discarded).

        ``CallEnded(DROPPED)`` follows. For sources that keep failing authentication:
        after one 403 they get silence (issue: "403 and silent drops for a cool-off").
        Returns ``False`` if the call is already over.
        """
        del now
        c = self._call_or_none(call)
        if c is None:
            return False
        self._step(c, CallInput.REJECT)  # raises once a final response went out
        self.transactions.discard(c.key)
        self._finish(c, EndCause.DROPPED, None)
        return True

    def set_draining(self, retry_after: int) -> None:
        """Refuse new work from now on: out-of-dialog OPTIONS and new INVITEs get 503 with
        ``Retry-After: retry_after`` (RFC 3261 §21.5.4). Dialogs already up carry on; a
        SIP load balancer probing with OPTIONS (Kamailio's dispatcher) takes the node out."""
        self._draining_retry_after = max(1, retry_after)

    def silence(self, host: str, until: float) -> None:
        """Drop every new INVITE from ``host`` unanswered (not even 100 Trying) until
        ``until``. Requests inside dialogs, ACKs, CANCELs and OPTIONS still get through,
        so calls already up from that address are not hurt."""
        self._silenced[host] = until
        self._silenced.move_to_end(host)
        while len(self._silenced) > _SILENCED_REMEMBERED:
            self._silenced.popitem(last=False)

    def is_silenced(self, host: str, now: float) -> bool:
        """Whether new INVITEs from ``host`` are being dropped at ``now``."""
        until = self._silenced.get(host)
        if until is None:
            return False
        if until > now:
            return True
        del self._silenced[host]
        return False

    def hangup(self, call: str, now: float, *, extra: Iterable[tuple[str, str]] = ()) -> bool:
        """End an answered call with BYE (after the ACK, §15). ``CallEnded(LOCAL_BYE)``
        follows when the BYE completes. Returns ``False`` if the call is already over."""
        c = self._call_or_none(call)
        if c is None or c.state is CallState.ENDING:
            return False
        if c.state in (CallState.OFFERED, CallState.RINGING):
            raise LocalProtocolError("an unanswered call is rejected, not hung up")
        c.bye_extra = tuple(extra)
        self._step(c, CallInput.HANGUP)
        if c.state is CallState.ANSWERED:
            c.bye_wanted = True  # §15: "MUST NOT send a BYE ... until it has received an ACK"
        else:
            self._send_bye(c, now)
        return True

    # == internals: events from the transaction layer =======================================
    def _process(self, now: float) -> None:
        while (event := self.transactions.next_event()) is not None:
            match event:
                case RequestReceived(request=request, source=source, key=key, cancels=cancels):
                    self._on_request(request, source, key, cancels, now)
                case ResponseReceived(response=response, key=key):
                    self._on_response(response, key, now)
                case TransactionTimedOut(key=key) | TransportFailed(key=key):
                    self._on_client_failure(key, now)
                case TransactionTerminated(key=key):
                    if not key.server:
                        self._clients.pop(key, None)
                case MessageDiscarded():
                    pass  # the transaction layer answered or dropped it

    def _silenced_invite(self, request: Request, source: Peer, now: float) -> bool:
        if request.method != "INVITE" or not self.is_silenced(source.host, now):
            return False
        try:
            to = request.to
        except SipParseError:
            to = None  # broken: certainly not a request of one of our dialogs
        if to is not None and to.tag:
            return False  # a re-INVITE belongs to a dialog that exists already
        self.silent_drops += 1
        return True

    def _on_request(
        self,
        request: Request,
        source: Peer,
        key: TransactionKey | None,
        cancels: TransactionKey | None,
        now: float,
    ) -> None:
        if request.method == "ACK":
            self._on_ack(request, now)
            return
        if request.method == "CANCEL":
            self._on_cancel(request, source, key, cancels, now)
            return
        rejection = check_request_detail(
            request, methods=UAS_METHODS, supported=UAS_SUPPORTED, body_types=UAS_ACCEPT
        )
        if rejection is not None:
            self._respond(
                request, key, source, rejection.status, now, extra=rejection.headers, reason=None
            )
            return
        if dialog_id_of(request) is None:
            self._out_of_dialog(request, source, key, now)
        else:
            self._in_dialog(request, source, key, now)

    def _out_of_dialog(
        self, request: Request, source: Peer, key: TransactionKey | None, now: float
    ) -> None:
        if self._draining_retry_after is not None and request.method in ("OPTIONS", "INVITE"):
            retry = (("Retry-After", str(self._draining_retry_after)),)
            self._respond(request, key, source, 503, now, extra=retry)
            return
        if request.method == "OPTIONS":
            self._respond(request, key, source, 200, now, extra=self._capabilities())
            return
        if request.method != "INVITE":
            # §12.2.2 / RFC 3261 §15: BYE, INFO, UPDATE without a dialog.
            self._respond(request, key, source, 481, now)
            return
        if key is None:
            return
        cseq, from_ = request.cseq, request.from_
        merge = (request.call_id or "", (from_.tag or "") if from_ else "", cseq.seq if cseq else 0)
        if merge in self._by_merge:
            # §8.2.2.2: the same request arrived along another path.
            self._respond(request, key, source, 482, now)
            return
        if (
            sum(1 for c in self._calls.values() if c.state is not CallState.ENDED)
            >= self.config.max_calls
        ):
            self._respond(request, key, source, 503, now, extra=(("Retry-After", "5"),))
            return
        try:
            agreed = negotiate(request, self.config.session_timer)
        except SipParseError as error:
            self._respond(request, key, source, 400, now, reason=error.reason[:60])
            return
        if isinstance(agreed, IntervalTooSmall):
            self._respond(request, key, source, 422, now, extra=agreed.headers)
            return
        self._counter += 1
        handle = f"c{self._counter}"
        call = CallRecord(
            handle,
            request,
            key,
            source,
            agreed=agreed,
            ring_deadline=now + self.config.ring_timeout,
        )
        call.local_tag = new_tag(self._random)
        self._calls[handle] = call
        self._by_invite[key] = handle
        self._by_merge[merge] = handle
        self._events.append(CallOffered(call=handle, request=request, source=source))

    def _on_cancel(
        self,
        request: Request,
        source: Peer,
        key: TransactionKey | None,
        cancels: TransactionKey | None,
        now: float,
    ) -> None:
        handle = self._by_invite.get(cancels) if cancels is not None else None
        call = self._calls.get(handle) if handle else None
        if cancels is None:
            self._respond(request, key, source, 481, now)  # §9.2: no matching transaction
            return
        tag = call.local_tag if call is not None else None
        self._respond(request, key, source, 200, now, to_tag=tag)  # §9.2
        if call is None or call.state not in (CallState.OFFERED, CallState.RINGING):
            return  # §9.2: the final response was already sent; the CANCEL has no effect
        self._step(call, CallInput.CANCEL)
        self._respond(call.invite, call.key, call.source, 487, now, to_tag=call.local_tag)
        self._finish(call, EndCause.CALLER_CANCEL, 487)
