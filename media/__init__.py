"""Telepath's media leaf package.

It owns every type that crosses the seams between the ingresses (``ingress/``), the
AI-provider adapters (``providers/``) and the bridge (``gateway/``): audio formats and
frames, DTMF digits, call-end classification and the call context; plus the codecs,
streaming resamplers, format converters and voice-activity detection.

It imports nothing else of ours (see ``docs/architecture.md``).
"""

from media.context import CallContext
from media.ending import Blame, CallEnd, DisconnectReason
from media.errors import FormatMismatchError, MediaError, PayloadError, UnsupportedFormatError
from media.frames import (
    G722_16K,
    L16_8K,
    L16_16K,
    L16_24K,
    PCMA,
    PCMU,
    AudioFormat,
    AudioFrame,
    DtmfDigit,
    Encoding,
    LegEnded,
    LegEvent,
    MarkPlayed,
)

__all__ = [
    "G722_16K",
    "L16_8K",
    "L16_16K",
    "L16_24K",
    "PCMA",
    "PCMU",
    "AudioFormat",
    "AudioFrame",
    "Blame",
    "CallContext",
    "CallEnd",
    "DisconnectReason",
    "DtmfDigit",
    "Encoding",
    "FormatMismatchError",
    "LegEnded",
    "LegEvent",
    "MarkPlayed",
    "MediaError",
    "PayloadError",
    "UnsupportedFormatError",
]
