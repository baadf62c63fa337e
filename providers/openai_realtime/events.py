"""OpenAI Realtime (GA) wire models: server events parsed into frozen dataclasses, client
events built as JSON text.

Pure: no I/O, no clock. Only the event types the gateway acts on get a class; every other
``type`` parses to ``OtherServerEvent`` and is ignored by the caller. Anything that is not a
JSON object with a string ``type``, or that lacks a field an acted-on event needs, raises
``ProviderProtocolError``.

Sources: OpenAI Realtime GA server/client event reference (``types/realtime/*`` in the
``openai`` package), summarised in shared/protocols/providers.md §1.3-§1.6. The beta names
``response.audio.delta`` / ``response.audio_transcript.done`` are still accepted on the
receiving side (providers.md §1.4: "A defensive receiver may accept both").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from media import PCMA, PCMU, AudioFormat, Encoding
from providers.base import ProviderConfigError, ProviderProtocolError
from providers.wire import decode_base64, encode_base64, encode_json, load_message

# --- server → client ---


@dataclass(frozen=True, slots=True)
class SessionUpdated:
    """``session.updated``: the server applied our ``session.update``."""

    session: dict[str, object]


@dataclass(frozen=True, slots=True)
class ResponseCreated:
    """``response.created``: a response started."""

    response_id: str


@dataclass(frozen=True, slots=True)
class OutputAudioDelta:
    """``response.output_audio.delta`` (beta: ``response.audio.delta``), audio decoded."""

    response_id: str
    item_id: str
    audio: bytes


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """``input_audio_buffer.speech_started``: the server VAD heard the caller."""

    item_id: str
    audio_start_ms: int


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    """``input_audio_buffer.speech_stopped``: the caller's turn ended."""

    item_id: str
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class ResponseDone:
    """``response.done`` with the ids of its output items."""

    response_id: str
    status: str
    item_ids: tuple[str, ...]
    reason: str
    error_message: str


@dataclass(frozen=True, slots=True)
class OutputTranscriptDone:
    """``response.output_audio_transcript.done`` (beta: ``response.audio_transcript.done``)."""

    item_id: str
    transcript: str


@dataclass(frozen=True, slots=True)
class InputTranscriptCompleted:
    """``conversation.item.input_audio_transcription.completed``: what the caller said."""

    item_id: str
    transcript: str


