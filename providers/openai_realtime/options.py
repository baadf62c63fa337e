"""The trunk's OpenAI settings (``AgentConfig``) read into typed values, and what follows from
them: the connect URL and headers, the negotiated formats and the ``session.update`` body.

Pure. A setting of the wrong type raises ``ProviderConfigError`` naming the key.

``options`` keys read (all optional): ``model``, ``voice``, ``turn_detection``
(``server_vad`` | ``semantic_vad`` | ``none``), ``vad_threshold``, ``prefix_padding_ms``,
``silence_duration_ms``, ``idle_timeout_ms``, ``eagerness``, ``interrupt_response``,
``create_response``, ``noise_reduction`` (``near_field`` | ``far_field`` | ``none``),
``transcription_model`` (``none`` disables caller transcripts), ``language``, ``greeting``,
``dtmf_template``, ``dtmf_response``, ``enable_end_call``, ``enable_transfer``,
``transfer_target``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from media import PCMA, PCMU, AudioFormat
from media.frames import L16_24K
from providers.base import AgentConfig, NegotiatedFormats, ProviderConfigError
from providers.openai_realtime.events import audio_format_object

DEFAULT_BASE_URL: Final = "wss://api.openai.com/v1/realtime"
DEFAULT_MODEL: Final = "gpt-realtime"
DEFAULT_VOICE: Final = "marin"  # OpenAI recommends marin/cedar (providers.md §1.3)
DEFAULT_DTMF_TEMPLATE: Final = "The caller pressed {digit}."
DEFAULT_TRANSCRIPTION_MODEL: Final = "gpt-4o-mini-transcribe"
MAX_TEXT: Final = 32_000  # instructions / greeting bound; the model context is far larger

END_CALL_TOOL: Final[dict[str, object]] = {
    "type": "function",
    "name": "end_call",
    "description": "End the phone call. Say goodbye first, then call this.",
    "parameters": {
        "type": "object",
        "properties": {"reason": {"type": "string", "description": "Why the call ends."}},
        "required": [],
    },
}


def _transfer_tool(fixed_target: bool) -> dict[str, object]:
    properties: dict[str, object] = {}
    required: list[str] = []
    if not fixed_target:
        properties["target"] = {
            "type": "string",
            "description": "E.164 phone number (+15551234567) or SIP URI to transfer to.",
        }
        required.append("target")
    return {
        "type": "function",
        "name": "transfer_call",
        "description": "Transfer the caller to a human agent or another number.",
        "parameters": {"type": "object", "properties": properties, "required": required},
    }


def opt_str(options: dict[str, object], key: str, default: str | None = None) -> str | None:
    """A string option, or ``default``."""
    value = options.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ProviderConfigError(f"OpenAI option {key!r} must be a string")
    if len(value) > MAX_TEXT:
        raise ProviderConfigError(f"OpenAI option {key!r} is too long")
    return value


def opt_bool(options: dict[str, object], key: str, default: bool) -> bool:
    """A boolean option, or ``default``."""
    value = options.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ProviderConfigError(f"OpenAI option {key!r} must be true or false")
    return value


def opt_number(options: dict[str, object], key: str) -> float | None:
    """A numeric option, or ``None`` (the server's default applies)."""
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProviderConfigError(f"OpenAI option {key!r} must be a number")
    return float(value)


@dataclass(frozen=True, slots=True)
class RealtimeOptions:
    """Typed view of the trunk's OpenAI settings."""

    url: str
    headers: dict[str, str]
    model: str
    voice: str
    instructions: str | None
    turn_detection: dict[str, object] | None
    interrupt_response: bool
    noise_reduction: str | None
    transcription_model: str | None
    language: str | None
    greeting: str | None
    dtmf_template: str
    dtmf_response: bool
    enable_end_call: bool
    enable_transfer: bool
    transfer_target: str | None

    @classmethod
    def from_config(cls, config: AgentConfig) -> RealtimeOptions:
        """Read ``config``; raises ``ProviderConfigError`` for unusable settings."""
        o = config.options
        model = opt_str(o, "model", DEFAULT_MODEL) or DEFAULT_MODEL
        base = config.base_url or DEFAULT_BASE_URL
        if urlsplit(base).scheme not in ("ws", "wss"):
            raise ProviderConfigError(f"OpenAI base_url must be ws:// or wss://: {base!r}")
        if config.api_key is None and config.base_url is None:
            raise ProviderConfigError("OpenAI API key is not configured for this trunk")
        headers = {
            name: value
            for name, value in config.headers.items()
            # GA only: the beta header gets the socket closed with 4000 (providers.md §0.1).
            if name.lower() not in ("openai-beta", "authorization")
        }
        if config.api_key is not None:
            headers["Authorization"] = f"Bearer {config.api_key}"
        interrupt = opt_bool(o, "interrupt_response", True)
        return cls(
            url=realtime_url(base, model),
            headers=headers,
            model=model,
            voice=opt_str(o, "voice", DEFAULT_VOICE) or DEFAULT_VOICE,
            instructions=config.system_prompt,
            turn_detection=_turn_detection(o, interrupt),
            interrupt_response=interrupt,
            noise_reduction=_none_if_off(opt_str(o, "noise_reduction", "near_field")),
            transcription_model=_none_if_off(
                opt_str(o, "transcription_model", DEFAULT_TRANSCRIPTION_MODEL)
            ),
            language=opt_str(o, "language"),
            greeting=opt_str(o, "greeting") or None,
            dtmf_template=opt_str(o, "dtmf_template", DEFAULT_DTMF_TEMPLATE)
            or DEFAULT_DTMF_TEMPLATE,
            dtmf_response=opt_bool(o, "dtmf_response", True),
            enable_end_call=opt_bool(o, "enable_end_call", False),
            enable_transfer=opt_bool(o, "enable_transfer", False),
            transfer_target=opt_str(o, "transfer_target") or None,
        )

    def session(self, formats: NegotiatedFormats) -> dict[str, object]:
        """The GA ``session`` object for ``session.update`` (providers.md §1.3)."""
        audio_input: dict[str, object] = {
            "format": audio_format_object(formats.input),
            "turn_detection": self.turn_detection,
            "noise_reduction": (
                {"type": self.noise_reduction} if self.noise_reduction is not None else None
            ),
        }
        if self.transcription_model is not None:
            transcription: dict[str, object] = {"model": self.transcription_model}
            if self.language:
                transcription["language"] = self.language
            audio_input["transcription"] = transcription
        session: dict[str, object] = {
            "type": "realtime",
            "model": self.model,
            "output_modalities": ["audio"],
            "audio": {
                "input": audio_input,
                "output": {"format": audio_format_object(formats.output), "voice": self.voice},
            },
        }
        if self.instructions:
            session["instructions"] = self.instructions
        tools: list[dict[str, object]] = []
        if self.enable_end_call:
            tools.append(END_CALL_TOOL)
        if self.enable_transfer:
            tools.append(_transfer_tool(self.transfer_target is not None))
        if tools:
            session["tools"] = tools
            session["tool_choice"] = "auto"
        return session


def negotiate(preferred: AudioFormat) -> NegotiatedFormats:
    """G.711 legs pass straight through (``audio/pcmu`` / ``audio/pcma``); every other leg
    format meets OpenAI at L16 24 kHz, the only PCM rate GA accepts (providers.md §1.3)."""
    if preferred in (PCMU, PCMA):
        return NegotiatedFormats(input=preferred, output=preferred)
    return NegotiatedFormats(input=L16_24K, output=L16_24K)


def realtime_url(base: str, model: str) -> str:
    """``base`` with ``model=`` set in its query (other query parameters kept, e.g. Azure's)."""
    parts = urlsplit(base)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "model"]
    query.append(("model", model))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _none_if_off(value: str | None) -> str | None:
    if value is None or value.lower() in ("", "none", "off", "null"):
        return None
    return value


