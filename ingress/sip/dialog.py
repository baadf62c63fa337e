"""SIP dialogs on the UAS side (RFC 3261 §12), sans-I/O.

A :class:`Dialog` is created from the INVITE we answer (§12.1.1): our To-tag is the local
tag, the caller's From-tag the remote one, the caller's Contact the remote target, the
Record-Route values (in order) the route set. It then

* checks the CSeq of every request the caller sends inside it (§12.2.2: lower than the
  last one → 500), :meth:`Dialog.accept_cseq`;
* builds the requests *we* send inside it (§12.2.1.1: BYE, UPDATE, re-INVITE and the ACK
  for the 2xx of our re-INVITE), :meth:`Dialog.new_request` / :meth:`Dialog.ack`;
* tells where those requests go (:meth:`Dialog.next_hop`).

States are a small table (:data:`DIALOG_TABLE`): ``EARLY`` after a provisional response
with a To-tag, ``CONFIRMED`` once a 2xx went out, ``TERMINATED`` after a BYE either way
or a failure. A stray input in a state leaves it unchanged (STYLE.md P4).

Where in-dialog requests go: RFC 3261 says to the first Route (loose routing) or to the
remote target. Carriers behind NAT and SIP load balancers put unroutable or private
addresses there, so when the chosen hop is not an IP literal the request goes back along
the flow the INVITE came in on (RFC 5626's "flow" idea; on TCP/TLS that is the same
connection, RFC 3261 §18.2.2 / issue: "connection reuse for in-dialog requests"). No DNS
lookup ever happens in the core.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field, replace
from typing import Final

from .errors import LocalProtocolError, SipParseError
from .headers import CSeq, Headers, NameAddr, Via
from .message import Peer, RandomSource, Request, Response, TransportKind, new_branch
from .uri import SipUri, Uri

__all__ = [
    "DIALOG_TABLE",
    "Dialog",
    "DialogId",
    "DialogInput",
    "DialogState",
    "dialog_id_of",
]

_MAX_CSEQ: Final = 2**31 - 1  # §8.1.1.5: a new local CSeq must stay below 2**31


class DialogState(enum.Enum):
    """RFC 3261 §12: a dialog is early, confirmed, or over."""

    EARLY = enum.auto()
    CONFIRMED = enum.auto()
    TERMINATED = enum.auto()


class DialogInput(enum.Enum):
    """What can happen to a dialog."""

    SENT_2XX = enum.auto()  # our 2xx to the INVITE (§12.1.1)
    SENT_FAILURE = enum.auto()  # our 3xx-6xx to the INVITE: an early dialog ends (§12.3)
    BYE = enum.auto()  # a BYE either way (§15)
    TIMEOUT = enum.auto()  # no ACK for our 2xx, or our request timed out (§13.3.1.4, §12.2.1.2)


# fmt: off
DIALOG_TABLE: Final[dict[tuple[DialogState, DialogInput], DialogState]] = {
    (DialogState.EARLY, DialogInput.SENT_2XX):         DialogState.CONFIRMED,   # §12.1.1
    (DialogState.EARLY, DialogInput.SENT_FAILURE):     DialogState.TERMINATED,  # §12.3
    (DialogState.EARLY, DialogInput.BYE):              DialogState.TERMINATED,  # §15
    (DialogState.EARLY, DialogInput.TIMEOUT):          DialogState.TERMINATED,  # §12.2.1.2
    (DialogState.CONFIRMED, DialogInput.BYE):          DialogState.TERMINATED,  # §15
    (DialogState.CONFIRMED, DialogInput.TIMEOUT):      DialogState.TERMINATED,  # §13.3.1.4
}
# fmt: on


@dataclass(frozen=True, slots=True)
class DialogId:
    """§12: Call-ID, local tag, remote tag (matched case-sensitively, as the tags are)."""

    call_id: str
    local_tag: str
    remote_tag: str


def dialog_id_of(request: Request) -> DialogId | None:
    """The dialog an in-dialog request from the caller names (our tag is its To-tag)."""
    try:
        to, from_ = request.to, request.from_
    except SipParseError:
        return None
    call_id = request.call_id
    if to is None or from_ is None or call_id is None or to.tag is None:
        return None
    return DialogId(call_id, to.tag, from_.tag or "")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@dataclass(slots=True)
class Dialog:
    """One UAS dialog; build it with :meth:`from_invite`.

    ``flow`` is where the INVITE came from (transport, address, port): the fallback next
    hop, and on TCP/TLS the connection in-dialog requests reuse.
    """

    id: DialogId
    local_uri: NameAddr  # the INVITE's To, with our tag: the From of our requests
    remote_uri: NameAddr  # the INVITE's From: the To of our requests
    remote_target: Uri
    route_set: tuple[str, ...]
    remote_cseq: int
    local_cseq: int
    flow: Peer
    secure: bool = False
    state: DialogState = DialogState.EARLY
    remote_allow: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_invite(
        cls, invite: Request, *, local_tag: str, source: Peer, local_cseq: int = 1
    ) -> Dialog:
        """The dialog our response to ``invite`` creates (RFC 3261 §12.1.1).

        Raises:
            LocalProtocolError: ``invite`` lacks the headers the parser guarantees.
        """
        to, from_, cseq = invite.to, invite.from_, invite.cseq
        call_id = invite.call_id
        if to is None or from_ is None or cseq is None or call_id is None:
            raise LocalProtocolError("INVITE without To/From/CSeq/Call-ID")
        contacts = invite.contacts
        # §12.1.1: remote target = the Contact's URI; without one (broken peer) use From's.
        target = contacts[0].uri if contacts else from_.uri
        routes = tuple(invite.headers.get_all("Record-Route"))
        allow = frozenset(
            m.strip().upper() for v in invite.headers.get_all("Allow") for m in v.split(",")
        )
        if not 1 <= local_cseq <= _MAX_CSEQ:
            raise LocalProtocolError("local CSeq out of range")
        return cls(
            id=DialogId(call_id, local_tag, from_.tag or ""),
            local_uri=to.with_param("tag", local_tag),
            remote_uri=from_,
            remote_target=target,
            route_set=routes,
            remote_cseq=cseq.seq,
            local_cseq=local_cseq,
            flow=source,
            secure=isinstance(invite.uri, SipUri) and invite.uri.scheme.lower() == "sips",
            remote_allow=allow,
        )

    # -- state -----------------------------------------------------------------------
    def transition(self, input_: DialogInput) -> DialogState:
        """Apply ``input_`` per :data:`DIALOG_TABLE`; pairs not in it leave the state."""
        self.state = DIALOG_TABLE.get((self.state, input_), self.state)
        return self.state

    @property
    def terminated(self) -> bool:
        return self.state is DialogState.TERMINATED

    # -- requests from the caller ------------------------------------------------------
    def accept_cseq(self, request: Request) -> int | None:
        """Check and record a caller request's CSeq (§12.2.2).

        Returns ``None`` when the request may be processed, or the status to answer
        (500 for an out-of-order request). ACK and CANCEL carry the CSeq of the request
        they belong to and are not checked.
        """
        cseq = request.cseq
        if cseq is None:
            return 400
        if request.method in ("ACK", "CANCEL"):
            return None
        if cseq.seq <= self.remote_cseq:
            return 500  # §12.2.2: "MUST be rejected with a 500 (Server Internal Error)"
        self.remote_cseq = cseq.seq
        # §12.2.2: a target refresh (re-INVITE, UPDATE) may replace the remote target.
        if request.method in ("INVITE", "UPDATE"):
            contacts = request.contacts
            if contacts:
                self.remote_target = contacts[0].uri
        return None

    # -- requests we send --------------------------------------------------------------
    def next_hop(self) -> Peer:
        """Where our in-dialog requests go (see the module docstring)."""
        if self.flow.transport.reliable:
            return self.flow  # reuse the connection the dialog was created on
        hop = self._first_hop_uri()
        if isinstance(hop, SipUri) and _is_ip(hop.host):
            transport = (hop.param("transport") or "udp").upper()
            if transport == "UDP":
                return Peer(TransportKind.UDP, hop.host.strip("[]"), hop.port or 5060)
        return self.flow

    def _first_hop_uri(self) -> Uri | None:
        if self.route_set:
            try:
                return NameAddr.parse(self.route_set[0]).uri
            except SipParseError:
                return None
        return self.remote_target

    def new_request(
        self,
        method: str,
        *,
        random: RandomSource,
        via_host: str,
        via_port: int,
        extra: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Request:
        """A new request inside the dialog (RFC 3261 §12.2.1.1), CSeq incremented.

        Request-URI is the remote target, ``Route`` the route set (loose routing; a
        strict-routing first hop without ``;lr`` is sent as is, which is what a
        loose-routing peer expects). Raises ``LocalProtocolError`` for ACK or CANCEL
        (those reuse another request's CSeq) and once the dialog has ended.
        """
        if method in ("ACK", "CANCEL"):
            raise LocalProtocolError(f"{method} is not a new in-dialog request")
        if self.terminated and method != "BYE":
            raise LocalProtocolError("the dialog has ended")
        if self.local_cseq >= _MAX_CSEQ:
            raise LocalProtocolError("local CSeq exhausted")
        self.local_cseq += 1
        return self._build(
            method,
            self.local_cseq,
            new_branch(random),
            via_host,
            via_port,
            extra,
            body,
            content_type,
        )

    def ack(
        self,
        response: Response,
        *,
        random: RandomSource,
        via_host: str,
        via_port: int,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Request:
        """The ACK for a 2xx to our re-INVITE (§13.2.2.4: same CSeq number, new branch)."""
        cseq = response.cseq
        if cseq is None or cseq.method != "INVITE":
            raise LocalProtocolError("ACK only acknowledges a 2xx to INVITE")
        return self._build(
            "ACK", cseq.seq, new_branch(random), via_host, via_port, (), body, content_type
        )

    def _build(
        self,
        method: str,
        seq: int,
        branch: str,
        via_host: str,
        via_port: int,
        extra: tuple[tuple[str, str], ...],
        body: bytes,
        content_type: str | None,
    ) -> Request:
        via = Via(
            self.flow.transport.value, via_host, via_port, (("branch", branch), ("rport", None))
        )
        pairs: list[tuple[str, str]] = [("Via", str(via)), ("Max-Forwards", "70")]
        pairs.extend(("Route", r) for r in self.route_set)
        pairs += [
            ("From", str(self.local_uri)),
            ("To", str(self.remote_uri)),
            ("Call-ID", self.id.call_id),
            ("CSeq", str(CSeq(seq, method))),
        ]
        pairs.extend(extra)
        request = Request(method, self.remote_target, Headers.of(*pairs))
        return request.with_body(body, content_type)

    def with_flow(self, flow: Peer) -> Dialog:
        """A copy that sends along ``flow`` (e.g. after the caller reconnected)."""
        return replace(self, flow=flow)