@dataclass(frozen=True, slots=True)
class FunctionCallArgumentsDone:
    """``response.function_call_arguments.done``: the model called a tool."""

    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One entry of ``rate_limits.updated``."""

    name: str
    limit: int
    remaining: int
    reset_seconds: float


@dataclass(frozen=True, slots=True)
class RateLimitsUpdated:
    """``rate_limits.updated``, sent at the start of each response."""

    rate_limits: tuple[RateLimit, ...]


@dataclass(frozen=True, slots=True)
class ErrorReceived:
    """``error``: most are recoverable and leave the session open (providers.md §1.6)."""

    type: str
    code: str
    message: str
    event_id: str


@dataclass(frozen=True, slots=True)
class OtherServerEvent:
    """Any other server event; logged at debug level and otherwise ignored."""

    type: str


ServerEvent = (
    SessionUpdated
    | ResponseCreated
    | OutputAudioDelta
    | SpeechStarted
    | SpeechStopped
    | ResponseDone
    | OutputTranscriptDone
    | InputTranscriptCompleted
    | FunctionCallArgumentsDone
    | RateLimitsUpdated
    | ErrorReceived
    | OtherServerEvent
)

AUDIO_DELTA_TYPES: Final = frozenset({"response.output_audio.delta", "response.audio.delta"})
TRANSCRIPT_DONE_TYPES: Final = frozenset(
    {"response.output_audio_transcript.done", "response.audio_transcript.done"}
)


def _str(obj: dict[str, object], key: str, *, required: bool = True) -> str:
    value = obj.get(key)
    if isinstance(value, str):
        return value
    if value is None and not required:
        return ""
    raise ProviderProtocolError(f"OpenAI event field {key!r} is missing or not a string")


def _int(obj: dict[str, object], key: str) -> int:
    value = obj.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return 0


def _obj(obj: dict[str, object], key: str) -> dict[str, object]:
    value = obj.get(key)
    if isinstance(value, dict):
        return value
    raise ProviderProtocolError(f"OpenAI event field {key!r} is missing or not an object")


def parse_server_event(text: str | bytes) -> ServerEvent:
    """Parse one server message. Raises ``ProviderProtocolError`` on malformed input."""
    obj, kind = load_message(text, sender="OpenAI")
    if kind in AUDIO_DELTA_TYPES:
        return OutputAudioDelta(
            response_id=_str(obj, "response_id", required=False),
            item_id=_str(obj, "item_id"),
            audio=decode_base64(_str(obj, "delta"), what="OpenAI audio"),
        )
    if kind == "input_audio_buffer.speech_started":
        return SpeechStarted(_str(obj, "item_id", required=False), _int(obj, "audio_start_ms"))
    if kind == "input_audio_buffer.speech_stopped":
        return SpeechStopped(_str(obj, "item_id", required=False), _int(obj, "audio_end_ms"))
    if kind == "response.created":
        return ResponseCreated(_str(_obj(obj, "response"), "id"))
    if kind == "response.done":
        return _parse_response_done(_obj(obj, "response"))
    if kind in TRANSCRIPT_DONE_TYPES:
        return OutputTranscriptDone(
            _str(obj, "item_id", required=False), _str(obj, "transcript", required=False)
        )
    if kind == "conversation.item.input_audio_transcription.completed":
        return InputTranscriptCompleted(
            _str(obj, "item_id", required=False), _str(obj, "transcript", required=False)
        )
    if kind == "response.function_call_arguments.done":
        return FunctionCallArgumentsDone(
            call_id=_str(obj, "call_id"),
            name=_str(obj, "name"),
            arguments=_str(obj, "arguments", required=False),
        )
    if kind == "session.updated":
        return SessionUpdated(_obj(obj, "session"))
    if kind == "rate_limits.updated":
        return _parse_rate_limits(obj)
    if kind == "error":
        error = _obj(obj, "error")
        return ErrorReceived(
            type=_str(error, "type", required=False),
            code=_str(error, "code", required=False),
            message=_str(error, "message", required=False),
            event_id=_str(error, "event_id", required=False),
        )
    return OtherServerEvent(kind)


def _parse_response_done(response: dict[str, object]) -> ResponseDone:
    item_ids: list[str] = []
    output = response.get("output")
    if isinstance(output, list):
        for item in output:
            if isinstance(item, dict) and item.get("type") == "message":
                item_id = item.get("id")
                if isinstance(item_id, str):
                    item_ids.append(item_id)
    details = response.get("status_details")
    reason = error_message = ""
    if isinstance(details, dict):
        reason = _str(details, "reason", required=False)
        error = details.get("error")
        if isinstance(error, dict):
            error_message = _str(error, "message", required=False) or _str(
                error, "code", required=False
            )
    return ResponseDone(
        response_id=_str(response, "id"),
        status=_str(response, "status", required=False),
        item_ids=tuple(item_ids),
        reason=reason,
        error_message=error_message,
    )


def _parse_rate_limits(obj: dict[str, object]) -> RateLimitsUpdated:
    limits: list[RateLimit] = []
    raw = obj.get("rate_limits")
    if isinstance(raw, list):
        for entry in raw[:16]:  # the server sends two (requests, tokens); bound the rest
            if isinstance(entry, dict):
                reset = entry.get("reset_seconds")
                limits.append(
                    RateLimit(
                        name=_str(entry, "name", required=False),
                        limit=_int(entry, "limit"),
                        remaining=_int(entry, "remaining"),
                        reset_seconds=float(reset) if isinstance(reset, int | float) else 0.0,
                    )
                )
    return RateLimitsUpdated(tuple(limits))


# --- client → server ---


def audio_format_object(fmt: AudioFormat) -> dict[str, object]:
    """The GA ``audio.{input,output}.format`` object for ``fmt`` (providers.md §1.3)."""
    if fmt == PCMU:
        return {"type": "audio/pcmu"}
    if fmt == PCMA:
        return {"type": "audio/pcma"}
    if fmt.encoding is Encoding.L16 and fmt.sample_rate == 24000:
        # GA "audio/pcm" is 24 kHz 16-bit little-endian mono only.
        return {"type": "audio/pcm", "rate": 24000}
    raise ProviderConfigError(f"OpenAI Realtime cannot carry {fmt.name}")


encode = encode_json
"""Serialise a client event compactly (``providers.wire.encode_json``)."""


def input_audio_buffer_append(payload: bytes) -> str:
    """``input_audio_buffer.append`` (the hot path: no dict, no json.dumps)."""
    # base64 text needs no JSON escaping.
    audio = encode_base64(payload)
    return '{"type":"input_audio_buffer.append","audio":"' + audio + '"}'


def session_update(session: dict[str, object]) -> dict[str, object]:
    """``session.update`` carrying a GA ``session`` object (``type: "realtime"``)."""
    return {"type": "session.update", "session": session}


def conversation_item_truncate(item_id: str, audio_end_ms: int) -> dict[str, object]:
    """``conversation.item.truncate`` at ``audio_end_ms`` of content part 0."""
    return {
        "type": "conversation.item.truncate",
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": audio_end_ms,
    }


def user_text_item(text: str) -> dict[str, object]:
    """``conversation.item.create`` with a user ``input_text`` message."""
    return {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        },
    }


def function_call_output(call_id: str, output: dict[str, object]) -> dict[str, object]:
    """``conversation.item.create`` with a ``function_call_output`` item."""
    return {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": call_id, "output": encode(output)},
    }


def response_create(instructions: str | None = None) -> dict[str, object]:
    """``response.create``, optionally with per-response ``instructions``."""
    if instructions is None:
        return {"type": "response.create"}
    return {"type": "response.create", "response": {"instructions": instructions}}


def response_cancel() -> dict[str, object]:
    """``response.cancel``; harmless when nothing is running (providers.md §1.5)."""
    return {"type": "response.cancel"}
