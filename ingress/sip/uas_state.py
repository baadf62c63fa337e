"""The UAS core's call records and the helpers every part of it shares (RFC 3261 §12.1.1,
§13.3.1.4), sans-I/O.

:class:`UasState` holds what :class:`~.uas.UserAgentServer` knows about its calls (one
:class:`CallRecord` per INVITE, indexed by transaction, dialog and merge key) and builds
what all parts send: dialog-creating responses (To-tag, Contact, Record-Route copied),
error responses with ``RequestRefused`` for the owner, and the retransmission state of
our 2xx (:class:`Pending2xx`). It decides nothing by itself; the parts that do are
:mod:`.uas_client` (our BYE and session refreshes, the call timers), :mod:`.uas_dialog`
(requests inside a dialog) and :mod:`.uas` (new INVITEs, CANCEL, the owner's decisions).
"""

from __future__ import annotations

import enum
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from .call_table import CALL_TABLE, CallInput, CallState
from .dialog import Dialog, DialogInput
from .errors import LocalProtocolError
from .info_dtmf import DTMF_INFO_TYPES
from .message import Peer, RandomSource, Request, Response, TransportKind, build_response, new_tag
from .offer_answer import SdpSession
from .session_timer import SessionTimer, SessionTimerAgreed, SessionTimerConfig
from .transaction import Outgoing, TransactionKey, TransactionLayer, response_peer
from .uas_events import CallEnded, EndCause, RequestRefused, UasEvent

__all__ = [
    "UAS_ACCEPT",
    "UAS_METHODS",
    "UAS_SUPPORTED",
    "CallRecord",
    "ClientPurpose",
    "Pending2xx",
    "UasConfig",
    "UasState",
]


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
class Pending2xx:
    """A 2xx to an INVITE that we retransmit until its ACK (§13.3.1.4)."""

    response: Response
    key: TransactionKey
    destination: Peer
    next_at: float
    interval: float
    give_up_at: float
    cseq: int


@dataclass(slots=True)
class CallRecord:
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
    pending_2xx: Pending2xx | None = None
    reinvite_key: TransactionKey | None = None  # a caller re-INVITE awaiting its ACK
    ring_deadline: float = 0.0
    bye_wanted: bool = False
    bye_extra: tuple[tuple[str, str], ...] = ()
    end_cause: EndCause | None = None


class ClientPurpose(enum.Enum):
    BYE = enum.auto()
    REFRESH_UPDATE = enum.auto()
    REFRESH_INVITE = enum.auto()


class UasState:
    """Calls and shared helpers of the UAS core (see the module docstring)."""

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
        self._calls: dict[str, CallRecord] = {}
        self._by_invite: dict[TransactionKey, str] = {}
        self._by_dialog: dict[tuple[str, str, str], str] = {}
        self._by_merge: dict[tuple[str, str, int], str] = {}
        self._clients: dict[TransactionKey, tuple[str, ClientPurpose]] = {}
        self._events: deque[UasEvent] = deque()
        self._outgoing: list[Outgoing] = []
        self._counter = 0
        self._ended: deque[str] = deque()
        self._ended_set: set[str] = set()
        self._silenced: OrderedDict[str, float] = OrderedDict()
        # Set while the node drains: out-of-dialog OPTIONS and new INVITEs get 503 with
        # this Retry-After, so a load balancer probing with OPTIONS takes the node out.
        self._draining_retry_after: int | None = None
        self.silent_drops = 0  # new INVITEs dropped from silenced sources

    # == output plumbing and responses ======================================================
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

    def _retransmit_2xx(
        self, call: CallRecord, response: Response, key: TransactionKey, now: float
    ) -> None:
        timers = self.transactions.timers
        reliable = call.source.transport.reliable
        cseq = response.cseq
        call.pending_2xx = Pending2xx(
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

    def _send_2xx_again(self, pending: Pending2xx, now: float) -> None:
        try:
            self.transactions.send_response(pending.key, pending.response, now)
        except LocalProtocolError:
            # RFC 6026: the transaction left Accepted (Timer L); the TU still retransmits.
            self.transactions.send_stateless(pending.response, pending.destination)

    def _via_port(self, call: CallRecord) -> int:
        return self.config.ports.get(call.source.transport, 5060)

    # == helpers ===========================================================================
    def _get(self, call: str) -> CallRecord:
        found = self._calls.get(call)
        if found is None:
            raise LocalProtocolError(f"no call {call!r}")
        return found

    def _call_or_none(self, call: str) -> CallRecord | None:
        if call in self._ended_set:
            return None  # it ended meanwhile (CANCEL, BYE, timeout): not the owner's bug
        found = self._get(call)
        return None if found.state is CallState.ENDED else found

    def _live(self, call: str) -> CallRecord:
        found = self._get(call)
        if found.state is CallState.ENDED:
            raise LocalProtocolError("the call has ended")
        return found

    def _step(self, call: CallRecord, input_: CallInput) -> None:
        nxt = CALL_TABLE.get((call.state, input_))
        if nxt is None:
            if input_.is_local:
                raise LocalProtocolError(f"{input_.name} not allowed in {call.state.name}")
            return
        call.state = nxt

    def _tag(self, call: CallRecord) -> str:
        return call.local_tag

    def _contact(self, call: CallRecord) -> str:
        transport = call.source.transport
        port = self.config.ports.get(transport, 5060)
        scheme = "sips" if call.dialog is not None and call.dialog.secure else "sip"
        param = "" if transport is TransportKind.UDP else f";transport={transport.value.lower()}"
        if transport is TransportKind.TLS:
            param = ";transport=tls" if scheme == "sip" else ""
        return f"<{scheme}:{self.config.contact_user}@{self.config.public_address}:{port}{param}>"

    def _contact_headers(self, call: CallRecord) -> list[tuple[str, str]]:
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
        self, call: CallRecord, status: int, *, body: bytes = b"", timers: bool = False
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

    def _finish(self, call: CallRecord, cause: EndCause, status: int | None) -> None:
        call.state = CallState.ENDED
        call.pending_2xx = None
        call.timer = None
        if call.dialog is not None:
            call.dialog.transition(DialogInput.BYE)
        self._forget(call)
        self._events.append(CallEnded(call=call.handle, cause=cause, status=status))

    def _forget(self, call: CallRecord) -> None:
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
