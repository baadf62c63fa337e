"""HTML form fields → the API's request bodies, so the dashboard validates exactly like it.

The connection form is flat (one input per field, the provider's fields in their own
fieldset); these functions turn it into the JSON body ``POST``/``PATCH /v1/trunks`` take,
and the routes run that through ``parse_model(TrunkCreate | TrunkUpdate, …)``: the same
rules and the same error messages as the API. Nothing here touches the request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gateway.services.errors import InvalidRequest

PROVIDER_LABELS = {
    "openai": "OpenAI Realtime",
    "elevenlabs": "ElevenLabs Conversational AI",
    "custom": "Custom WebSocket",
    "echo": "Echo (built in)",
}
DIALECTS = {"telepath": "Telepath JSON", "twilio": "Twilio Media Streams"}
# Text inputs of the connection form, by provider (fields of other providers are ignored).
PROVIDER_FIELDS = {
    "openai": ("openai_api_key", "openai_model", "openai_voice", "system_prompt"),
    "elevenlabs": ("elevenlabs_api_key", "elevenlabs_agent_id", "elevenlabs_voice_id"),
    "custom": ("custom_endpoint", "custom_headers", "custom_dialect", "custom_system_prompt"),
    "echo": (),
}
_SECRETS = ("openai_api_key", "elevenlabs_api_key", "custom_headers", "webhook_secret")
_MAX_HEADER_LINES = 40


def _text(form: Mapping[str, str], name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def parse_headers(text: str) -> dict[str, str]:
    """``Name: value`` lines (blank lines ignored) → a header dict; ``invalid_headers``."""
    headers: dict[str, str] = {}
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > _MAX_HEADER_LINES:
        raise InvalidRequest("invalid_headers", "at most 20 custom headers")
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise InvalidRequest(
                "invalid_headers",
                "custom headers: write one 'Name: value' per line, e.g. 'Authorization: Bearer …'",
            )
        headers[name.strip()] = value.strip()
    return headers


def parse_numbers(text: str) -> list[str]:
    """Inbound numbers separated by commas, spaces or new lines."""
    return [n for n in re.split(r"[\s,;]+", text) if n]


def connection_body(form: Mapping[str, str], *, editing: bool) -> dict[str, Any]:
    """The ``/v1/trunks`` request body for the connection form.

    Creating, blank inputs are left out. Editing, a blank secret keeps the stored one (the
    form never shows secrets), and a blank non-secret input clears its field.
    """
    provider = _text(form, "ai_provider")
    if provider not in PROVIDER_FIELDS:
        raise InvalidRequest("invalid_field", "Choose an AI provider")
    body: dict[str, Any] = {"ai_provider": provider}
    config: dict[str, Any] = {}
    wanted = PROVIDER_FIELDS[provider]

    def put(name: str, value: Any, *, secret: bool = False, into: dict[str, Any] = body) -> None:
        if value in ("", None, [], {}):
            if editing and not secret:
                into[name] = None
            return
        into[name] = value

    name = _text(form, "name")
    if name or not editing:
        put("name", name)
    if not editing:
        put("sip_username", _text(form, "sip_username"))
        put("sip_password", _text(form, "sip_password"))
    if "openai_api_key" in wanted:
        put("openai_api_key", _text(form, "openai_api_key"), secret=True)
        put("model", _text(form, "openai_model"), into=config)
        put("voice", _text(form, "openai_voice"), into=config)
    if "elevenlabs_api_key" in wanted:
        put("elevenlabs_api_key", _text(form, "elevenlabs_api_key"), secret=True)
        put("agent_id", _text(form, "elevenlabs_agent_id"), into=config)
        put("voice_id", _text(form, "elevenlabs_voice_id"), into=config)
    if "custom_endpoint" in wanted:
        put("custom_endpoint", _text(form, "custom_endpoint"))
        headers = _text(form, "custom_headers")
        put("custom_headers", parse_headers(headers) if headers else None, secret=True)
        put("dialect", _text(form, "custom_dialect"), into=config)
    if "system_prompt" in wanted:
        put("system_prompt", _text(form, "system_prompt"))
    if "custom_system_prompt" in wanted:
        put("system_prompt", _text(form, "custom_system_prompt"))
    put("inbound_numbers", parse_numbers(_text(form, "inbound_numbers")))
    put("webhook_url", _text(form, "webhook_url"))
    put("webhook_secret", _text(form, "webhook_secret"), secret=True)
    if config:
        body["provider_config"] = config
    return body


def sticky_values(form: Mapping[str, str]) -> dict[str, str]:
    """What to put back into the form after a refused submit (never the provider secrets)."""
    return {
        key: value
        for key, value in form.items()
        if isinstance(value, str) and key not in _SECRETS and key != "csrf_token"
    }
