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
``answer`` or ``reject``, and later ``hangup``.

Calling contract (the aioquic shape): feed ``receive_bytes(data, source, now)``,
``framing_failed``, ``handle_timer(now)`` and the decisions above; then drain
``messages_to_send()``, ``next_event()`` until ``None`` and re-arm one timer at
``get_timer()``. Decisions on a call that already ended (a CANCEL raced the owner)
return ``False`` and do nothing; a decision the call's state forbids, or an unknown
handle, raises ``LocalProtocolError``.

Call states are a table (:data:`CALL_TABLE`), ``(state, input) → next state``.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from .call_table import CALL_TABLE, CallInput, CallState
from .dialog import Dialog, DialogInput, dialog_id_of
from .errors import FramingError, LocalProtocolError, SipParseError
from .events import (
    MessageDiscarded,
    RequestReceived,
    ResponseReceived,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
)
from .info_dtmf import DTMF_INFO_TYPES, parse_info_dtmf
from .message import Peer, RandomSource, Request, Response, TransportKind, build_response, new_tag
from .offer_answer import Answered, IncompatibleMedia, NegotiatedMedia, SdpSession
from .received import stamp_received
from .sdp import SdpError
from .session_timer import (
    IntervalTooSmall,
    Refresher,
    SessionTimer,
    SessionTimerAgreed,
    SessionTimerConfig,
    negotiate,
)
from .transaction import Outgoing, TransactionKey, TransactionLayer, response_peer
from .uas_events import (
    CallConfirmed,
    CallEnded,
    CallOffered,
    DtmfInfoReceived,
    EndCause,
    MediaUpdated,
    RequestRefused,
    UasEvent,
)
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

#: Methods we implement (Allow).
UAS_METHODS: Final = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "UPDATE"})
#: Option tags we support (Supported; anything else in Require gets 420).
UAS_SUPPORTED: Final = frozenset({"timer"})
UAS_ACCEPT: Final = ("application/sdp", *DTMF_INFO_TYPES)
_ENDED_REMEMBERED: Final = 10_000  # handles of ended calls remembered for late decisions


@dataclass(frozen=True, slots=True)
class UasConfig:
    """Static settings of the UAS core.

    ``public_address`` goes into Contact and the Via of our requests; ``ports`` maps each
    transport we listen on to its (public) port. ``ring_timeout`` bounds how long a call
    may stay unanswered before 480.
    """

    public_address: str
    ports: dict[TransportKind, int]
    contact_user: str = "telepath"
    agent: str = "Telepath"
    session_timer: SessionTimerConfig = field(default_factory=SessionTimerConfig)
    ring_timeout: float = 120.0
    max_calls: int = 10_000


@dataclass(slots=True)
class _Pending2xx:
    """A 2xx to an INVITE that we retransmit until its ACK (§13.3.1.4)."""

    response: Response
    key: TransactionKey
    destination: Peer
    next_at: float
    interval: float
    give_up_at: float
    cseq: int


@dataclass(slots=True)
class _Call:
    handle: str
    invite: Request
    key: TransactionKey
    source: Peer
    state: CallState = CallState.OFFERED
    dialog: Dialog | None = None
    local_tag: str = ""
    sdp: SdpSession | None = None
    answer: bytes | None = None
    offered_late: bool = False  # the INVITE had no SDP: our offer goes in the 2xx
    timer: SessionTimer | None = None
    agreed: SessionTimerAgreed | None = None
    pending_2xx: _Pending2xx | None = None
    reinvite_key: TransactionKey | None = None  # a caller re-INVITE awaiting its ACK
    ring_deadline: float = 0.0
    bye_wanted: bool = False
    bye_extra: tuple[tuple[str, str], ...] = ()
    end_cause: EndCause | None = None


class _Purpose(enum.Enum):
    BYE = enum.auto()
    REFRESH_UPDATE = enum.auto()
    REFRESH_INVITE = enum.auto()


