"""Events the transaction layer reports (frozen, past tense; RFC 3261 §17, RFC 6026).

Pull them with ``TransactionLayer.next_event()`` and dispatch with ``match``. ``key`` is the
:class:`~.transaction.TransactionKey` to pass back to ``send_response``; it is ``None`` only
for requests that belong to no transaction (an ACK for a 2xx, RFC 3261 §17.1.1.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .message import Peer, Request, Response

if TYPE_CHECKING:
    from .transaction import TransactionKey

__all__ = [
    "MessageDiscarded",
    "RequestReceived",
    "ResponseReceived",
    "SipEvent",
    "TransactionTerminated",
    "TransactionTimedOut",
    "TransportFailed",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SipEvent:
    """Base of the transaction layer's events. Do not subclass the concrete events."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestReceived(SipEvent):
    """A new request for the TU (retransmissions are absorbed and never reported).

    ``cancels`` is set on a CANCEL that matches a live INVITE server transaction
    (RFC 3261 §9.2): answer the CANCEL with 200 and that INVITE with 487.
    """

    request: Request
    source: Peer
    key: TransactionKey | None
    cancels: TransactionKey | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseReceived(SipEvent):
    """A response for one of our client transactions (2xx retransmissions included)."""

    response: Response
    key: TransactionKey


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionTimedOut(SipEvent):
    """Timer B/F/H fired: the peer never answered (client: treat as 408, §8.1.3.1)."""

    key: TransactionKey
    timer: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportFailed(SipEvent):
    """The transport reported a failure for this transaction (RFC 3261 §17.1.4, §17.2.4)."""

    key: TransactionKey


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionTerminated(SipEvent):
    """The transaction reached Terminated and was forgotten."""

    key: TransactionKey


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageDiscarded(SipEvent):
    """Input was rejected or dropped before reaching a transaction (for logs/metrics).

    ``status`` is the error response sent back statelessly, or ``None`` if dropped.
    """

    source: Peer
    reason: str
    status: int | None
