"""DTMF carried in SIP INFO bodies (legacy, pre-RFC 6086 usage), pure.

Two body types are in the wild:

* ``application/dtmf-relay`` (Cisco's format, sent by Asterisk, FreeSWITCH, many SBCs)::

      Signal=5
      Duration=160

* ``application/dtmf`` (a bare digit, sometimes a named key): ``5``.

:func:`parse_info_dtmf` returns ``(digit, duration_ms)`` or ``None`` when the body is not
a DTMF key it understands (unknown key names, empty bodies); it never raises.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DTMF_INFO_TYPES", "parse_info_dtmf"]

DTMF_INFO_TYPES: Final = ("application/dtmf-relay", "application/dtmf")
_DIGITS: Final = "0123456789*#ABCD"
# RFC 4733 §3.2 event codes 10 and 11, which some senders write as numbers.
_EVENT_CODES: Final = {"10": "*", "11": "#", "12": "A", "13": "B", "14": "C", "15": "D"}
_MAX_BODY: Final = 512


def _digit(text: str) -> str | None:
    text = text.strip().upper()
    if text in _EVENT_CODES:
        return _EVENT_CODES[text]
    if len(text) == 1 and text in _DIGITS:
        return text
    return None


def parse_info_dtmf(content_type: str | None, body: bytes) -> tuple[str, int | None] | None:
    """The key pressed and its duration (ms) from an INFO body, or ``None``."""
    if content_type not in DTMF_INFO_TYPES or not body or len(body) > _MAX_BODY:
        return None
    text = body.decode("utf-8", errors="replace")
    if content_type == "application/dtmf":
        key = _digit(text)
        return None if key is None else (key, None)
    digit: str | None = None
    duration: int | None = None
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if not sep:
            continue
        key = name.strip().lower()
        if key == "signal":
            digit = _digit(value)
        elif key == "duration":
            raw = value.strip()
            if raw.isdigit() and len(raw) <= 6:
                duration = int(raw)
    return None if digit is None else (digit, duration)
