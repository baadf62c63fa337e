"""SIP transactions (RFC 3261 §17, RFC 6026) as explicit state tables, and the layer
that matches messages to them.

Theory of operation
-------------------
Each of the four machines is a table ``(state, input) -> (action, next_state)`` with the
RFC section beside each row. Inputs are what arrives (``RECV_*``), what the TU asks for
(``SEND_*``), timers firing (``TIMER_*``) and ``TRANSPORT_ERROR``. A pair that is not in a
table is resolved by :meth:`Transaction.transition`:

* a local input (``SEND_*``) is a bug in the caller: ``LocalProtocolError``, state kept;
* anything else (a stray or retransmitted message, a stale timer) is absorbed: the state
  stays as it is and nothing happens.

Entering a state (re)starts that state's timers (``_ENTER``); leaving one stops the old
ones, except the non-INVITE client's Trying→Proceeding, where E and F keep running
(§17.1.2.2). On a reliable transport the retransmission timers A, E, G are never started
and D, I, J, K are zero, i.e. fire at once (§17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2).

Calling contract (aioquic style, every call non-blocking, time passed in as ``now``)
----------------------------------------------------------------------------------
``TransactionLayer``: feed ``receive_bytes(data, source, now)`` (one datagram or one framed
stream message) or ``receive_message``; act through ``send_request``,
``send_response``, ``send_stateless``, ``transport_error``; then always drain
``messages_to_send()`` (serialise and send each ``Outgoing``), ``next_event()`` until
``None``, and re-arm one timer at ``get_timer()``, calling ``handle_timer(now)`` when it
fires. Only ``LocalProtocolError`` is raised, and only for caller bugs.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import ClassVar, Final, Generic, TypeVar

from .errors import FramingError, LocalProtocolError, SipParseError
from .events import (
    MessageDiscarded,
    RequestReceived,
    ResponseReceived,
    SipEvent,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
)
from .headers import Headers, Via
from .message import (
    BRANCH_MAGIC_COOKIE,
    Peer,
    RandomSource,
    Request,
    Response,
    build_response,
    new_tag,
)
from .parser import MessageParser, error_response
from .timers import SipTimers

__all__ = [
    "Action",
    "IctState",
    "InviteClientTransaction",
    "InviteServerTransaction",
    "IstState",
    "NictState",
    "NistState",
    "NonInviteClientTransaction",
    "NonInviteServerTransaction",
    "Outgoing",
    "Transaction",
    "TransactionKey",
    "TransactionLayer",
    "TxInput",
    "client_key",
    "response_peer",
    "server_key",
]

logger = logging.getLogger(__name__)


class TxInput(enum.Enum):
    """Everything that can happen to a transaction."""

    RECV_REQUEST = enum.auto()  # the request again (a retransmission)
    RECV_ACK = enum.auto()
    RECV_1XX = enum.auto()
    RECV_2XX = enum.auto()
    RECV_3XX_6XX = enum.auto()
    SEND_1XX = enum.auto()
    SEND_2XX = enum.auto()
    SEND_3XX_6XX = enum.auto()
    TIMER_A = enum.auto()
    TIMER_B = enum.auto()
    TIMER_D = enum.auto()
    TIMER_E = enum.auto()
    TIMER_F = enum.auto()
    TIMER_G = enum.auto()
    TIMER_H = enum.auto()
    TIMER_I = enum.auto()
    TIMER_J = enum.auto()
    TIMER_K = enum.auto()
    TIMER_L = enum.auto()
    TIMER_M = enum.auto()
    TRANSPORT_ERROR = enum.auto()

    @property
    def is_local(self) -> bool:
        """Inputs the TU causes; a misplaced one is a bug on our side."""
        return self.name.startswith("SEND_")


class Action(enum.Enum):
    """Side effects of a transition."""

    NONE = enum.auto()  # absorb
    SEND = enum.auto()  # transmit the TU's response and remember it
    RESEND = enum.auto()  # retransmit the last message we sent
    RESEND_BACKOFF = enum.auto()  # retransmit and double the timer, capped at T2
    PASS_UP = enum.auto()  # report the message to the TU
    ACK_PASS_UP = enum.auto()  # send ACK for a non-2xx final response, then report it
    RESEND_ACK = enum.auto()
    TIMEOUT = enum.auto()  # report TransactionTimedOut
    FAIL = enum.auto()  # report TransportFailed


class IstState(enum.Enum):
    """INVITE server transaction (RFC 3261 §17.2.1, Figure 7 as amended by RFC 6026)."""

    PROCEEDING = enum.auto()
    COMPLETED = enum.auto()
    CONFIRMED = enum.auto()
    ACCEPTED = enum.auto()
    TERMINATED = enum.auto()


class NistState(enum.Enum):
    """Non-INVITE server transaction (RFC 3261 §17.2.2, Figure 8)."""

    TRYING = enum.auto()
    PROCEEDING = enum.auto()
    COMPLETED = enum.auto()
    TERMINATED = enum.auto()


class IctState(enum.Enum):
    """INVITE client transaction (RFC 3261 §17.1.1, Figure 5 as amended by RFC 6026)."""

    CALLING = enum.auto()
    PROCEEDING = enum.auto()
    COMPLETED = enum.auto()
    ACCEPTED = enum.auto()
    TERMINATED = enum.auto()


class NictState(enum.Enum):
    """Non-INVITE client transaction (RFC 3261 §17.1.2, Figure 6)."""

    TRYING = enum.auto()
    PROCEEDING = enum.auto()
    COMPLETED = enum.auto()
    TERMINATED = enum.auto()


In, Do = TxInput, Action
_IS, _NS, _IC, _NC = IstState, NistState, IctState, NictState

# fmt: off
IST_TABLE: Final[Mapping[tuple[IstState, TxInput], tuple[Action, IstState]]] = {
    (_IS.PROCEEDING, In.RECV_REQUEST):    (Do.RESEND, _IS.PROCEEDING),       # §17.2.1 resend provisional
    (_IS.PROCEEDING, In.SEND_1XX):        (Do.SEND, _IS.PROCEEDING),         # §17.2.1
    (_IS.PROCEEDING, In.SEND_2XX):        (Do.SEND, _IS.ACCEPTED),           # RFC 6026 §7.1
    (_IS.PROCEEDING, In.SEND_3XX_6XX):    (Do.SEND, _IS.COMPLETED),          # §17.2.1
    (_IS.PROCEEDING, In.TRANSPORT_ERROR): (Do.FAIL, _IS.TERMINATED),         # §17.2.4
    (_IS.COMPLETED, In.RECV_REQUEST):     (Do.RESEND, _IS.COMPLETED),        # §17.2.1 resend final
    (_IS.COMPLETED, In.TIMER_G):          (Do.RESEND_BACKOFF, _IS.COMPLETED),  # §17.2.1 min(2G, T2)
    (_IS.COMPLETED, In.RECV_ACK):         (Do.NONE, _IS.CONFIRMED),          # §17.2.1 start Timer I
    (_IS.COMPLETED, In.TIMER_H):          (Do.TIMEOUT, _IS.TERMINATED),      # §17.2.1 no ACK
    (_IS.COMPLETED, In.TRANSPORT_ERROR):  (Do.FAIL, _IS.TERMINATED),         # §17.2.4
    (_IS.CONFIRMED, In.TIMER_I):          (Do.NONE, _IS.TERMINATED),         # §17.2.1 (ACKs absorbed)
    (_IS.ACCEPTED, In.SEND_2XX):          (Do.SEND, _IS.ACCEPTED),           # RFC 6026 §7.1 TU retransmits 2xx
    (_IS.ACCEPTED, In.RECV_ACK):          (Do.PASS_UP, _IS.ACCEPTED),        # RFC 6026 §7.1 ACK to the TU
    (_IS.ACCEPTED, In.TIMER_L):           (Do.NONE, _IS.TERMINATED),         # RFC 6026 §7.1
}

NIST_TABLE: Final[Mapping[tuple[NistState, TxInput], tuple[Action, NistState]]] = {
    (_NS.TRYING, In.SEND_1XX):            (Do.SEND, _NS.PROCEEDING),         # §17.2.2
    (_NS.TRYING, In.SEND_2XX):            (Do.SEND, _NS.COMPLETED),          # §17.2.2
    (_NS.TRYING, In.SEND_3XX_6XX):        (Do.SEND, _NS.COMPLETED),          # §17.2.2
    (_NS.TRYING, In.TRANSPORT_ERROR):     (Do.FAIL, _NS.TERMINATED),         # §17.2.4
    (_NS.PROCEEDING, In.RECV_REQUEST):    (Do.RESEND, _NS.PROCEEDING),       # §17.2.2 resend provisional
    (_NS.PROCEEDING, In.SEND_1XX):        (Do.SEND, _NS.PROCEEDING),         # §17.2.2
    (_NS.PROCEEDING, In.SEND_2XX):        (Do.SEND, _NS.COMPLETED),          # §17.2.2
    (_NS.PROCEEDING, In.SEND_3XX_6XX):    (Do.SEND, _NS.COMPLETED),          # §17.2.2
    (_NS.PROCEEDING, In.TRANSPORT_ERROR): (Do.FAIL, _NS.TERMINATED),         # §17.2.4
    (_NS.COMPLETED, In.RECV_REQUEST):     (Do.RESEND, _NS.COMPLETED),        # §17.2.2 resend final
    (_NS.COMPLETED, In.TIMER_J):          (Do.NONE, _NS.TERMINATED),         # §17.2.2
    (_NS.COMPLETED, In.TRANSPORT_ERROR):  (Do.FAIL, _NS.TERMINATED),         # §17.2.4
}

ICT_TABLE: Final[Mapping[tuple[IctState, TxInput], tuple[Action, IctState]]] = {
    (_IC.CALLING, In.TIMER_A):            (Do.RESEND_BACKOFF, _IC.CALLING),  # §17.1.1.2 A doubles
    (_IC.CALLING, In.TIMER_B):            (Do.TIMEOUT, _IC.TERMINATED),      # §17.1.1.2
    (_IC.CALLING, In.RECV_1XX):           (Do.PASS_UP, _IC.PROCEEDING),      # §17.1.1.2
    (_IC.CALLING, In.RECV_2XX):           (Do.PASS_UP, _IC.ACCEPTED),        # RFC 6026 §7.2
    (_IC.CALLING, In.RECV_3XX_6XX):       (Do.ACK_PASS_UP, _IC.COMPLETED),   # §17.1.1.2
    (_IC.CALLING, In.TRANSPORT_ERROR):    (Do.FAIL, _IC.TERMINATED),         # §17.1.4
    (_IC.PROCEEDING, In.RECV_1XX):        (Do.PASS_UP, _IC.PROCEEDING),      # §17.1.1.2
    (_IC.PROCEEDING, In.RECV_2XX):        (Do.PASS_UP, _IC.ACCEPTED),        # RFC 6026 §7.2
    (_IC.PROCEEDING, In.RECV_3XX_6XX):    (Do.ACK_PASS_UP, _IC.COMPLETED),   # §17.1.1.2
    (_IC.PROCEEDING, In.TRANSPORT_ERROR): (Do.FAIL, _IC.TERMINATED),         # §17.1.4
    (_IC.COMPLETED, In.RECV_3XX_6XX):     (Do.RESEND_ACK, _IC.COMPLETED),    # §17.1.1.2
    (_IC.COMPLETED, In.TIMER_D):          (Do.NONE, _IC.TERMINATED),         # §17.1.1.2
    (_IC.ACCEPTED, In.RECV_2XX):          (Do.PASS_UP, _IC.ACCEPTED),        # RFC 6026 §7.2 TU re-ACKs
    (_IC.ACCEPTED, In.TIMER_M):           (Do.NONE, _IC.TERMINATED),         # RFC 6026 §7.2
}

NICT_TABLE: Final[Mapping[tuple[NictState, TxInput], tuple[Action, NictState]]] = {
    (_NC.TRYING, In.TIMER_E):             (Do.RESEND_BACKOFF, _NC.TRYING),   # §17.1.2.2 min(2E, T2)
    (_NC.TRYING, In.TIMER_F):             (Do.TIMEOUT, _NC.TERMINATED),      # §17.1.2.2
    (_NC.TRYING, In.RECV_1XX):            (Do.PASS_UP, _NC.PROCEEDING),      # §17.1.2.2
    (_NC.TRYING, In.RECV_2XX):            (Do.PASS_UP, _NC.COMPLETED),       # §17.1.2.2
    (_NC.TRYING, In.RECV_3XX_6XX):        (Do.PASS_UP, _NC.COMPLETED),       # §17.1.2.2
    (_NC.TRYING, In.TRANSPORT_ERROR):     (Do.FAIL, _NC.TERMINATED),         # §17.1.4
    (_NC.PROCEEDING, In.TIMER_E):         (Do.RESEND_BACKOFF, _NC.PROCEEDING),  # §17.1.2.2 E = T2
    (_NC.PROCEEDING, In.TIMER_F):         (Do.TIMEOUT, _NC.TERMINATED),      # §17.1.2.2
    (_NC.PROCEEDING, In.RECV_1XX):        (Do.PASS_UP, _NC.PROCEEDING),      # §17.1.2.2
    (_NC.PROCEEDING, In.RECV_2XX):        (Do.PASS_UP, _NC.COMPLETED),       # §17.1.2.2
    (_NC.PROCEEDING, In.RECV_3XX_6XX):    (Do.PASS_UP, _NC.COMPLETED),       # §17.1.2.2
    (_NC.PROCEEDING, In.TRANSPORT_ERROR): (Do.FAIL, _NC.TERMINATED),         # §17.1.4
    (_NC.COMPLETED, In.TIMER_K):          (Do.NONE, _NC.TERMINATED),         # §17.1.2.2 (responses absorbed)
}
# fmt: on


@dataclass(frozen=True, slots=True)
class TransactionKey:
    """Identifies a transaction (RFC 3261 §17.1.3 client, §17.2.3 server).

    ``branch`` is the Via branch, or for an RFC 2543 request without a magic-cookie branch
    a synthetic ``"2543:…"`` id made of Request-URI, From tag, Call-ID, CSeq number and
    top Via. ``method`` is the request method with ACK mapped to INVITE.
    """

    branch: str
    sent_by: str
    method: str
    server: bool


def server_key(request: Request) -> TransactionKey:
    """The server transaction a request belongs to (RFC 3261 §17.2.3)."""
    via = request.top_via
    if via is None:  # the parser rejects requests without Via
        raise LocalProtocolError("request without Via")
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch
    if branch is not None and branch.startswith(BRANCH_MAGIC_COOKIE) and branch != "z9hG4bK":
        return TransactionKey(branch, via.sent_by, method, True)
    # RFC 3261 §17.2.3 fallback for RFC 2543 peers (and RFC 4475 §3.2.1's bare cookie).
    from_tag = ""
    cseq_num = ""
    try:
        from_ = request.from_
        cseq = request.cseq
        from_tag = (from_.tag or "") if from_ else ""
        cseq_num = str(cseq.seq) if cseq else ""
    except SipParseError:
        pass
    parts = (str(request.uri), from_tag, request.call_id or "", cseq_num, str(via))
    return TransactionKey("2543:" + "|".join(parts), via.sent_by, method, True)


def client_key(message: Request | Response) -> TransactionKey | None:
    """The client transaction a response belongs to (branch + CSeq method, §17.1.3)."""
    via = message.top_via
    cseq = message.cseq
    if via is None or cseq is None or via.branch is None:
        return None
    return TransactionKey(via.branch, "", cseq.method, False)


S = TypeVar("S", IstState, NistState, IctState, NictState)
_TIMER_INPUTS: Final = frozenset(i for i in TxInput if i.name.startswith("TIMER_"))


class Transaction(Generic[S]):
    """Common machinery; see the concrete classes for the tables.

    Per-transaction contract: ``receive(message, now)``, ``send(response, now)`` (server),
    ``transport_error(now)``, ``handle_timer(now)``; then drain ``messages_to_send()`` and
    ``next_event()``; re-arm at ``get_timer()``.
    """

    TABLE: ClassVar[Mapping[tuple[S, TxInput], tuple[Action, S]]]
    TERMINATED: ClassVar[S]

    def __init__(
        self, key: TransactionKey, request: Request, *, reliable: bool, timers: SipTimers
    ) -> None:
        self.key = key
        self.request = request
        self.reliable = reliable
        self.timers = timers
        self._deadlines: dict[TxInput, float] = {}
        self._intervals: dict[TxInput, float] = {}
        self._outgoing: list[Request | Response] = []
        self._events: deque[SipEvent] = deque()
        self._last: Request | Response | None = None

    state: S

    @classmethod
    def transition(cls, state: S, input_: TxInput) -> tuple[Action, S]:
        """The table's answer for ``(state, input_)``; see the module docstring.

        Raises:
            LocalProtocolError: a ``SEND_*`` input the state does not allow.
        """
        found = cls.TABLE.get((state, input_))
        if found is not None:
            return found
        if input_.is_local:
            raise LocalProtocolError(f"{input_.name} not allowed in {cls.__name__} {state.name}")
        return Action.NONE, state

    @property
    def terminated(self) -> bool:
        """Whether the transaction reached Terminated."""
        return self.state is self.TERMINATED

    def get_timer(self) -> float | None:
        """When ``handle_timer`` must next be called, or ``None``."""
        return min(self._deadlines.values(), default=None)

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now`` (in deadline order)."""
        while self._deadlines:
            timer, deadline = min(self._deadlines.items(), key=lambda item: item[1])
            if deadline > now:
                return
            del self._deadlines[timer]
            self._feed(timer, None, now)

    def transport_error(self, now: float) -> None:
        """The transport could not deliver our message (RFC 3261 §17.1.4, §17.2.4)."""
        self._feed(TxInput.TRANSPORT_ERROR, None, now)

    def messages_to_send(self) -> list[Request | Response]:
        """Messages to transmit to the transaction's peer, in order; the queue is cleared."""
        out, self._outgoing = self._outgoing, []
        return out

    def next_event(self) -> SipEvent | None:
        """The next event for the TU, or ``None``."""
        return self._events.popleft() if self._events else None

    # -- machinery ------------------------------------------------------------------
    def _feed(self, input_: TxInput, message: Request | Response | None, now: float) -> None:
        old = self.state
        action, new = self.transition(old, input_)
        if action is Action.NONE and new is old:
            if input_ not in _TIMER_INPUTS:
                logger.debug("%s %s: %s absorbed", type(self).__name__, old.name, input_.name)
            return
        self._act(action, input_, message, now)
        self.state = new
        if new is not old:
            if not self._keeps_timers(old, new):
                self._deadlines.clear()
            if new is self.TERMINATED:
                self._deadlines.clear()
                self._events.append(TransactionTerminated(key=self.key))
            else:
                self._enter(new, now)

    def _keeps_timers(self, old: S, new: S) -> bool:
        return False

    def _start(self, timer: TxInput, interval: float | None, now: float) -> None:
        """Start ``timer``; ``None`` means "not on this transport"; 0 fires at once."""
        if interval is None:
            return
        self._intervals[timer] = interval
        if interval <= 0:
            self._feed(timer, None, now)
        else:
            self._deadlines[timer] = now + interval

    def _transmit(self, message: Request | Response) -> None:
        self._last = message
        self._outgoing.append(message)

    def _act(
        self, action: Action, input_: TxInput, message: Request | Response | None, now: float
    ) -> None:
        if action is Action.SEND and message is not None:
            self._transmit(message)
        elif action in (Action.RESEND, Action.RESEND_ACK) and self._last is not None:
            self._outgoing.append(self._last)
        elif action is Action.RESEND_BACKOFF and self._last is not None:
            self._outgoing.append(self._last)
            self._backoff(input_, now)
        elif action is Action.TIMEOUT:
            self._events.append(TransactionTimedOut(key=self.key, timer=input_.name[-1]))
        elif action is Action.FAIL:
            self._events.append(TransportFailed(key=self.key))
        elif action in (Action.PASS_UP, Action.ACK_PASS_UP):
            if action is Action.ACK_PASS_UP and isinstance(message, Response):
                self._transmit(self._ack(message))
            self._pass_up(message)

    def _backoff(self, timer: TxInput, now: float) -> None:
        interval = min(2 * self._intervals.get(timer, self.timers.t1), self.timers.t2)
        self._intervals[timer] = interval
        self._deadlines[timer] = now + interval

    def _enter(self, state: S, now: float) -> None:
        """Start the timers of ``state`` (per machine)."""

    def _pass_up(self, message: Request | Response | None) -> None:
        """Report ``message`` to the TU (per machine)."""

    def _ack(self, response: Response) -> Request:
        raise LocalProtocolError("only INVITE client transactions send ACK")


