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
frame callback, a timer), with no queue or task in between; events from before the call
wait until then. ``on_event`` must not raise and must not wait; it may call the session's
send methods.

The errors (``ProviderError`` and its categories) are defined in ``providers.errors``, the
events in ``providers.events`` (compiled: one ``AgentAudio`` per agent frame); both are
re-exported here, where adapters import them.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from media import AudioFormat, AudioFrame, CallContext
from providers.errors import (
    ErrorCategory,
    ProviderAuthError,
    ProviderConfigError,
    ProviderConnectError,
    ProviderError,
    ProviderProtocolError,
    ProviderRateLimitError,
)
from providers.events import (
    AgentAudio,
    AgentClosed,
    AgentError,
    AgentEvent,
    AgentInterrupted,
    CallerSpeechStarted,
    CallerSpeechStopped,
    ClearRequested,
    DtmfRequested,
    HangupRequested,
    MarkRequested,
    ResponseDone,
    TranscriptReceived,
    TransferRequested,
)

__all__ = [
    "AgentAudio",
    "AgentClosed",
    "AgentConfig",
    "AgentError",
    "AgentEvent",
    "AgentInterrupted",
    "AgentSession",
    "CallerSpeechStarted",
    "CallerSpeechStopped",
    "ClearRequested",
    "DtmfRequested",
    "ErrorCategory",
    "HangupRequested",
    "MarkRequested",
    "NegotiatedFormats",
    "ProviderAuthError",
    "ProviderConfigError",
    "ProviderConnectError",
    "ProviderError",
    "ProviderProtocolError",
    "ProviderRateLimitError",
    "ResponseDone",
    "TranscriptReceived",
    "TransferRequested",
]


@dataclass(frozen=True, slots=True)
class NegotiatedFormats:
    """The formats the agent takes (``input``) and produces (``output``) for this call."""

    input: AudioFormat
    output: AudioFormat


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
