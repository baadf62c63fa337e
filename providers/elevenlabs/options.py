"""The trunk's ElevenLabs settings read into typed values, and the call's dynamic variables.

Pure. A setting of the wrong type raises ``ProviderConfigError`` naming the key.

``options`` keys read: ``agent_id`` (required), ``first_message`` (or ``greeting``),
``language``, ``voice_id``, ``dtmf_template``, ``enable_end_call``, ``enable_transfer``,
``transfer_target``. ``AgentConfig.system_prompt`` becomes the prompt override.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode, urlsplit, urlunsplit

from media import CallContext
from providers.base import AgentConfig, ProviderConfigError

DEFAULT_BASE_URL: Final = "wss://api.elevenlabs.io/v1/convai/conversation"
DEFAULT_DTMF_TEMPLATE: Final = "The caller pressed {digit}."
MAX_TEXT: Final = 32_000
AGENT_ID: Final = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
# Dynamic variables: at most this many, names and values bounded (X- headers come from
# the caller's INVITE and must not grow the first message without limit).
MAX_VARIABLES: Final = 64
MAX_VARIABLE_VALUE: Final = 1024
_NOT_NAME = re.compile(r"[^a-z0-9_]+")


def _str(options: dict[str, object], key: str) -> str | None:
    value = options.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ProviderConfigError(f"ElevenLabs option {key!r} must be a string")
    if len(value) > MAX_TEXT:
        raise ProviderConfigError(f"ElevenLabs option {key!r} is too long")
    return value


def _bool(options: dict[str, object], key: str) -> bool:
    value = options.get(key, False)
    if not isinstance(value, bool):
        raise ProviderConfigError(f"ElevenLabs option {key!r} must be true or false")
    return value


@dataclass(frozen=True, slots=True)
class ConvaiOptions:
    """Typed view of the trunk's ElevenLabs settings."""

    agent_id: str
    api_key: str | None
    base_url: str
    api_url: str | None
    prompt: str | None
    first_message: str | None
    language: str | None
    voice_id: str | None
    dtmf_template: str
    enable_end_call: bool
    enable_transfer: bool
    transfer_target: str | None

    @classmethod
    def from_config(cls, config: AgentConfig) -> ConvaiOptions:
        """Read ``config``; raises ``ProviderConfigError`` for unusable settings."""
        o = config.options
        agent_id = _str(o, "agent_id")
        if agent_id is None or not AGENT_ID.match(agent_id):
            raise ProviderConfigError("ElevenLabs option 'agent_id' is missing or invalid")
        base = config.base_url or DEFAULT_BASE_URL
        if urlsplit(base).scheme not in ("ws", "wss"):
            raise ProviderConfigError(f"ElevenLabs base_url must be ws:// or wss://: {base!r}")
        return cls(
            agent_id=agent_id,
            api_key=config.api_key or None,
            base_url=base,
            api_url=config.api_url,
            prompt=config.system_prompt or None,
            first_message=_str(o, "first_message") or _str(o, "greeting"),
            language=_str(o, "language"),
            voice_id=_str(o, "voice_id"),
            dtmf_template=_str(o, "dtmf_template") or DEFAULT_DTMF_TEMPLATE,
            enable_end_call=_bool(o, "enable_end_call"),
            enable_transfer=_bool(o, "enable_transfer"),
            transfer_target=_str(o, "transfer_target"),
        )

    def public_url(self) -> str:
        """``base_url?agent_id=…`` for public agents (providers.md §2.1)."""
        parts = urlsplit(self.base_url)
        query = (parts.query + "&" if parts.query else "") + urlencode({"agent_id": self.agent_id})
        return urlunsplit(parts._replace(query=query))


def variable_name(name: str) -> str:
    """``X-Customer-Tier`` → ``x_customer_tier``: the letters, digits and underscores that
    ElevenLabs' ``{{variable}}`` placeholders take."""
    return _NOT_NAME.sub("_", name.lower()).strip("_")[:64]


def dynamic_variables(context: CallContext) -> dict[str, str]:
    """The call's metadata, X- headers and stream parameters as dynamic variables.

    Headers and custom parameters go in first (names normalised by ``variable_name``), the
    call metadata last so a header cannot forge it. ``system__`` names are reserved by
    ElevenLabs and skipped.
    """
    variables: dict[str, str] = {}
    for source in (context.custom_parameters, context.headers):
        for name, value in source.items():
            key = variable_name(name)
            if not key or key.startswith("system__") or len(variables) >= MAX_VARIABLES:
                continue
            variables[key] = value[:MAX_VARIABLE_VALUE]
    variables.update(
        {
            "call_id": context.call_id,
            "trunk_id": context.trunk_id,
            "sip_call_id": context.sip_call_id[:MAX_VARIABLE_VALUE],
            "from_number": context.from_number[:MAX_VARIABLE_VALUE],
            "to_number": context.to_number[:MAX_VARIABLE_VALUE],
            "direction": context.direction,
            "carrier": context.carrier,
        }
    )
    return variables
