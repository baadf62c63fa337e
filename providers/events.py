"""The events an ``AgentSession`` hands the bridge (past tense, frozen).

Re-exported by ``providers.base``. Compiled (gateway/native.py): an ``AgentAudio`` is
built for every frame an agent sends.
"""

from __future__ import annotations

from dataclasses import dataclass

from media import AudioFrame
from providers.errors import ProviderError

__all__ = [
    "AgentAudio",
    "AgentClosed",
    "AgentError",
    "AgentEvent",
    "AgentInterrupted",
    "CallerSpeechStarted",
    "CallerSpeechStopped",
    "ClearRequested",
    "DtmfRequested",
    "HangupRequested",
    "MarkRequested",
    "ResponseDone",
    "TranscriptReceived",
    "TransferRequested",
]


@dataclass(frozen=True, slots=True, init=False)
class AgentAudio:
    """Audio from the agent, part of response/item ``item_id``."""

    frame: AudioFrame
    item_id: str

    def __init__(self, frame: AudioFrame, item_id: str) -> None:
        # Written out, as media.frames.AudioFrame's: one per agent frame.
        object.__setattr__(self, "frame", frame)
        object.__setattr__(self, "item_id", item_id)


@dataclass(frozen=True, slots=True)
class AgentInterrupted:
    """The agent says the caller barged in: stop playing ``item_id`` (if known) at once."""

    item_id: str | None = None


@dataclass(frozen=True, slots=True)
class CallerSpeechStarted:
    """The provider's VAD heard the caller start speaking."""


@dataclass(frozen=True, slots=True)
class CallerSpeechStopped:
    """The provider's VAD heard the caller stop speaking (a turn ends: latency clock starts)."""


@dataclass(frozen=True, slots=True)
class ResponseDone:
    """The agent finished generating response/item ``item_id``."""

    item_id: str


@dataclass(frozen=True, slots=True)
class TranscriptReceived:
    """A transcript of the caller (``role="user"``) or of the agent (``role="agent"``)."""

    role: str
    text: str
    final: bool = True


@dataclass(frozen=True, slots=True)
class MarkRequested:
    """The agent asked to be told when the audio it sent so far has been played."""

    name: str


@dataclass(frozen=True, slots=True)
class ClearRequested:
    """The agent asked to drop the audio queued for the caller (custom agents' ``clear``)."""


@dataclass(frozen=True, slots=True)
class HangupRequested:
    """The agent wants the call to end."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class TransferRequested:
    """The agent wants the call transferred to ``target`` (a SIP URI or an E.164 number)."""

    target: str


@dataclass(frozen=True, slots=True)
class DtmfRequested:
    """The agent wants ``digits`` sent to the caller as DTMF."""

    digits: str


@dataclass(frozen=True, slots=True)
class AgentError:
    """Something went wrong on the agent side; ``fatal`` errors end the call."""

    error: ProviderError
    fatal: bool


@dataclass(frozen=True, slots=True)
class AgentClosed:
    """The agent session is over; always the last event. ``error`` set if it ended badly."""

    error: ProviderError | None = None


AgentEvent = (
    AgentAudio
    | AgentInterrupted
    | CallerSpeechStarted
    | CallerSpeechStopped
    | ResponseDone
    | TranscriptReceived
    | MarkRequested
    | ClearRequested
    | HangupRequested
    | TransferRequested
    | DtmfRequested
    | AgentError
    | AgentClosed
)
