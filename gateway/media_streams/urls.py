"""The URLs a carrier is given: webhooks to paste into its console, built from ``--public-url``.

Twilio signs the URL *it* requested (carriers.md §1.10), so these must be exactly what the
operator pastes; ``routes.py`` rebuilds the same URL from the same setting to check it.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "TELNYX_VOICE_PATH",
    "TWILIO_STATUS_PATH",
    "TWILIO_VOICE_PATH",
    "carrier_webhook_urls",
]

TWILIO_VOICE_PATH: Final = "/v1/carriers/twilio/voice/{trunk_id}"
TWILIO_STATUS_PATH: Final = "/v1/carriers/twilio/status/{trunk_id}"
TELNYX_VOICE_PATH: Final = "/v1/carriers/telnyx/voice/{trunk_id}"


def carrier_webhook_urls(public_base_url: str, trunk_id: str) -> dict[str, str]:
    """``{"twilio_voice", "twilio_status", "telnyx_voice"}`` for one trunk."""
    base = public_base_url.rstrip("/")
    return {
        "twilio_voice": base + TWILIO_VOICE_PATH.format(trunk_id=trunk_id),
        "twilio_status": base + TWILIO_STATUS_PATH.format(trunk_id=trunk_id),
        "telnyx_voice": base + TELNYX_VOICE_PATH.format(trunk_id=trunk_id),
    }
