"""Errors of the media-stream ingress, and the bounded JSON readers that raise them.

Error tree (one per package, STYLE.md P6)::

    MediaStreamError                        base of everything raised here
    ├── MediaStreamProtocolError            the carrier sent something we cannot accept (remote)
    │   └── UnsupportedMediaFormatError     ``start`` names an encoding we cannot carry
    ├── MediaStreamStateError               local misuse: e.g. encoding media before ``start``
    ├── MediaStreamConfigError              local misuse of a builder: bad URL, secret in a query
    └── SignatureError                      a webhook or WS upgrade failed authentication
        ├── MalformedSignatureError         header or key missing, not base64, wrong length
        ├── SignatureMismatchError          well-formed, but does not verify
        └── StaleTimestampError             Telnyx timestamp outside the tolerance window

A ``MediaStreamProtocolError`` means: close the WebSocket (or answer the webhook with 400);
the call ends with ``DisconnectReason.CARRIER_ERROR`` and ``Blame.CARRIER``. A
``SignatureError`` means: answer 403 (webhook) or refuse the upgrade, and never open an
agent session. ``MediaStreamStateError`` and ``MediaStreamConfigError`` are bugs on our
side.

The ``read_*`` helpers below turn hostile JSON (wrong types, missing keys, huge numbers,
base64 garbage, nesting bombs) into ``MediaStreamProtocolError`` so that no ``KeyError``,
``TypeError`` or ``RecursionError`` escapes a decoder.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from typing import Any, Final

import orjson

__all__ = [
    "MalformedSignatureError",
    "MediaStreamConfigError",
    "MediaStreamError",
    "MediaStreamProtocolError",
    "MediaStreamStateError",
    "SignatureError",
    "SignatureMismatchError",
    "StaleTimestampError",
    "UnsupportedMediaFormatError",
]


class MediaStreamError(Exception):
    """Base class of every error raised by ``ingress.media_streams``."""


class MediaStreamProtocolError(MediaStreamError):
    """The carrier's message is malformed, out of place or refers to the wrong stream."""


class UnsupportedMediaFormatError(MediaStreamProtocolError):
    """The stream's ``media_format`` is one Telepath cannot decode (OPUS, AMR-WB, …)."""

    def __init__(self, encoding: str, sample_rate: object) -> None:
        super().__init__(f"unsupported media format {encoding!r} at {sample_rate!r} Hz")
        self.encoding = encoding
        self.sample_rate = sample_rate


class MediaStreamStateError(MediaStreamError):
    """Local misuse of a codec, e.g. ``encode_media`` before the ``start`` message."""


class MediaStreamConfigError(MediaStreamError, ValueError):
    """Local misuse of a response builder (non-``wss`` URL, query string on a Stream URL)."""


class SignatureError(MediaStreamError):
    """A carrier signature did not authenticate the request."""


class MalformedSignatureError(SignatureError):
    """A signature header, timestamp or key is missing or cannot be parsed."""


class SignatureMismatchError(SignatureError):
    """The signature is well-formed but was not made over this request with this key."""


class StaleTimestampError(SignatureError):
    """The signed timestamp is too far from ``now`` (replay protection)."""

    def __init__(self, timestamp: int, now: float, tolerance: float) -> None:
        super().__init__(
            f"timestamp {timestamp} is {abs(now - timestamp):.0f} s from now "
            f"(tolerance {tolerance:.0f} s)"
        )
        self.timestamp = timestamp
        self.now = now
        self.tolerance = tolerance


# --- bounded JSON readers -------------------------------------------------------------

JsonObject = Mapping[str, Any]

_COUNTER = re.compile(r"[0-9]{1,15}")
_MAX_ID_CHARS: Final = 512


