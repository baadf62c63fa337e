"""Carrier webhook and WebSocket-upgrade authentication.

- Twilio: ``X-Twilio-Signature`` = base64(HMAC-SHA1(auth token, URL + sorted form
  name/value pairs)) (TW-SEC, carriers.md §1.10), checked with the ``twilio`` package's
  ``RequestValidator`` over the URL *as Twilio requested it*: built from the configured
  public base URL, never from the Host header a proxy may have rewritten.
- Telnyx: Ed25519 over ``f"{telnyx-timestamp}|{raw body}"`` with the account's public key
  (base64 of 32 raw bytes, as the portal shows it), the timestamp within 300 s of ``now``
  (carriers.md §2.6), checked with ``cryptography``.
- Telnyx WebSocket: the per-call ``stream_auth_token`` we set, compared in constant time.

Every check returns normally or raises a ``SignatureError`` subclass (``errors.py``):
``MalformedSignatureError``, ``SignatureMismatchError`` or ``StaleTimestampError``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from twilio.request_validator import RequestValidator

from ingress.media_streams.errors import (
    MalformedSignatureError,
    SignatureMismatchError,
    StaleTimestampError,
)

__all__ = [
    "TELNYX_SIGNATURE_HEADER",
    "TELNYX_TIMESTAMP_HEADER",
    "TELNYX_TIMESTAMP_TOLERANCE_S",
    "TWILIO_SIGNATURE_HEADER",
    "TelnyxWebhookVerifier",
    "check_stream_auth_token",
    "twilio_public_url",
    "twilio_url_candidates",
    "verify_telnyx_signature",
    "verify_twilio_signature",
]

TWILIO_SIGNATURE_HEADER: Final = "X-Twilio-Signature"
TELNYX_SIGNATURE_HEADER: Final = "telnyx-signature-ed25519"
TELNYX_TIMESTAMP_HEADER: Final = "telnyx-timestamp"
TELNYX_TIMESTAMP_TOLERANCE_S: Final = 300.0  # telnyx-python TIMESTAMP_TOLERANCE_SECONDS

_MAX_SIGNATURE_CHARS: Final = 512
_DEFAULT_PORTS: Final = {"https": 443, "wss": 443, "http": 80, "ws": 80}


# --- Twilio ---------------------------------------------------------------------------


def twilio_public_url(
    public_base_url: str, path: str, query: str = "", *, websocket: bool = False
) -> str:
    """The URL Twilio requested: configured public origin + request path (+ raw query).

    ``public_base_url`` is e.g. ``https://gw.example.com`` or
    ``https://gw.example.com:8443/telepath`` (a path prefix the proxy strips is kept).
    ``path`` is the path our app saw, ``query`` the raw query string (webhooks may carry
    one; Twilio signs it). For a WebSocket upgrade (``websocket=True``) the scheme becomes
    ``wss``: Twilio signs the ``wss://`` URL it connected to (carriers.md §1.10).
    """
    try:
        base = urlsplit(public_base_url)
        base.port  # noqa: B018 - evaluated to reject a malformed port now
    except ValueError as exc:
        raise MalformedSignatureError(f"public base URL is malformed: {exc}") from None
    if base.scheme not in ("https", "http") or not base.hostname:
        raise MalformedSignatureError("public base URL must be an absolute http(s) URL")
    scheme = base.scheme
    if websocket:
        scheme = "wss" if scheme == "https" else "ws"
    if not path.startswith("/"):
        path = "/" + path
    full_path = base.path.rstrip("/") + path
    return urlunsplit((scheme, base.netloc, full_path, query.lstrip("?"), ""))


def twilio_url_candidates(url: str) -> list[str]:
    """The spellings of ``url`` Twilio may have signed: as given, and with the default
    port added or removed. ``RequestValidator`` tries ±port itself, but for ``wss`` it
    adds ``:80`` (it only knows ``https`` → 443), so we add ``:443`` for ``wss`` here.
    """
    parts = urlsplit(url)
    candidates = [url]
    default = _DEFAULT_PORTS.get(parts.scheme)
    host = parts.hostname
    if default is None or host is None:
        return candidates
    netloc_host = f"[{host}]" if ":" in host else host
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    try:
        port = parts.port
    except ValueError:
        return candidates
    if port is None:
        other = parts._replace(netloc=f"{prefix}{netloc_host}:{default}")
        candidates.append(urlunsplit(other))
    elif port == default:
        other = parts._replace(netloc=f"{prefix}{netloc_host}")
        candidates.append(urlunsplit(other))
    return candidates


class _FormParams:
    """Form fields in the shape ``RequestValidator`` reads (iterable names + ``getall``)."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._values: dict[str, list[str]] = {}
        for name, value in pairs:
            self._values.setdefault(name, []).append(value)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def getall(self, name: str) -> list[str]:
        return self._values[name]


