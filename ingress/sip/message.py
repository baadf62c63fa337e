"""SIP requests and responses (RFC 3261 §7) and the response builder (§8.2.6).

:class:`Request` and :class:`Response` are frozen dataclasses. A message from
``parser.parse_message`` keeps its raw start line and raw header lines, so
``parse_message(data).serialise() == data`` for an unmodified message (the trailing octets
of a UDP datagram beyond Content-Length excepted); every ``with_*`` change re-renders only
what it touches. For a message built here, ``parse_message(m.serialise()) == m``
(equality ignores the raw bytes).

Typed accessors (``top_via``, ``cseq``, ``from_`` …) parse lazily; on a parsed message they
cannot fail because the parser validated those headers; on a hand-built malformed one they
raise ``SipParseError``.

Randomness (tags, branches) comes from an injected ``RandomSource``, a callable returning
``n`` random bytes (``secrets.token_bytes`` in production, a seeded fake in tests).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Final

from .errors import SipParseError
from .headers import CSeq, HeaderField, Headers, NameAddr, Via
from .uri import Uri

__all__ = [
    "BRANCH_MAGIC_COOKIE",
    "Message",
    "Peer",
    "RandomSource",
    "REASON_PHRASES",
    "Request",
    "Response",
    "TransportKind",
    "build_response",
    "new_branch",
    "new_tag",
]

RandomSource = Callable[[int], bytes]

#: RFC 3261 §8.1.1.7: branches of RFC 3261 clients start with this.
BRANCH_MAGIC_COOKIE: Final = "z9hG4bK"

REASON_PHRASES: Final[dict[int, str]] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
}


class TransportKind(enum.Enum):
    """The transport a message travelled on; UDP is the only unreliable one here."""

    UDP = "UDP"
    TCP = "TCP"
    TLS = "TLS"

    @property
    def reliable(self) -> bool:
        """RFC 3261 §17: reliable transports switch off retransmission timers."""
        return self is not TransportKind.UDP


@dataclass(frozen=True, slots=True)
class Peer:
    """Where a message came from or goes to. ``host`` is an IP literal."""

    transport: TransportKind
    host: str
    port: int


def new_tag(random: RandomSource) -> str:
    """A From/To tag with 64 random bits (RFC 3261 §19.3: at least 32)."""
    return random(8).hex()


def new_branch(random: RandomSource) -> str:
    """A Via branch: the magic cookie plus 64 random bits (RFC 3261 §8.1.1.7)."""
    return BRANCH_MAGIC_COOKIE + random(8).hex()


class Message:
    """Accessors shared by requests and responses. Do not instantiate directly."""

    __slots__ = ()
    headers: Headers
    body: bytes

    @property
    def vias(self) -> list[Via]:
        """Every Via value, topmost first."""
        return [Via.parse(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via | None:
        """The topmost Via, or ``None``."""
        values = self.headers.get_all("Via")
        return Via.parse(values[0]) if values else None

    def _name_addr(self, name: str) -> NameAddr | None:
        value = self.headers.get(name)
        return None if value is None else NameAddr.parse(value)

    @property
    def from_(self) -> NameAddr | None:
        """The (first) From value."""
        return self._name_addr("From")

    @property
    def to(self) -> NameAddr | None:
        """The (first) To value."""
        return self._name_addr("To")

    @property
    def call_id(self) -> str | None:
        """The (first) Call-ID."""
        return self.headers.get("Call-ID")

    @property
    def cseq(self) -> CSeq | None:
        """The (first) CSeq."""
        value = self.headers.get("CSeq")
        return None if value is None else CSeq.parse(value)

    @property
    def contacts(self) -> list[NameAddr]:
        """Every Contact value (``Contact: *`` yields nothing; check the header)."""
        return [NameAddr.parse(v) for v in self.headers.get_all("Contact") if v != "*"]

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards, or ``None``."""
        value = self.headers.get("Max-Forwards")
        return None if value is None else _integer(value, "Max-Forwards")

    @property
    def content_type(self) -> str | None:
        """The media type, lower-cased, without parameters."""
        value = self.headers.get("Content-Type")
        return None if value is None else value.split(";")[0].strip().lower()

    def _rendered(self, start: bytes) -> bytes:
        return start + b"".join(f.to_bytes() for f in self.headers) + b"\r\n" + self.body


