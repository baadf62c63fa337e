"""How a call ended: the reason, who is to blame, and a sentence a person understands."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Blame(StrEnum):
    """Who caused the end of a call (seed docs: "System analysis of who caused a disconnect")."""

    CALLER = "caller"
    AI_AGENT = "ai_agent"
    CARRIER = "carrier"
    SYSTEM = "system"


class DisconnectReason(StrEnum):
    """Machine-readable end reasons recorded on every call."""

    HANGUP = "hangup"
    AGENT_HANGUP = "agent_hangup"
    TRANSFER = "transfer"
    CANCEL = "cancel"
    RTP_TIMEOUT = "rtp_timeout"
    AUTH_FAILED = "auth_failed"
    REJECTED = "rejected"
    AGENT_UNREACHABLE = "agent_unreachable"
    AGENT_ERROR = "agent_error"
    BUSY = "busy"
    MAX_DURATION = "max_duration"
    CARRIER_ERROR = "carrier_error"
    SHUTDOWN = "shutdown"
    SYSTEM_ERROR = "system_error"


@dataclass(frozen=True, slots=True)
class CallEnd:
    """A classified end of call, as it goes into the call record and the status webhook."""

    reason: DisconnectReason
    blame: Blame
    explanation: str
    sip_status: int | None = None

    @classmethod
    def caller_hangup(cls, explanation: str = "Caller hung up") -> CallEnd:
        """The ordinary end of a call: the caller hung up."""
        return cls(DisconnectReason.HANGUP, Blame.CALLER, explanation)