def _turn_detection(o: dict[str, object], interrupt: bool) -> dict[str, object] | None:
    kind = (opt_str(o, "turn_detection", "server_vad") or "server_vad").lower()
    if kind in ("none", "off", "manual"):
        return None
    create = opt_bool(o, "create_response", True)
    if kind == "semantic_vad":
        detection: dict[str, object] = {
            "type": "semantic_vad",
            "create_response": create,
            "interrupt_response": interrupt,
        }
        eagerness = opt_str(o, "eagerness")
        if eagerness is not None:
            if eagerness not in ("low", "medium", "high", "auto"):
                raise ProviderConfigError(f"OpenAI option 'eagerness' is invalid: {eagerness!r}")
            detection["eagerness"] = eagerness
        return detection
    if kind != "server_vad":
        raise ProviderConfigError(f"OpenAI option 'turn_detection' is invalid: {kind!r}")
    detection = {"type": "server_vad", "create_response": create, "interrupt_response": interrupt}
    threshold = opt_number(o, "vad_threshold")
    if threshold is not None:
        if not 0.0 <= threshold <= 1.0:
            raise ProviderConfigError("OpenAI option 'vad_threshold' must be within 0..1")
        detection["threshold"] = threshold
    for key in ("prefix_padding_ms", "silence_duration_ms", "idle_timeout_ms"):
        value = opt_number(o, key)
        if value is not None:
            if value < 0:
                raise ProviderConfigError(f"OpenAI option {key!r} must not be negative")
            detection[key] = int(value)
    return detection