def _send_input(response: Response) -> TxInput:
    if response.status < 200:
        return TxInput.SEND_1XX
    return TxInput.SEND_2XX if response.status < 300 else TxInput.SEND_3XX_6XX


def _recv_input(response: Response) -> TxInput:
    if response.status < 200:
        return TxInput.RECV_1XX
    return TxInput.RECV_2XX if response.status < 300 else TxInput.RECV_3XX_6XX


class _ServerTransaction(Transaction[S]):
    def __init__(
        self,
        key: TransactionKey,
        request: Request,
        source: Peer,
        *,
        reliable: bool,
        timers: SipTimers,
    ) -> None:
        super().__init__(key, request, reliable=reliable, timers=timers)
        self.source = source

    def receive(self, request: Request, now: float) -> None:
        """A request matching this transaction arrived (retransmission or ACK)."""
        ack = request.method == "ACK"
        self._feed(TxInput.RECV_ACK if ack else TxInput.RECV_REQUEST, request, now)

    def send(self, response: Response, now: float) -> None:
        """The TU responds. Raises ``LocalProtocolError`` if the state forbids it."""
        self._feed(_send_input(response), response, now)

    def _pass_up(self, message: Request | Response | None) -> None:
        if isinstance(message, Request):
            self._events.append(RequestReceived(request=message, source=self.source, key=None))


