"""ElevenLabs Agents Platform (Conversational AI) wire models: server events parsed into
frozen dataclasses, client events built as JSON text.

Pure: no I/O, no clock. Sources: the ElevenLabs AsyncAPI for
``/v1/convai/conversation`` and the ``elevenlabs`` SDK's ``ClientEvent`` enum, summarised in
shared/protocols/providers.md §2.2-§2.5. Event payloads sit under a per-type key
(``audio`` → ``audio_event``, ``ping`` → ``ping_event`` …). Anything that is not a JSON
object with a string ``type``, or lacks a field an acted-on event needs, raises
``ProviderProtocolError``; unknown types parse to ``UnknownEvent`` (the enum keeps growing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from media import PCMU, AudioFormat, Encoding
from providers.base import ProviderConfigError, ProviderProtocolError
from providers.wire import decode_base64, encode_base64, encode_json, load_message

# --- server → client ---


@dataclass(frozen=True, slots=True)
class ConversationInitiationMetadata:
    """``conversation_initiation_metadata``: the conversation id and the agent's formats."""

    conversation_id: str
    user_input_audio_format: str
    agent_output_audio_format: str


@dataclass(frozen=True, slots=True)
class Audio:
    """``audio``: a chunk of agent speech, decoded. ``event_id`` grows with each response."""

    event_id: int
    audio: bytes


@dataclass(frozen=True, slots=True)
class Interruption:
    """``interruption``: the caller barged in; audio with ``event_id`` ≤ this is stale."""

    event_id: int


@dataclass(frozen=True, slots=True)
class Ping:
    """``ping``: answer with ``pong`` carrying the same ``event_id`` at once."""

    event_id: int
    ping_ms: int | None


@dataclass(frozen=True, slots=True)
class AgentResponse:
    """``agent_response``: the agent's text for a reply, sent with its first audio."""

    text: str


@dataclass(frozen=True, slots=True)
class UserTranscript:
    """``user_transcript``: the final transcript of a caller turn."""

    text: str


@dataclass(frozen=True, slots=True)
class ClientToolCall:
    """``client_tool_call``: the agent calls a tool that the client runs."""

    tool_name: str
    tool_call_id: str
    parameters: dict[str, object]


@dataclass(frozen=True, slots=True)
class AgentToolResponse:
    """``agent_tool_response``: a server-side (system) tool ran, e.g. ``end_call``."""

    tool_name: str
    is_error: bool


@dataclass(frozen=True, slots=True)
class IgnoredEvent:
    """A known event the gateway does not use (``vad_score``, ``internal_*`` …)."""

    type: str


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """An event type this adapter does not know; logged, then ignored."""

    type: str


ServerEvent = (
    ConversationInitiationMetadata
    | Audio
    | Interruption
    | Ping
    | AgentResponse
    | UserTranscript
    | ClientToolCall
    | AgentToolResponse
    | IgnoredEvent
    | UnknownEvent
)

IGNORED: Final = frozenset(
    {
        "vad_score",
        "agent_response_correction",
        "tentative_user_transcript",
        "agent_chat_response_part",
        "agent_response_metadata",
        "asr_initiation_metadata",
        "conversation_initiation_client_data",
    }
)


def _payload(obj: dict[str, object], key: str) -> dict[str, object]:
    value = obj.get(key)
    if isinstance(value, dict):
        return value
    raise ProviderProtocolError(f"ElevenLabs event lacks the object {key!r}")


def _str(obj: dict[str, object], key: str) -> str:
    value = obj.get(key)
    if isinstance(value, str):
        return value
    raise ProviderProtocolError(f"ElevenLabs event field {key!r} is missing or not a string")


def _int(obj: dict[str, object], key: str) -> int:
    value = obj.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ProviderProtocolError(f"ElevenLabs event field {key!r} is missing or not an integer")