class UserAgentServer:
    """Calls over one transaction layer; see the module docstring for the contract."""

    def __init__(
        self,
        config: UasConfig,
        *,
        random: RandomSource,
        transactions: TransactionLayer | None = None,
    ) -> None:
        self.config = config
        self._random = random
        self.transactions = transactions or TransactionLayer(random=random, agent=config.agent)
        self._calls: dict[str, _Call] = {}
        self._by_invite: dict[TransactionKey, str] = {}
        self._by_dialog: dict[tuple[str, str, str], str] = {}
        self._by_merge: dict[tuple[str, str, int], str] = {}
        self._clients: dict[TransactionKey, tuple[str, _Purpose]] = {}
        self._events: deque[UasEvent] = deque()
        self._outgoing: list[Outgoing] = []
        self._counter = 0
        self._ended: deque[str] = deque()
        self._ended_set: set[str] = set()

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

    def _collect(self) -> None:
        self._outgoing.extend(self.transactions.messages_to_send())

    def _respond(
        self,
        request: Request,
        key: TransactionKey | None,
        source: Peer,
        status: int,
        now: float,
        *,
        reason: str | None = None,
        extra: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
        to_tag: str | None = None,
        call: str = "",
    ) -> None:
        response = build_response(
            request,
            status,
            reason,
            to_tag=to_tag or new_tag(self._random),
            extra=self._server_headers(extra),
            body=body,
            content_type=content_type,
        )
        if key is not None:
            try:
                self.transactions.send_response(key, response, now)
            except LocalProtocolError:
                return  # the transaction is gone (e.g. timed out meanwhile)
        else:
            self.transactions.send_stateless(response, response_peer(request.top_via, source))
        if status >= 300:
            self._events.append(
                RequestRefused(
                    call=call,
                    method=request.method,
                    status=status,
                    reason=reason or response.reason,
                    source=source,
                )
            )

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
        call = _Call(
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
        self, call: _Call, request: Request, source: Peer, key: TransactionKey | None, now: float
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
        self, call: _Call, request: Request, source: Peer, key: TransactionKey | None, now: float
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
            p in (_Purpose.REFRESH_INVITE, _Purpose.REFRESH_UPDATE)
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
            self._events.append(MediaUpdated(call=call.handle, media=media))

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
                    self._events.append(MediaUpdated(call=call.handle, media=media))
        if call.reinvite_key is not None:
            call.reinvite_key = None
            return
        self._step(call, CallInput.ACK)
        self._events.append(CallConfirmed(call=call.handle))
        if call.bye_wanted:
            call.bye_wanted = False
            self._step(call, CallInput.HANGUP)
            self._send_bye(call, now)

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

    # == responses to our client transactions ===============================================
    def _on_response(self, response: Response, key: TransactionKey, now: float) -> None:
        owner = self._clients.get(key)
        if owner is None:
            return
        handle, purpose = owner
        call = self._calls.get(handle)
        if response.status < 200:
            return
        if purpose is not _Purpose.REFRESH_INVITE or response.status >= 300:
            self._clients.pop(key, None)
        if call is None:
            return
        if purpose is _Purpose.BYE:
            self._step(call, CallInput.BYE_DONE)  # §15.1.1: any final response ends it
            self._finish(call, call.end_cause or EndCause.LOCAL_BYE, None)
            return
        if response.status in (408, 481):
            self._fail_refresh(call, now)  # §12.2.1.2: the dialog is gone
            return
        if 200 <= response.status < 300:
            if purpose is _Purpose.REFRESH_INVITE and call.dialog is not None:
                ack = call.dialog.ack(
                    response,
                    random=self._random,
                    via_host=self.config.public_address,
                    via_port=self._via_port(call),
                )
                self.transactions.send_stateless(ack, call.dialog.next_hop())
                if call.sdp is not None and call.sdp.awaiting_answer and response.body:
                    try:
                        media = call.sdp.receive_answer(response.body)
                    except SdpError:
                        media = None
                    if media is not None:
                        self._events.append(MediaUpdated(call=call.handle, media=media))
            if call.agreed is not None:
                call.timer = SessionTimer.start(call.agreed, now)
        elif call.timer is not None and call.agreed is not None:
            # A refresh refused for another reason: keep the old interval, let it expire.
            call.timer = SessionTimer(call.agreed.interval, Refresher.UAC, call.timer.started)

    def _on_client_failure(self, key: TransactionKey, now: float) -> None:
        owner = self._clients.pop(key, None)
        if owner is None:
            return
        call = self._calls.get(owner[0])
        if call is None:
            return
        if owner[1] is _Purpose.BYE:
            self._step(call, CallInput.BYE_DONE)  # §15.1.1: a timed-out BYE ends it too
            self._finish(call, call.end_cause or EndCause.LOCAL_BYE, None)
        else:
            self._fail_refresh(call, now)

    def _fail_refresh(self, call: _Call, now: float) -> None:
        call.end_cause = EndCause.REFRESH_FAILED
        self._step(call, CallInput.TIMEOUT)
        if call.state is CallState.ENDING:
            self._send_bye(call, now)

    # == timers ============================================================================
    def _call_deadline(self, call: _Call) -> float | None:
        times: list[float] = []
        if call.state in (CallState.OFFERED, CallState.RINGING):
            times.append(call.ring_deadline)
        if call.pending_2xx is not None:
            times.append(min(call.pending_2xx.next_at, call.pending_2xx.give_up_at))
        if call.timer is not None and call.state is CallState.CONFIRMED:
            times.append(call.timer.deadline)
        return min(times, default=None)

    def _call_timers(self, call: _Call, now: float) -> None:
        if call.state in (CallState.OFFERED, CallState.RINGING) and now >= call.ring_deadline:
            self._step(call, CallInput.TIMEOUT)
            response = build_response(
                call.invite, 480, to_tag=self._tag(call), extra=self._server_headers(())
            )
            with contextlib.suppress(LocalProtocolError):
                self.transactions.send_response(call.key, response, now)
            self._finish(call, EndCause.RING_TIMEOUT, 480)
            return
        pending = call.pending_2xx
        if pending is not None:
            if now >= pending.give_up_at:
                call.pending_2xx = None
                if call.reinvite_key is not None:
                    call.reinvite_key = None  # a lost ACK of a re-INVITE: keep the call
                else:
                    call.end_cause = EndCause.ACK_TIMEOUT
                    self._step(call, CallInput.TIMEOUT)
                    self._send_bye(call, now)  # §13.3.1.4: "SHOULD ... send a BYE"
                    return
            elif now >= pending.next_at:
                self._send_2xx_again(pending, now)
                pending.interval = min(pending.interval * 2, self.transactions.timers.t2)
                pending.next_at = now + pending.interval
        timer = call.timer
        if timer is not None and call.state is CallState.CONFIRMED:
            if now >= timer.expires_at:
                call.end_cause = EndCause.SESSION_EXPIRED  # RFC 4028 §10
                call.timer = None
                self._step(call, CallInput.TIMEOUT)
                self._send_bye(
                    call, now, extra=(("Reason", 'SIP;cause=408;text="Session expired"'),)
                )
            elif timer.refresh_at is not None and now >= timer.refresh_at:
                # Only once per interval: later refreshes restart the timer on success.
                call.timer = SessionTimer(timer.interval, Refresher.UAC, timer.started)
                self._send_refresh(call, now)

    def _retransmit_2xx(
        self, call: _Call, response: Response, key: TransactionKey, now: float
    ) -> None:
        timers = self.transactions.timers
        reliable = call.source.transport.reliable
        cseq = response.cseq
        call.pending_2xx = _Pending2xx(
            response=response,
            key=key,
            destination=response_peer(call.invite.top_via, call.source),
            # §13.3.1.4: on a reliable transport the 2xx is not retransmitted, but the wait
            # for the ACK is still bounded by 64*T1.
            next_at=float("inf") if reliable else now + timers.t1,
            interval=timers.t1,
            give_up_at=now + 64 * timers.t1,
            cseq=cseq.seq if cseq else 0,
        )

    def _send_2xx_again(self, pending: _Pending2xx, now: float) -> None:
        try:
            self.transactions.send_response(pending.key, pending.response, now)
        except LocalProtocolError:
            # RFC 6026: the transaction left Accepted (Timer L); the TU still retransmits.
            self.transactions.send_stateless(pending.response, pending.destination)

    # == requests we send ===================================================================
    def _via_port(self, call: _Call) -> int:
        return self.config.ports.get(call.source.transport, 5060)

    def _send_bye(self, call: _Call, now: float, extra: tuple[tuple[str, str], ...] = ()) -> None:
        dialog = call.dialog
        if dialog is None:
            self._finish(call, call.end_cause or EndCause.LOCAL_BYE, None)
            return
        headers = (*call.bye_extra, *extra, ("User-Agent", self.config.agent))
        bye = dialog.new_request(
            "BYE",
            random=self._random,
            extra=headers,
            via_host=self.config.public_address,
            via_port=self.config.ports.get(call.source.transport, 5060),
        )
        dialog.transition(DialogInput.BYE)
        key = self.transactions.send_request(bye, dialog.next_hop(), now)
        self._clients[key] = (call.handle, _Purpose.BYE)

    def _send_refresh(self, call: _Call, now: float) -> None:
        dialog, agreed = call.dialog, call.agreed
        if dialog is None or agreed is None or call.sdp is None:
            return
        headers = (
            ("Contact", self._contact(call)),
            ("Session-Expires", f"{agreed.interval};refresher=uas"),
            ("Supported", "timer"),
            ("User-Agent", self.config.agent),
        )
        host, port = self.config.public_address, self._via_port(call)
        if "UPDATE" in dialog.remote_allow:
            # RFC 4028 §7.4 / RFC 3311: an UPDATE without a body refreshes the session.
            update = dialog.new_request(
                "UPDATE", random=self._random, extra=headers, via_host=host, via_port=port
            )
            key = self.transactions.send_request(update, dialog.next_hop(), now)
            self._clients[key] = (call.handle, _Purpose.REFRESH_UPDATE)
        else:
            offer = call.sdp.create_offer()
            invite = dialog.new_request(
                "INVITE",
                random=self._random,
                extra=headers,
                via_host=host,
                via_port=port,
                body=offer,
                content_type="application/sdp",
            )
            key = self.transactions.send_request(invite, dialog.next_hop(), now)
            self._clients[key] = (call.handle, _Purpose.REFRESH_INVITE)

    # == helpers ===========================================================================
    def _get(self, call: str) -> _Call:
        found = self._calls.get(call)
        if found is None:
            raise LocalProtocolError(f"no call {call!r}")
        return found

    def _call_or_none(self, call: str) -> _Call | None:
        if call in self._ended_set:
            return None  # it ended meanwhile (CANCEL, BYE, timeout): not the owner's bug
        found = self._get(call)
        return None if found.state is CallState.ENDED else found

    def _live(self, call: str) -> _Call:
        found = self._get(call)
        if found.state is CallState.ENDED:
            raise LocalProtocolError("the call has ended")
        return found

    def _step(self, call: _Call, input_: CallInput) -> None:
        nxt = CALL_TABLE.get((call.state, input_))
        if nxt is None:
            if input_.is_local:
                raise LocalProtocolError(f"{input_.name} not allowed in {call.state.name}")
            return
        call.state = nxt

    def _tag(self, call: _Call) -> str:
        return call.local_tag

    def _contact(self, call: _Call) -> str:
        transport = call.source.transport
        port = self.config.ports.get(transport, 5060)
        scheme = "sips" if call.dialog is not None and call.dialog.secure else "sip"
        param = "" if transport is TransportKind.UDP else f";transport={transport.value.lower()}"
        if transport is TransportKind.TLS:
            param = ";transport=tls" if scheme == "sip" else ""
        return f"<{scheme}:{self.config.contact_user}@{self.config.public_address}:{port}{param}>"

    def _contact_headers(self, call: _Call) -> list[tuple[str, str]]:
        return [("Contact", self._contact(call))]

    def _capabilities(self) -> tuple[tuple[str, str], ...]:
        return (
            ("Allow", ", ".join(sorted(UAS_METHODS))),
            ("Accept", ", ".join(UAS_ACCEPT)),
            ("Supported", ", ".join(sorted(UAS_SUPPORTED))),
        )

    def _server_headers(self, extra: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        return [*extra, ("Server", self.config.agent)]

    def _dialog_response(
        self, call: _Call, status: int, *, body: bytes = b"", timers: bool = False
    ) -> Response:
        """A dialog-creating 18x/2xx: To-tag, Contact, Record-Route copied (§12.1.1)."""
        if call.dialog is None:
            call.dialog = Dialog.from_invite(
                call.invite,
                local_tag=call.local_tag,
                source=call.source,
                local_cseq=1 + int.from_bytes(self._random(2), "big"),
            )
            did = call.dialog.id
            self._by_dialog[(did.call_id, did.local_tag, did.remote_tag)] = call.handle
        extra: list[tuple[str, str]] = [
            ("Record-Route", rr) for rr in call.invite.headers.get_all("Record-Route")
        ]
        extra.extend(self._contact_headers(call))
        if status >= 200:
            extra.extend(self._capabilities())
        if timers and call.agreed is not None:
            extra.extend(call.agreed.headers)
        return build_response(
            call.invite,
            status,
            to_tag=call.local_tag,
            extra=self._server_headers(extra),
            body=body,
            content_type="application/sdp" if body else None,
        )

    def _finish(self, call: _Call, cause: EndCause, status: int | None) -> None:
        call.state = CallState.ENDED
        call.pending_2xx = None
        call.timer = None
        if call.dialog is not None:
            call.dialog.transition(DialogInput.BYE)
        self._forget(call)
        self._events.append(CallEnded(call=call.handle, cause=cause, status=status))

    def _forget(self, call: _Call) -> None:
        self._by_invite.pop(call.key, None)
        merge = [k for k, v in self._by_merge.items() if v == call.handle]
        for k in merge:
            del self._by_merge[k]
        if call.dialog is not None:
            did = call.dialog.id
            # Keep the dialog mapping until the BYE is answered only while ENDING; once
            # ended, late requests get 481 (§12.2.2).
            self._by_dialog.pop((did.call_id, did.local_tag, did.remote_tag), None)
        self._calls.pop(call.handle, None)
        self._ended.append(call.handle)
        self._ended_set.add(call.handle)
        if len(self._ended) > _ENDED_REMEMBERED:
            self._ended_set.discard(self._ended.popleft())