class InviteServerTransaction(_ServerTransaction[IstState]):
    """IST: sends 100 Trying at once; see ``IST_TABLE``."""

    TABLE = IST_TABLE
    TERMINATED = IstState.TERMINATED

    def __init__(
        self,
        key: TransactionKey,
        request: Request,
        source: Peer,
        *,
        reliable: bool,
        timers: SipTimers,
        now: float,
    ) -> None:
        super().__init__(key, request, source, reliable=reliable, timers=timers)
        self.state = IstState.PROCEEDING
        # RFC 3261 §17.2.1: the server transaction MUST generate a 100 (Trying) unless the TU
        # answers within 200 ms; we send it at once so UDP retransmissions stop early.
        self._transmit(build_response(request, 100))

    def _enter(self, state: IstState, now: float) -> None:
        if state is IstState.COMPLETED:
            self._start(TxInput.TIMER_H, self.timers.timer_h, now)
            self._start(TxInput.TIMER_G, None if self.reliable else self.timers.timer_g, now)
        elif state is IstState.CONFIRMED:
            self._start(TxInput.TIMER_I, self.timers.timer_i(self.reliable), now)
        elif state is IstState.ACCEPTED:
            self._start(TxInput.TIMER_L, self.timers.timer_l, now)


class NonInviteServerTransaction(_ServerTransaction[NistState]):
    """NIST: see ``NIST_TABLE``."""

    TABLE = NIST_TABLE
    TERMINATED = NistState.TERMINATED

    def __init__(
        self,
        key: TransactionKey,
        request: Request,
        source: Peer,
        *,
        reliable: bool,
        timers: SipTimers,
    ) -> None:
        super().__init__(key, request, source, reliable=reliable, timers=timers)
        self.state = NistState.TRYING

    def _enter(self, state: NistState, now: float) -> None:
        if state is NistState.COMPLETED:
            self._start(TxInput.TIMER_J, self.timers.timer_j(self.reliable), now)