def _integer(value: str, name: str) -> int:
    text = value.strip()
    if not text.isdigit() or len(text) > 10:
        raise SipParseError(f"malformed {name}")
    return int(text)


def _with_body(headers: Headers, body: bytes, content_type: str | None) -> Headers:
    if content_type is not None:
        headers = headers.replace("Content-Type", content_type)
    elif not body:
        headers = headers.remove("Content-Type")
    return headers.replace("Content-Length", str(len(body)))


@dataclass(frozen=True, slots=True)
class Request(Message):
    """A SIP request. ``raw_start`` is the received start line (``None`` if built)."""

    method: str
    uri: Uri
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = "SIP/2.0"
    raw_start: bytes | None = field(default=None, compare=False, repr=False)

    def serialise(self) -> bytes:
        """The wire bytes (the raw start line and header lines where unmodified)."""
        start = self.raw_start or f"{self.method} {self.uri} {self.version}\r\n".encode()
        return self._rendered(start)

    def __bytes__(self) -> bytes:
        return self.serialise()

    def with_headers(self, headers: Headers) -> Request:
        """A copy with ``headers``."""
        return replace(self, headers=headers)

    def with_body(self, body: bytes, content_type: str | None = None) -> Request:
        """A copy with ``body``, Content-Length updated, Content-Type set if given."""
        return replace(self, body=body, headers=_with_body(self.headers, body, content_type))


@dataclass(frozen=True, slots=True)
class Response(Message):
    """A SIP response. ``raw_start`` is the received status line (``None`` if built)."""

    status: int
    reason: str = ""
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = "SIP/2.0"
    raw_start: bytes | None = field(default=None, compare=False, repr=False)

    def serialise(self) -> bytes:
        """The wire bytes (the raw status line and header lines where unmodified)."""
        line = f"{self.version} {self.status} {self.reason}\r\n"
        start = self.raw_start or line.encode("utf-8", errors="surrogateescape")
        return self._rendered(start)

    def __bytes__(self) -> bytes:
        return self.serialise()

    def with_headers(self, headers: Headers) -> Response:
        """A copy with ``headers``."""
        return replace(self, headers=headers)

    def with_body(self, body: bytes, content_type: str | None = None) -> Response:
        """A copy with ``body``, Content-Length updated, Content-Type set if given."""
        return replace(self, body=body, headers=_with_body(self.headers, body, content_type))


_COPIED: Final = ("via", "from", "to", "call-id", "cseq")


def build_response(
    request: Request | Iterable[HeaderField],
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    extra: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> Response:
    """Build a response to ``request`` per RFC 3261 §8.2.6.

    Copies every Via (in order), From, To, Call-ID and CSeq from the request (their raw
    lines are reused, so they match byte for byte), adds ``;tag=to_tag`` to To when the
    request's To has no tag and ``status`` > 100 (§8.2.6.2), then appends ``extra`` headers
    and a Content-Length. ``request`` may also be the salvaged fields of a request that
    failed to parse (``ErrorContext.fields`` wrapped in ``HeaderField``).

    Use ``new_tag(random)`` for ``to_tag``; reuse the dialog's tag for later responses.
    """
    fields = request.headers.fields if isinstance(request, Request) else tuple(request)
    copied: list[HeaderField] = []
    for f in fields:
        name = f.canonical.lower()
        if name not in _COPIED:
            continue
        if name == "to" and to_tag is not None and status > 100:
            try:
                to = NameAddr.parse(f.value)
            except SipParseError:
                to = None
            if to is not None and to.tag is None:
                f = HeaderField(f.name, f"{f.value};tag={to_tag}")
        copied.append(f)
    headers = Headers(tuple(copied))
    for name, value in extra:
        headers = headers.add(name, value)
    phrase = reason if reason is not None else REASON_PHRASES.get(status, "")
    response = Response(status, phrase, headers)
    return response.with_body(body, content_type)
