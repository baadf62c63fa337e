"""Events the UAS core reports to its owner (frozen, past tense; STYLE.md P5).

Pull them with ``UserAgentServer.next_event()``. ``call`` is the opaque handle the core
gave the call in :class:`CallOffered`; pass it back to ``ring``/``answer``/``reject``/
``hangup``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .message import Peer, Request
from .offer_answer import NegotiatedMedia

__all__ = [
    "CallConfirmed",
    "CallEnded",
    "CallOffered",
    "DtmfInfoReceived",
    "EndCause",
    "MediaUpdated",
    "RequestRefused",
    "UasEvent",
]


class EndCause(enum.Enum):
    """Why a call ended, as far as signalling can tell."""

    CALLER_BYE = "caller_bye"  # the caller sent BYE (RFC 3261 §15.1.2)
    CALLER_CANCEL = "caller_cancel"  # CANCEL before our final response (§9.2)
    LOCAL_BYE = "local_bye"  # our BYE completed (2xx, 481, 408 or timeout: §15.1.1)
    REJECTED = "rejected"  # we sent a final failure response
    ACK_TIMEOUT = "ack_timeout"  # no ACK for our 2xx within 64*T1 (§13.3.1.4); BYE sent
    SESSION_EXPIRED = "session_expired"  # no session refresh (RFC 4028 §10); BYE sent
    REFRESH_FAILED = "refresh_failed"  # our refresh got 408/481 or timed out (§12.2.1.2)
    RING_TIMEOUT = "ring_timeout"  # nobody answered or rejected in time; 480 sent
    TRANSPORT_FAILED = "transport_failed"  # the connection of the dialog failed
    DROPPED = "dropped"  # we dropped the INVITE without any answer (an abusive source)


@dataclass(frozen=True, slots=True, kw_only=True)
class UasEvent:
    """Base class of the UAS core's events."""

    call: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallOffered(UasEvent):
    """A new INVITE passed the protocol checks: decide (auth, policy) and ring/answer/reject."""

    request: Request
    source: Peer


@dataclass(frozen=True, slots=True, kw_only=True)
class CallConfirmed(UasEvent):
    """The ACK for our 2xx arrived (RFC 3261 §13.3.1.4)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaUpdated(UasEvent):
    """A re-INVITE, UPDATE or late answer (ACK) changed the negotiated media (hold/resume).

    ``request`` names the method that carried the SDP (``INVITE``, ``UPDATE``, ``ACK``, or
    ``""`` for the answer to our own refresh offer)."""

    media: NegotiatedMedia
    request: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfInfoReceived(UasEvent):
    """An INFO carried a DTMF key (``application/dtmf-relay`` or ``application/dtmf``)."""

    digit: str
    duration_ms: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded(UasEvent):
    """The call's dialog is over; ``status`` is the final response we sent, if any."""

    cause: EndCause
    status: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestRefused(UasEvent):
    """The core answered a request with an error by itself (for logs and metrics).

    ``call`` is ``""`` outside any call.
    """

    method: str
    status: int
    reason: str
    source: Peer