def parse_server_event(text: str | bytes) -> ServerEvent:
    """Parse one server message. Raises ``ProviderProtocolError`` on malformed input."""
    obj, kind = load_message(text, sender="ElevenLabs")
    if kind == "audio":
        event = _payload(obj, "audio_event")
        audio = decode_base64(_str(event, "audio_base_64"), what="ElevenLabs audio")
        return Audio(event_id=_int(event, "event_id"), audio=audio)
    if kind == "ping":
        event = _payload(obj, "ping_event")
        ping_ms = event.get("ping_ms")
        return Ping(
            event_id=_int(event, "event_id"),
            ping_ms=ping_ms if isinstance(ping_ms, int) and not isinstance(ping_ms, bool) else None,
        )
    if kind == "interruption":
        return Interruption(_int(_payload(obj, "interruption_event"), "event_id"))
    if kind == "agent_response":
        return AgentResponse(_str(_payload(obj, "agent_response_event"), "agent_response"))
    if kind == "user_transcript":
        return UserTranscript(_str(_payload(obj, "user_transcription_event"), "user_transcript"))
    if kind == "client_tool_call":
        event = _payload(obj, "client_tool_call")
        params = event.get("parameters")
        return ClientToolCall(
            tool_name=_str(event, "tool_name"),
            tool_call_id=_str(event, "tool_call_id"),
            parameters=params if isinstance(params, dict) else {},
        )
    if kind == "agent_tool_response":
        event = _payload(obj, "agent_tool_response")
        return AgentToolResponse(_str(event, "tool_name"), event.get("is_error") is True)
    if kind == "conversation_initiation_metadata":
        event = _payload(obj, "conversation_initiation_metadata_event")
        return ConversationInitiationMetadata(
            conversation_id=_str(event, "conversation_id"),
            user_input_audio_format=_str(event, "user_input_audio_format"),
            agent_output_audio_format=_str(event, "agent_output_audio_format"),
        )
    if kind in IGNORED or kind.startswith("internal_"):
        return IgnoredEvent(kind)
    return UnknownEvent(kind[:64])


def audio_format(name: str) -> AudioFormat:
    """The ``AudioFormat`` of an ElevenLabs format name (providers.md §2.3).

    ``ulaw_8000`` is G.711 µ-law (passthrough for PCMU legs); ``pcm_<rate>`` is 16-bit
    little-endian mono. Rates Telepath's converters do not carry (22050, 44100) raise
    ``ProviderConfigError``: the formats are set on the agent, not per conversation.
    """
    if name == "ulaw_8000":
        return PCMU
    encoding, _, rate = name.partition("_")
    if encoding == "pcm" and rate in ("8000", "16000", "24000", "48000"):
        return AudioFormat(Encoding.L16, int(rate))
    raise ProviderConfigError(
        f"ElevenLabs agent uses the audio format {name[:32]!r}; set it to ulaw_8000 (best for "
        "phone calls) or pcm_8000/16000/24000/48000 in the agent's settings"
    )


# --- client → server ---


encode = encode_json
"""Serialise a client event compactly (``providers.wire.encode_json``)."""


def user_audio_chunk(payload: bytes) -> str:
    """``{"user_audio_chunk": …}``: bare key, no ``type`` (providers.md §2.4)."""
    return '{"user_audio_chunk":"' + encode_base64(payload) + '"}'


def pong(event_id: int) -> dict[str, object]:
    """``pong`` for the ``ping`` with ``event_id``."""
    return {"type": "pong", "event_id": event_id}


def client_tool_result(tool_call_id: str, result: str, *, is_error: bool) -> dict[str, object]:
    """``client_tool_result`` for ``tool_call_id``."""
    return {
        "type": "client_tool_result",
        "tool_call_id": tool_call_id,
        "result": result,
        "is_error": is_error,
    }


def contextual_update(text: str) -> dict[str, object]:
    """``contextual_update``: non-interrupting context for the agent."""
    return {"type": "contextual_update", "text": text}


def conversation_initiation_client_data(
    *,
    dynamic_variables: dict[str, str],
    prompt: str | None = None,
    first_message: str | None = None,
    language: str | None = None,
    voice_id: str | None = None,
) -> dict[str, object]:
    """The first client message (providers.md §2.2). Overrides are sent only when set: the
    agent refuses overrides of fields it has not enabled."""
    agent: dict[str, object] = {}
    if prompt:
        agent["prompt"] = {"prompt": prompt}
    if first_message:
        agent["first_message"] = first_message
    if language:
        agent["language"] = language
    override: dict[str, object] = {}
    if agent:
        override["agent"] = agent
    if voice_id:
        override["tts"] = {"voice_id": voice_id}
    message: dict[str, object] = {"type": "conversation_initiation_client_data"}
    if override:
        message["conversation_config_override"] = override
    message["dynamic_variables"] = dynamic_variables
    return message