class _ClientTransaction(Transaction[S]):
    def receive(self, response: Response, now: float) -> None:
        """A response matching this transaction arrived."""
        self._feed(_recv_input(response), response, now)

    def _pass_up(self, message: Request | Response | None) -> None:
        if isinstance(message, Response):
            self._events.append(ResponseReceived(response=message, key=self.key))


class InviteClientTransaction(_ClientTransaction[IctState]):
    """ICT for (re-)INVITE: sends the request at once; see ``ICT_TABLE``."""

    TABLE = ICT_TABLE
    TERMINATED = IctState.TERMINATED

    def __init__(
        self,
        key: TransactionKey,
        request: Request,
        *,
        reliable: bool,
        timers: SipTimers,
        now: float,
    ) -> None:
        super().__init__(key, request, reliable=reliable, timers=timers)
        self.state = IctState.CALLING
        self._transmit(request)
        self._enter(IctState.CALLING, now)

    def _enter(self, state: IctState, now: float) -> None:
        if state is IctState.CALLING:
            self._start(TxInput.TIMER_A, None if self.reliable else self.timers.timer_a, now)
            self._start(TxInput.TIMER_B, self.timers.timer_b, now)
        elif state is IctState.COMPLETED:
            self._start(TxInput.TIMER_D, self.timers.timer_d(self.reliable), now)
        elif state is IctState.ACCEPTED:
            self._start(TxInput.TIMER_M, self.timers.timer_m, now)

    def _backoff(self, timer: TxInput, now: float) -> None:
        # §17.1.1.2: Timer A doubles without the T2 cap (only B bounds it).
        interval = 2 * self._intervals.get(timer, self.timers.t1)
        self._intervals[timer] = interval
        self._deadlines[timer] = now + interval

    def _ack(self, response: Response) -> Request:
        """The ACK for a non-2xx final response (RFC 3261 §17.1.1.3)."""
        request = self.request
        cseq = request.cseq
        fields = [("Via", request.headers.get_all("Via")[0])]
        for name in ("From", "Call-ID"):
            value = request.headers.get(name)
            if value is not None:
                fields.append((name, value))
        to = response.headers.get("To")
        if to is not None:
            fields.append(("To", to))
        fields.append(("CSeq", f"{cseq.seq if cseq else 0} ACK"))
        fields.extend(("Route", v) for v in request.headers.get_all("Route"))
        fields += [("Max-Forwards", "70"), ("Content-Length", "0")]
        return Request("ACK", request.uri, Headers.of(*fields))


