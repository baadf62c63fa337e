"""The trunk's settings for a customer agent, read from ``AgentConfig.options``.

Every option is checked here, once, so a typo in a trunk's ``provider_config`` reads as
one clear ``ProviderConfigError`` rather than a failure in the middle of a call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from providers.base import ProviderConfigError

Dialect = Literal["telepath", "twilio"]


@dataclass(frozen=True, slots=True)
class CustomAgentOptions:
    """Per-trunk settings of the custom WebSocket agent adapter.

    - ``dialect``: ``telepath`` (ours, default) or ``twilio`` (Twilio Media Streams).
    - ``accept_timeout``: seconds to wait for the agent's ``accept`` (telepath only).
    - ``binary_audio``: audio as raw binary frames instead of base64 JSON (telepath only).
    - ``vad_events``: we send ``speech_started`` / ``speech_stopped`` (telepath only).
    - ``send_queue_frames``: caller frames held while the agent reads slowly; the oldest
      is dropped beyond this (50 frames of 20 ms = 1 s).
    - ``max_payload_bytes``: the largest audio payload one agent message may carry.
    - ``max_pending_marks``: marks the agent may have outstanding at once.
    - ``max_protocol_errors``: malformed messages tolerated before the session is ended.
    - ``account_sid``: the ``accountSid`` the twilio dialect reports.
    """

    dialect: Dialect = "telepath"
    accept_timeout: float = 1.0
    binary_audio: bool = False
    vad_events: bool = False
    send_queue_frames: int = 50
    max_payload_bytes: int = 512 * 1024
    max_pending_marks: int = 1024
    max_protocol_errors: int = 100
    account_sid: str | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, object]) -> CustomAgentOptions:
        """Read and check the options; raises ``ProviderConfigError``. Unknown keys are
        left alone (the trunk's config is shared with other settings)."""
        dialect = options.get("dialect", "telepath")
        if dialect not in ("telepath", "twilio"):
            raise ProviderConfigError(
                f"custom agent 'dialect' must be 'telepath' or 'twilio', not {dialect!r}"
            )
        account_sid = options.get("account_sid")
        if account_sid is not None and not isinstance(account_sid, str):
            raise ProviderConfigError("custom agent 'account_sid' must be a string")
        return cls(
            dialect="twilio" if dialect == "twilio" else "telepath",
            accept_timeout=_number(options, "accept_timeout", 1.0, low=0.0, high=30.0),
            binary_audio=_flag(options, "binary_audio"),
            vad_events=_flag(options, "vad_events"),
            send_queue_frames=int(_number(options, "send_queue_frames", 50, low=1, high=5000)),
            max_payload_bytes=int(
                _number(options, "max_payload_bytes", 512 * 1024, low=1024, high=3 * 1024 * 1024)
            ),
            max_pending_marks=int(_number(options, "max_pending_marks", 1024, low=1, high=65536)),
            max_protocol_errors=int(
                _number(options, "max_protocol_errors", 100, low=1, high=1_000_000)
            ),
            account_sid=account_sid,
        )


def _flag(options: Mapping[str, object], name: str) -> bool:
    value = options.get(name, False)
    if not isinstance(value, bool):
        raise ProviderConfigError(f"custom agent {name!r} must be true or false")
    return value


def _number(
    options: Mapping[str, object], name: str, default: float, *, low: float, high: float
) -> float:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ProviderConfigError(f"custom agent {name!r} must be a number in [{low:g}, {high:g}]")
    return float(value)
