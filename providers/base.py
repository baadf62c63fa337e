"""The ``AgentSession`` seam: one conversation with an AI voice agent.

A provider adapter turns one provider's wire protocol into this interface; the bridge
(``gateway.bridge``) is its only consumer. Calling protocol::

    session = create_session(config)          # providers.registry
    formats = await session.open(context, preferred=PCMU)   # may run while the call rings
    await session.answered()                   # the caller is connected: greet if configured
    ... session.send_audio(frame) / send_dtmf(digit) / played(item_id, ms) / mark_played(name)
    session.listen(on_event)                   # events as they happen, until AgentClosed
    # or: async for event in session.events(): ...   (tests and tools; one or the other)
    await session.close(reason)                # always, on every path; idempotent

``open`` raises ``ProviderError`` (with a category) when the agent cannot be reached or
refuses; after ``open`` failures arrive as ``AgentError`` events, the last event of a
session is always ``AgentClosed``.

``listen`` hands each event to ``on_event`` in the callback that produced it (the socket's
``data_received``, a timer), with no queue or task in between; events from before the call
wait until then. ``on_event`` must not raise and must not wait; it may call the session's
send methods.

Error tree::

    ProviderError(category, message, status)        # every failure of an adapter
      ├─ ProviderAuthError            category=auth
      ├─ ProviderRateLimitError       category=rate_limit / quota
      ├─ ProviderConnectError         category=connectivity
      ├─ ProviderProtocolError        category=protocol (a message we cannot understand)
      └─ ProviderConfigError          category=config (e.g. OpenAI's beta shape refused)
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import StrEnum

from media import AudioFormat, AudioFrame, CallContext


class ErrorCategory(StrEnum):
    """Provider failure categories; they become the call's disconnect reason and blame."""

    AUTH = "auth"
    RATE_LIMIT = "rate_limit"
    QUOTA = "quota"
    CONNECTIVITY = "connectivity"
    PROTOCOL = "protocol"
    PROVIDER = "provider"
    CONFIG = "config"


class ProviderError(Exception):
    """A failure of an AI provider, with what the caller needs to classify it."""

    category: ErrorCategory = ErrorCategory.PROVIDER

    def __init__(
        self,
        message: str,
        *,
        category: ErrorCategory | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if category is not None:
            self.category = category
        self.status = status


class ProviderAuthError(ProviderError):
    """The provider refused our credentials."""

    category = ErrorCategory.AUTH


class ProviderRateLimitError(ProviderError):
    """The provider throttled us or the account is out of quota."""

    category = ErrorCategory.RATE_LIMIT


class ProviderConnectError(ProviderError):
    """The provider could not be reached, timed out or dropped the connection."""

    category = ErrorCategory.CONNECTIVITY


class ProviderProtocolError(ProviderError):
    """The provider sent something we could not understand."""

    category = ErrorCategory.PROTOCOL


class ProviderConfigError(ProviderError):
    """The trunk's provider configuration cannot work (wrong API shape, missing agent id …)."""

    category = ErrorCategory.CONFIG


@dataclass(frozen=True, slots=True)
class NegotiatedFormats:
    """The formats the agent takes (``input``) and produces (``output``) for this call."""

    input: AudioFormat
    output: AudioFormat


# --- events from the agent (past tense, frozen) ---


@dataclass(frozen=True, slots=True)
class AgentAudio:
    """Audio from the agent, part of response/item ``item_id``."""

    frame: AudioFrame
    item_id: str


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


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Everything an adapter needs from the trunk, decrypted, as plain values.

    ``provider`` is ``openai`` | ``elevenlabs`` | ``custom`` | ``echo``. ``options`` carries
    the provider settings (model, voice, greeting, turn_detection, dialect, …) as given in
    the trunk's ``provider_config``; ``base_url`` overrides the provider's endpoint (tests,
    Azure OpenAI, proxies); ``api_url`` the provider's REST endpoint.
    """

    provider: str
    api_key: str | None = None
    system_prompt: str | None = None
    options: dict[str, object] = field(default_factory=dict)
    endpoint: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    base_url: str | None = None
    api_url: str | None = None
    connect_timeout: float = 5.0
    ping_interval: float = 20.0


class AgentSession(abc.ABC):
    """One conversation with an AI voice agent. See the module docstring for the protocol."""

    @abc.abstractmethod
    async def open(self, context: CallContext, preferred: AudioFormat) -> NegotiatedFormats:
        """Connect and configure the agent; return the formats it will take and produce.

        ``preferred`` is the call leg's format: adapters pick it when they can (zero
        transcoding). Raises ``ProviderError`` on failure; the session is then closed.
        """

    @abc.abstractmethod
    async def answered(self) -> None:
        """The call is answered and the caller connected: trigger the greeting, if any."""

    @abc.abstractmethod
    def send_audio(self, frame: AudioFrame) -> None:
        """Queue caller audio (in the negotiated input format) for the agent. Never blocks."""

    @abc.abstractmethod
    def send_dtmf(self, digit: str) -> None:
        """Tell the agent the caller pressed ``digit``."""

    @abc.abstractmethod
    def played(self, item_id: str, played_ms: int) -> None:
        """After an interruption: the caller heard ``played_ms`` of ``item_id``'s audio."""

    def mark_played(self, name: str) -> None:
        """The audio before the agent's mark ``name`` has been played to the caller.

        Adapters whose protocol echoes marks (custom agents) override this; others ignore it.
        """
        del name

    @abc.abstractmethod
    def listen(self, on_event: Callable[[AgentEvent], None]) -> None:
        """Hand the agent's events to ``on_event`` as they happen, until ``AgentClosed``."""

    @abc.abstractmethod
    def events(self) -> AsyncIterator[AgentEvent]:
        """The agent's events, ending with ``AgentClosed`` (instead of ``listen``)."""

    @abc.abstractmethod
    async def close(self, reason: str = "") -> None:
        """End the session and release its connection and tasks. Idempotent."""