class NonInviteClientTransaction(_ClientTransaction[NictState]):
    """NICT for BYE, OPTIONS, CANCEL …: sends the request at once; see ``NICT_TABLE``."""

    TABLE = NICT_TABLE
    TERMINATED = NictState.TERMINATED

    def __init__(
        self,
        key: TransactionKey,
        request: Request,
        *,
        reliable: bool,
        timers: SipTimers,
        now: float,
    ) -> None:
        super().__init__(key, request, reliable=reliable, timers=timers)
        self.state = NictState.TRYING
        self._transmit(request)
        self._enter(NictState.TRYING, now)

    def _enter(self, state: NictState, now: float) -> None:
        if state is NictState.TRYING:
            self._start(TxInput.TIMER_E, None if self.reliable else self.timers.timer_e, now)
            self._start(TxInput.TIMER_F, self.timers.timer_f, now)
        elif state is NictState.COMPLETED:
            self._start(TxInput.TIMER_K, self.timers.timer_k(self.reliable), now)

    def _keeps_timers(self, old: NictState, new: NictState) -> bool:
        # §17.1.2.2: in Proceeding, E keeps firing (at T2) and F still bounds the transaction.
        return (old, new) == (NictState.TRYING, NictState.PROCEEDING)

    def _backoff(self, timer: TxInput, now: float) -> None:
        if self.state is NictState.PROCEEDING:
            # §17.1.2.2: "If Timer E fires while in the Proceeding state, the request MUST be
            # passed to the transport layer for retransmission, and Timer E MUST be reset
            # with a value of T2 seconds."
            self._intervals[timer] = self.timers.t2
            self._deadlines[timer] = now + self.timers.t2
        else:
            super()._backoff(timer, now)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to serialise and send to ``destination``."""

    message: Request | Response
    destination: Peer


def response_peer(via: Via | None, source: Peer) -> Peer:
    """Where a response to a request from ``source`` with top ``via`` goes.

    Reliable transports answer on the connection the request came in on (RFC 3261
    §18.2.2). Over UDP: with ``rport`` (RFC 3581 §4) to the source address and port; without
    it to the source address (the ``received`` address) and the port in sent-by, or 5060.
    """
    if source.transport.reliable or via is None or via.param("rport") is not None:
        return source
    return replace(source, port=via.port or 5060)


ServerTransaction = InviteServerTransaction | NonInviteServerTransaction
ClientTransaction = InviteClientTransaction | NonInviteClientTransaction


class TransactionLayer:
    """All transactions of one SIP endpoint, matched per RFC 3261 §17.1.3/§17.2.3.

    See the module docstring for the calling contract. Responses of server transactions go
    where :func:`response_peer` says (RFC 3261 §18.2.2 with RFC 3581). Requests that fail to parse get a stateless error response
    (RFC 3261 §8.2.6, ``parser.error_response``) or are dropped, and are reported as
    :class:`~.events.MessageDiscarded`. At most ``max_transactions`` live at once; beyond
    that new requests get a stateless 503 (RFC 3261 §21.5.4).
    """

    def __init__(
        self,
        *,
        random: RandomSource,
        timers: SipTimers | None = None,
        parser: MessageParser | None = None,
        max_transactions: int = 10_000,
        agent: str = "telepath",
    ) -> None:
        self.timers = timers or SipTimers()
        self.parser = parser or MessageParser()
        self._random = random
        self._max = max_transactions
        self._agent = agent
        self._servers: dict[TransactionKey, ServerTransaction] = {}
        self._clients: dict[TransactionKey, ClientTransaction] = {}
        self._destinations: dict[TransactionKey, Peer] = {}
        self._outgoing: list[Outgoing] = []
        self._events: deque[SipEvent] = deque()

    # -- input ----------------------------------------------------------------------
    def receive_bytes(self, data: bytes, source: Peer, now: float) -> None:
        """Parse one datagram / framed message from ``source`` and process it.

        Never raises on peer input: a bad request is answered (400/505/513) or dropped.
        """
        if not data.strip(b"\r\n"):
            return  # RFC 5626 / §7.5 keep-alive on a datagram transport
        try:
            message = self.parser.parse(data)
        except SipParseError as error:
            self._reject(error, source)
            return
        self.receive_message(message, source, now)

    def receive_message(self, message: Request | Response, source: Peer, now: float) -> None:
        """Process a parsed message (see ``receive_bytes``)."""
        if isinstance(message, Response):
            key = client_key(message)
            client = self._clients.get(key) if key is not None else None
            if client is None:
                # RFC 3261 §18.1.2: stray responses are discarded (RFC 4475 §3.3.10 too).
                self._events.append(
                    MessageDiscarded(source=source, reason="stray response", status=None)
                )
                return
            client.receive(message, now)
            self._drain(client)
            return
        key = server_key(message)
        server = self._servers.get(key)
        if server is not None:
            server.receive(message, now)
            self._drain(server)
            return
        if message.method == "ACK":
            # An ACK for a 2xx is its own transaction-less request (§17.1.1.3): to the TU.
            self._events.append(RequestReceived(request=message, source=source, key=None))
            return
        if len(self._servers) + len(self._clients) >= self._max:
            response = build_response(
                message, 503, to_tag=new_tag(self._random), extra=[("Retry-After", "5")]
            )
            self._outgoing.append(Outgoing(response, response_peer(message.top_via, source)))
            self._events.append(
                MessageDiscarded(source=source, reason="too many transactions", status=503)
            )
            return
        reliable = source.transport.reliable
        created: ServerTransaction
        if message.method == "INVITE":
            created = InviteServerTransaction(
                key, message, source, reliable=reliable, timers=self.timers, now=now
            )
        else:
            created = NonInviteServerTransaction(
                key, message, source, reliable=reliable, timers=self.timers
            )
        self._servers[key] = created
        cancels = None
        if message.method == "CANCEL":
            # RFC 3261 §9.2: the CANCEL matches the INVITE with the same top-Via branch.
            target = TransactionKey(key.branch, key.sent_by, "INVITE", True)
            cancels = target if target in self._servers else None
        self._events.append(
            RequestReceived(request=message, source=source, key=key, cancels=cancels)
        )
        self._drain(created)

    # -- TU actions -----------------------------------------------------------------
    def send_response(self, key: TransactionKey, response: Response, now: float) -> None:
        """Send ``response`` through server transaction ``key``.

        Raises:
            LocalProtocolError: no such live transaction, or its state forbids it.
        """
        server = self._servers.get(key)
        if server is None:
            raise LocalProtocolError("no such server transaction")
        server.send(response, now)
        self._drain(server)

    def send_request(self, request: Request, destination: Peer, now: float) -> TransactionKey:
        """Start a client transaction; the request is queued at once.

        The request must carry its own top Via with a fresh magic-cookie branch
        (``message.new_branch(random)``).

        Raises:
            LocalProtocolError: ACK (use ``send_stateless``), no usable branch, or a
                branch already in use.
        """
        if request.method == "ACK":
            raise LocalProtocolError("ACK is sent with send_stateless")
        key = client_key(request)
        if key is None or not key.branch.startswith(BRANCH_MAGIC_COOKIE):
            raise LocalProtocolError("request needs a top Via with a z9hG4bK branch and CSeq")
        if key in self._clients:
            raise LocalProtocolError("branch already in use")
        reliable = destination.transport.reliable
        created: ClientTransaction
        if request.method == "INVITE":
            created = InviteClientTransaction(
                key, request, reliable=reliable, timers=self.timers, now=now
            )
        else:
            created = NonInviteClientTransaction(
                key, request, reliable=reliable, timers=self.timers, now=now
            )
        self._clients[key] = created
        self._destinations[key] = destination
        self._drain(created)
        return key

    def discard(self, key: TransactionKey) -> bool:
        """Forget server transaction ``key`` without answering it (a silent drop).

        Nothing more is sent for it: no final response, no retransmission, no timer; no
        event follows. A retransmission of its request afterwards starts a new transaction.
        Used against abusive sources (RFC 3261 §26.3.2.4 leaves the reaction to a flood of
        bad requests to the implementation). Returns ``False`` if ``key`` is not live.

        Raises:
            LocalProtocolError: ``key`` names a client transaction.
        """
        if not key.server:
            raise LocalProtocolError("only server transactions can be discarded")
        return self._servers.pop(key, None) is not None

    def send_stateless(self, message: Request | Response, destination: Peer) -> None:
        """Queue a message outside any transaction (the ACK for a 2xx, §13.2.2.4)."""
        self._outgoing.append(Outgoing(message, destination))

    def framing_failed(self, error: FramingError, source: Peer) -> None:
        """A stream from ``source`` lost its framing (``StreamFramer`` raised ``error``).

        Queues the 400/513 answer when the header block allows one (RFC 4475 §3.1.2.3);
        the caller sends it, then closes the connection.
        """
        context = self.parser.salvage(error.head) if error.head else None
        status = error.status_hint
        self._reject(SipParseError(error.reason, status_hint=status, context=context), source)

    def transport_error(self, key: TransactionKey, now: float) -> None:
        """Report that sending for transaction ``key`` failed (ignored if it is gone)."""
        tx = self._servers.get(key) or self._clients.get(key)
        if tx is not None:
            tx.transport_error(now)
            self._drain(tx)

    # -- output ---------------------------------------------------------------------
    def messages_to_send(self) -> list[Outgoing]:
        """Everything to transmit, in order; the queue is cleared."""
        out, self._outgoing = self._outgoing, []
        return out

    def next_event(self) -> SipEvent | None:
        """The next event for the TU, or ``None``."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The earliest deadline of any transaction, or ``None``."""
        deadlines = [
            t
            for tx in (*self._servers.values(), *self._clients.values())
            if (t := tx.get_timer()) is not None
        ]
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now``."""
        for tx in (*self._servers.values(), *self._clients.values()):
            deadline = tx.get_timer()
            if deadline is not None and deadline <= now:
                tx.handle_timer(now)
                self._drain(tx)

    def server_transaction(self, key: TransactionKey) -> ServerTransaction | None:
        """The live server transaction for ``key`` (for inspection)."""
        return self._servers.get(key)

    def client_transaction(self, key: TransactionKey) -> ClientTransaction | None:
        """The live client transaction for ``key`` (for inspection)."""
        return self._clients.get(key)

    # -- internals ------------------------------------------------------------------
    def _drain(self, tx: ServerTransaction | ClientTransaction) -> None:
        if isinstance(tx, InviteServerTransaction | NonInviteServerTransaction):
            destination = response_peer(tx.request.top_via, tx.source)
        else:
            destination = self._destinations[tx.key]
        self._outgoing.extend(Outgoing(m, destination) for m in tx.messages_to_send())
        while (event := tx.next_event()) is not None:
            self._events.append(event)
        if tx.terminated:
            if tx.key.server:
                self._servers.pop(tx.key, None)
            else:
                self._clients.pop(tx.key, None)
                self._destinations.pop(tx.key, None)

    def _reject(self, error: SipParseError, source: Peer) -> None:
        response = error_response(error, to_tag=new_tag(self._random), agent=self._agent)
        if response is not None:
            try:
                via = response.top_via
            except SipParseError:
                via = None  # tolerated broken parameters: answer the source address
            self._outgoing.append(Outgoing(response, response_peer(via, source)))
        self._events.append(
            MessageDiscarded(
                source=source,
                reason=error.reason,
                status=response.status if response is not None else None,
            )
        )