def verify_twilio_signature(
    auth_token: str,
    url: str,
    params: Mapping[str, str] | Sequence[tuple[str, str]] | None,
    signature: str | None,
    *,
    algorithm: str | None = None,
) -> None:
    """Check ``X-Twilio-Signature`` for a request to ``url`` (from ``twilio_public_url``).

    ``params`` are the decoded form fields of a POST (a mapping, or ``(name, value)``
    pairs when a name repeats); ``None``/empty for a GET or a WS upgrade, whose query is
    part of ``url``. ``algorithm`` is from ``X-Twilio-Webhooks-Signature-Settings`` when
    Twilio sends it (``HMAC_SHA256`` with a shared key; default ``HMAC_SHA1``).
    Raises ``MalformedSignatureError`` (no token or header) or ``SignatureMismatchError``.
    """
    if not auth_token:
        raise MalformedSignatureError("no Twilio auth token is configured")
    if not signature or len(signature) > _MAX_SIGNATURE_CHARS:
        raise MalformedSignatureError(f"missing or oversized {TWILIO_SIGNATURE_HEADER} header")
    pairs = params.items() if isinstance(params, Mapping) else (params or ())
    form = _FormParams(pairs)
    validator = RequestValidator(auth_token)
    kwargs = {} if algorithm is None else {"algorithm": algorithm}
    for candidate in twilio_url_candidates(url):
        if validator.validate(candidate, form, signature, **kwargs) is True:
            return
    raise SignatureMismatchError(f"{TWILIO_SIGNATURE_HEADER} does not match this request")


# --- Telnyx ---------------------------------------------------------------------------


class TelnyxWebhookVerifier:
    """Verifies Telnyx webhooks with one account public key (parsed once)."""

    __slots__ = ("_key", "tolerance_s")

    def __init__(
        self, public_key: str, *, tolerance_s: float = TELNYX_TIMESTAMP_TOLERANCE_S
    ) -> None:
        """``public_key`` is the base64 string from the Telnyx portal (32 raw bytes).

        Raises ``MalformedSignatureError`` if it is not a valid Ed25519 public key.
        """
        raw = _b64(public_key, "Telnyx public key", max_chars=128)
        if len(raw) != 32:
            raise MalformedSignatureError(f"Telnyx public key is {len(raw)} bytes, not 32")
        try:
            self._key = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError as exc:
            raise MalformedSignatureError(f"Telnyx public key is invalid: {exc}") from None
        self.tolerance_s = tolerance_s

    def verify(
        self, raw_body: bytes, signature: str | None, timestamp: str | None, *, now: float
    ) -> int:
        """Verify one webhook; returns the signed timestamp (Unix seconds).

        ``raw_body`` must be the exact bytes received (JSON for Call Control, the
        urlencoded form for TeXML), before any parsing. ``signature`` and ``timestamp``
        are the ``telnyx-signature-ed25519`` and ``telnyx-timestamp`` headers; ``now`` is
        wall-clock Unix time. Raises ``MalformedSignatureError``,
        ``StaleTimestampError`` or ``SignatureMismatchError``.
        """
        if (
            not timestamp
            or len(timestamp) > 12
            or not (timestamp.isascii() and timestamp.isdigit())
        ):
            raise MalformedSignatureError(f"missing or malformed {TELNYX_TIMESTAMP_HEADER} header")
        if not signature:
            raise MalformedSignatureError(f"missing {TELNYX_SIGNATURE_HEADER} header")
        sig = _b64(signature, TELNYX_SIGNATURE_HEADER, max_chars=_MAX_SIGNATURE_CHARS)
        if len(sig) != 64:
            raise MalformedSignatureError(f"{TELNYX_SIGNATURE_HEADER} is {len(sig)} bytes, not 64")
        signed_at = int(timestamp)
        if abs(now - signed_at) > self.tolerance_s:
            raise StaleTimestampError(signed_at, now, self.tolerance_s)
        try:
            self._key.verify(sig, timestamp.encode("ascii") + b"|" + bytes(raw_body))
        except InvalidSignature:
            raise SignatureMismatchError("Telnyx signature does not match this body") from None
        return signed_at


def verify_telnyx_signature(
    raw_body: bytes,
    signature: str | None,
    timestamp: str | None,
    public_key: str,
    *,
    now: float,
    tolerance_s: float = TELNYX_TIMESTAMP_TOLERANCE_S,
) -> int:
    """One-shot ``TelnyxWebhookVerifier(public_key).verify(...)``; returns the timestamp."""
    return TelnyxWebhookVerifier(public_key, tolerance_s=tolerance_s).verify(
        raw_body, signature, timestamp, now=now
    )


def check_stream_auth_token(expected: str, presented: str | None) -> None:
    """Compare the ``stream_auth_token`` we gave Telnyx with what the upgrade presented.

    Telnyx sends it as the ``x-telnyx-streaming-auth-token`` header (carriers.md §2.5,
    secondary sources); some deployments see ``Authorization: Bearer`` instead, so a
    ``Bearer`` prefix is accepted. Constant-time; raises a ``SignatureError``.
    """
    if not expected:
        raise MalformedSignatureError("no stream auth token was issued for this call")
    if not presented or len(presented) > 4096 + 7:
        raise MalformedSignatureError("missing or oversized stream auth token")
    token = presented[7:] if presented[:7].lower() == "bearer " else presented
    if not hmac.compare_digest(
        token.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    ):
        raise SignatureMismatchError("stream auth token does not match")


def _b64(value: str, what: str, *, max_chars: int) -> bytes:
    if not isinstance(value, str) or len(value) > max_chars:
        raise MalformedSignatureError(f"{what} is missing or too long")
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedSignatureError(f"{what} is not base64: {exc}") from None
