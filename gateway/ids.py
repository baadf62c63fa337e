"""Prefixed, time-sortable identifiers: ``trunk_01jd…``, ``call_01jd…``.

The body is a ULID (48-bit millisecond timestamp + 80 random bits, Crockford base32), in
lower case, so ids sort by creation time: cursor pagination and "newest first" are an
index scan on the primary key.
"""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def new_id(prefix: str, *, now: float | None = None) -> str:
    """A new id such as ``trunk_01jd3c0k8q3m4r5s6t7v8w9x0y``."""
    millis = int((time.time() if now is None else now) * 1000)
    value = (millis << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


def looks_like(prefix: str, value: str) -> bool:
    """Whether ``value`` has the shape of an id made by ``new_id(prefix)``."""
    body = value[len(prefix) + 1 :]
    return value.startswith(prefix + "_") and len(body) == 26 and all(c in _ALPHABET for c in body)