def parse_json_object(text: object, *, max_chars: int) -> JsonObject:
    """Parse one WebSocket text message into a JSON object, within ``max_chars``.

    ``text`` is typed ``object`` because anything else is refused here, as a protocol
    error, before compiled code would refuse it with a ``TypeError``."""
    if not isinstance(text, str | bytes):
        raise MediaStreamProtocolError(f"message is {type(text).__name__}, not text")
    if len(text) > max_chars:
        raise MediaStreamProtocolError(f"message of {len(text)} characters exceeds {max_chars}")
    try:
        # orjson (as providers.wire): one message per 20 ms frame of every call. It refuses
        # NaN, Infinity, lone surrogates and nesting deeper than 1024, all as ValueError.
        value = orjson.loads(text)
    except ValueError as exc:  # JSONDecodeError, bad UTF-8, nesting bombs
        raise MediaStreamProtocolError(f"message is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise MediaStreamProtocolError(f"message is a JSON {type(value).__name__}, not an object")
    return value


def read_object(obj: JsonObject, key: str, where: str) -> JsonObject:
    """``obj[key]``, which must be a JSON object."""
    value = obj.get(key)
    if not isinstance(value, dict):
        raise MediaStreamProtocolError(f"{where}.{key} must be an object, got {_kind(value)}")
    return value


def read_str(obj: JsonObject, key: str, where: str, *, max_chars: int = _MAX_ID_CHARS) -> str:
    """``obj[key]``, which must be a non-empty string of at most ``max_chars``."""
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise MediaStreamProtocolError(
            f"{where}.{key} must be a non-empty string, got {_kind(value)}"
        )
    if len(value) > max_chars:
        raise MediaStreamProtocolError(f"{where}.{key} is longer than {max_chars} characters")
    return value


def read_optional_str(
    obj: JsonObject, key: str, where: str, *, max_chars: int = _MAX_ID_CHARS
) -> str | None:
    """``obj[key]`` if present and not null: then it must be a string of at most ``max_chars``."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MediaStreamProtocolError(f"{where}.{key} must be a string, got {_kind(value)}")
    if len(value) > max_chars:
        raise MediaStreamProtocolError(f"{where}.{key} is longer than {max_chars} characters")
    return value


def read_counter(obj: JsonObject, key: str, where: str) -> int:
    """A non-negative counter sent as a decimal string (both carriers) or a JSON integer."""
    value = obj.get(key)
    if isinstance(value, bool):  # bool is an int subclass; True is not a sequence number
        raise MediaStreamProtocolError(f"{where}.{key} must be a counter, got a boolean")
    if isinstance(value, int) and 0 <= value < 10**15:
        return value
    if isinstance(value, str) and _COUNTER.fullmatch(value):
        return int(value)
    raise MediaStreamProtocolError(f"{where}.{key} must be a decimal counter, got {_kind(value)}")


def read_optional_counter(obj: JsonObject, key: str, where: str) -> int | None:
    """Like ``read_counter`` but ``None`` when the key is absent or null."""
    if obj.get(key) is None:
        return None
    return read_counter(obj, key, where)


def read_string_map(obj: JsonObject, key: str, where: str, *, max_items: int) -> dict[str, str]:
    """``obj[key]`` as a ``{str: str}`` map (absent → empty); scalars are turned into text."""
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MediaStreamProtocolError(f"{where}.{key} must be an object, got {_kind(value)}")
    if len(value) > max_items:
        raise MediaStreamProtocolError(f"{where}.{key} has more than {max_items} entries")
    out: dict[str, str] = {}
    for name, item in value.items():
        if isinstance(item, str):
            text = item
        elif isinstance(item, bool):
            text = "true" if item else "false"
        elif isinstance(item, int | float):
            text = str(item)
        else:
            raise MediaStreamProtocolError(f"{where}.{key}.{name} must be a scalar")
        if len(name) > _MAX_ID_CHARS or len(text) > 4096:
            raise MediaStreamProtocolError(f"{where}.{key}.{name} is too long")
        out[name] = text
    return out


def read_str_list(obj: JsonObject, key: str, where: str, *, max_items: int = 16) -> tuple[str, ...]:
    """``obj[key]`` as a tuple of short strings (absent → empty)."""
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > max_items:
        raise MediaStreamProtocolError(
            f"{where}.{key} must be a list of at most {max_items} strings"
        )
    if not all(isinstance(item, str) and len(item) <= _MAX_ID_CHARS for item in value):
        raise MediaStreamProtocolError(f"{where}.{key} must contain only short strings")
    return tuple(value)


def decode_base64(value: object, where: str, *, max_bytes: int) -> bytes:
    """Strict base64 (RFC 4648 §4 alphabet, padding required) of at most ``max_bytes`` bytes."""
    if not isinstance(value, str):
        raise MediaStreamProtocolError(f"{where} must be a base64 string, got {_kind(value)}")
    # 4 characters carry 3 bytes: refuse before decoding anything oversized.
    if len(value) > (max_bytes + 2) // 3 * 4:
        raise MediaStreamProtocolError(f"{where} exceeds {max_bytes} bytes")
    try:
        # binascii directly, as providers.wire: base64.b64decode(validate=True) is an
        # interpreted wrapper around this very call, made for every frame.
        data = binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise MediaStreamProtocolError(f"{where} is not valid base64: {exc}") from None
    if len(data) > max_bytes:
        raise MediaStreamProtocolError(f"{where} exceeds {max_bytes} bytes")
    return data


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return "an empty string" if not value else "a string"
    return f"a {type(value).__name__}"
