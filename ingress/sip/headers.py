"""Header fields and their typed values (RFC 3261 §7.3, §20, §25.1).

A :class:`Headers` is an immutable, ordered tuple of :class:`HeaderField` (name, value, and
the raw bytes the field arrived as, so an unmodified message serialises byte for byte).
Names match case-insensitively and through their compact forms (``v`` = ``Via``).
Typed values (:class:`Via`, :class:`NameAddr`, :class:`CSeq`) are parsed on demand with
``Via.parse(text)`` etc.; each accepts the LWS the grammar allows around ``/ ; = :`` and
raises ``SipParseError`` (400) on anything else.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Final

from .errors import LocalProtocolError, SipParseError
from .uri import SipUri, Uri, parse_uri

__all__ = [
    "COMPACT_FORMS",
    "CSeq",
    "HeaderField",
    "Headers",
    "LIST_HEADERS",
    "NameAddr",
    "Params",
    "Via",
    "canonical_name",
    "parse_params",
    "quote",
    "split_list",
]

#: RFC 3261 §7.3.3 and the IANA registry: compact form -> full name.
COMPACT_FORMS: Final[dict[str, str]] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}
_CANONICAL: Final[dict[str, str]] = {
    name.lower(): name
    for name in (
        *COMPACT_FORMS.values(),
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Authorization",
        "Call-Info",
        "CSeq",
        "Date",
        "Error-Info",
        "Expires",
        "In-Reply-To",
        "Max-Forwards",
        "Min-Expires",
        "MIME-Version",
        "Organization",
        "Priority",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "Reason",
        "Record-Route",
        "Reply-To",
        "Require",
        "Retry-After",
        "Route",
        "Server",
        "Timestamp",
        "Unsupported",
        "User-Agent",
        "Warning",
        "WWW-Authenticate",
    )
}
#: Headers whose values are comma-separated lists (RFC 3261 §7.3.1: "#(…)" in §25.1).
LIST_HEADERS: Final[frozenset[str]] = frozenset(
    {
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Call-Info",
        "Contact",
        "Content-Encoding",
        "Error-Info",
        "In-Reply-To",
        "Proxy-Require",
        "Reason",
        "Record-Route",
        "Require",
        "Route",
        "Supported",
        "Unsupported",
        "Via",
        "Warning",
    }
)
_TOKEN: Final = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_TOKEN_FULL: Final = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
# gen-value = token / host / quoted-string; host may be an IPv6 reference.
_GEN_VALUE: Final = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.!%*_+`'~:]+")
_LWS: Final = " \t\r\n"


def canonical_name(name: str) -> str:
    """The full, conventionally-cased name for ``name`` (compact forms expanded)."""
    lower = name.lower()
    if lower in COMPACT_FORMS:
        return COMPACT_FORMS[lower]
    return _CANONICAL.get(lower, name)


def quote(text: str) -> str:
    """``text`` as a quoted-string (RFC 3261 §25.1), escaping ``"`` and ``\\``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def split_list(value: str) -> list[str]:
    """Split a header value on commas outside quoted strings and ``<…>`` (RFC 3261 §7.3.1).

    Items are stripped; empty items are kept (as ``""``) so callers can reject them.
    Raises ``SipParseError`` for an unterminated quoted string.
    """
    items: list[str] = []
    start, i, angle, n = 0, 0, False, len(value)
    while i < n:
        ch = value[i]
        if ch == '"' and not angle:
            i = _skip_quoted(value, i)
            continue
        if ch == "<":
            angle = True
        elif ch == ">":
            angle = False
        elif ch == "," and not angle:
            items.append(value[start:i].strip(_LWS))
            start = i + 1
        i += 1
    items.append(value[start:].strip(_LWS))
    return items


def _skip_quoted(text: str, i: int) -> int:
    """Index just past the quoted-string starting at ``text[i] == '"'``."""
    i += 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i + 1
        i += 1
    raise SipParseError("unterminated quoted string")


class _Scanner:
    """A cursor over one header value, skipping the LWS the SIP grammar permits."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_lws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _LWS:
            self.pos += 1

    def at_end(self) -> bool:
        self.skip_lws()
        return self.pos >= len(self.text)

    def peek(self) -> str:
        self.skip_lws()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise SipParseError(f"expected {char!r}")
        self.pos += 1

    def match(self, pattern: re.Pattern[str], what: str) -> str:
        self.skip_lws()
        found = pattern.match(self.text, self.pos)
        if not found:
            raise SipParseError(f"expected {what}")
        self.pos = found.end()
        return found.group(0)

    def quoted(self) -> str:
        """Read a quoted-string and return its unescaped content."""
        self.skip_lws()
        end = _skip_quoted(self.text, self.pos)
        inner = self.text[self.pos + 1 : end - 1]
        self.pos = end
        return re.sub(r"\\(.)", r"\1", inner, flags=re.DOTALL)


Params = tuple[tuple[str, str | None], ...]


def _read_params(scan: _Scanner) -> Params:
    """``*( SEMI generic-param )`` to the end of the scanner (RFC 3261 §25.1)."""
    params: list[tuple[str, str | None]] = []
    while not scan.at_end():
        scan.expect(";")
        name = scan.match(_TOKEN, "parameter name")
        if scan.peek() != "=":
            params.append((name, None))
            continue
        scan.expect("=")
        if scan.peek() == '"':
            start = scan.pos
            scan.quoted()
            params.append((name, scan.text[start : scan.pos]))
        else:
            params.append((name, scan.match(_GEN_VALUE, "parameter value")))
    return tuple(params)


def parse_params(text: str) -> Params:
    """Parse ``;name=value;flag`` (quoted values keep their quotes)."""
    return _read_params(_Scanner(text))


def _param(params: Params, name: str) -> str | None:
    lname = name.lower()
    for key, value in params:
        if key.lower() == lname:
            return "" if value is None else value
    return None


def _params_text(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def _set_param(params: Params, name: str, value: str | None) -> Params:
    kept = tuple((k, v) for k, v in params if k.lower() != name.lower())
    return (*kept, (name, value))


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value (RFC 3261 §20.42): ``SIP/2.0/UDP host:port;branch=…``."""

    transport: str
    host: str
    port: int | None = None
    params: Params = field(default=())
    protocol: str = "SIP/2.0"

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse one Via value (not a comma list). Raises ``SipParseError`` (400)."""
        scan = _Scanner(text)
        name = scan.match(_TOKEN, "protocol name")
        scan.expect("/")
        version = scan.match(_TOKEN, "protocol version")
        scan.expect("/")
        transport = scan.match(_TOKEN, "transport")
        scan.skip_lws()
        host_text = scan.match(re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-_.]+"), "sent-by")
        port: int | None = None
        if scan.peek() == ":":
            scan.expect(":")
            digits = scan.match(re.compile(r"[0-9]{1,5}"), "port")
            port = int(digits)
            if port > 65535:
                raise SipParseError("Via port out of range")
        params = _read_params(scan)
        return cls(transport.upper(), host_text, port, params, f"{name}/{version}")

    @property
    def branch(self) -> str | None:
        """The branch parameter, or ``None``."""
        return _param(self.params, "branch")

    @property
    def sent_by(self) -> str:
        """``host[:port]`` as used in transaction matching (RFC 3261 §17.2.3)."""
        return self.host.lower() if self.port is None else f"{self.host.lower()}:{self.port}"

    def param(self, name: str) -> str | None:
        """A Via parameter's value (``""`` for a flag), or ``None``."""
        return _param(self.params, name)

    def with_param(self, name: str, value: str | None) -> Via:
        """A copy with parameter ``name`` set (RFC 3581 ``received``/``rport``)."""
        return replace(self, params=_set_param(self.params, name, value))

    def __str__(self) -> str:
        host = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"{self.protocol}/{self.transport} {host}{_params_text(self.params)}"


@dataclass(frozen=True, slots=True)
class NameAddr:
    """A From/To/Contact/Route value: ``"Name" <uri>;tag=x`` (RFC 3261 §20.10, §25.1).

    ``display_name`` is unquoted (``None`` when absent); ``params`` are the header
    parameters *outside* the URI (``tag``, ``expires``, ``q``), never URI parameters.
    """

    uri: Uri
    display_name: str | None = None
    params: Params = field(default=())

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        """Parse a name-addr or addr-spec with parameters. Raises ``SipParseError`` (400)."""
        scan = _Scanner(text)
        display: str | None = None
        first = scan.peek()
        if first == '"':
            display = scan.quoted()
            if scan.peek() != "<":
                raise SipParseError("quoted display name without <URI>")
        elif first != "<":
            # display-name = *(token LWS); RFC 4475 §3.1.1.6 allows no LWS before '<'.
            # If the tokens are not followed by '<' this is an addr-spec: start over.
            start = scan.pos
            while _TOKEN.match(scan.text, scan.pos):
                scan.match(_TOKEN, "display name token")
                scan.skip_lws()
            if scan.peek() == "<":
                display = " ".join(text[start : scan.pos].split())
            else:
                scan.pos = start
        if scan.peek() == "<":
            scan.expect("<")
            end = text.find(">", scan.pos)
            if end < 0:
                raise SipParseError("unterminated <URI>")
            uri = parse_uri(text[scan.pos : end])
            scan.pos = end + 1
        else:
            # RFC 3261 §20.10: without <>, ';' starts header parameters and the URI may not
            # contain ',' or '?'.
            start = scan.pos
            while scan.pos < len(text) and text[scan.pos] not in ";" + _LWS:
                scan.pos += 1
            uri_text = text[start : scan.pos]
            if "?" in uri_text or "," in uri_text:
                raise SipParseError("URI with '?' or ',' must be enclosed in <>")
            uri = parse_uri(uri_text)
        return cls(uri, display, _read_params(scan))

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (RFC 3261 §19.3), or ``None``."""
        return _param(self.params, "tag")

    def param(self, name: str) -> str | None:
        """A header parameter's value (``""`` for a flag), or ``None``."""
        return _param(self.params, name)

    def with_param(self, name: str, value: str | None) -> NameAddr:
        """A copy with header parameter ``name`` set."""
        return replace(self, params=_set_param(self.params, name, value))

    def __str__(self) -> str:
        text = f"<{self.uri}>"
        if self.display_name is not None:
            text = f"{quote(self.display_name)} {text}"
        return text + _params_text(self.params)

    @property
    def sip_uri(self) -> SipUri | None:
        """The URI if it is a SIP/SIPS URI."""
        return self.uri if isinstance(self.uri, SipUri) else None


_MAX_CSEQ: Final = 2**32 - 1


@dataclass(frozen=True, slots=True)
class CSeq:
    """``CSeq: 4711 INVITE`` (RFC 3261 §20.16); ``seq`` fits 32 unsigned bits."""

    seq: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        """Parse a CSeq value. Raises ``SipParseError`` (400), e.g. for seq > 2**32-1."""
        scan = _Scanner(text)
        digits = scan.match(re.compile(r"[0-9]+"), "CSeq number")
        method = scan.match(_TOKEN, "CSeq method")
        if not scan.at_end():
            raise SipParseError("trailing text in CSeq")
        # RFC 3261 §8.1.1.5: "MUST be expressible as a 32-bit unsigned integer".
        if len(digits) > 10 or int(digits) > _MAX_CSEQ:
            raise SipParseError("CSeq number out of range")
        return cls(int(digits), method)

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def is_token(text: str) -> bool:
    """Whether ``text`` is an RFC 3261 token."""
    return bool(_TOKEN_FULL.match(text))


@dataclass(frozen=True, slots=True)
class HeaderField:
    """One header field: the name as written, the unfolded value, and the raw line(s).

    ``raw`` is compared by nobody: two fields are equal when name and value are.
    """

    name: str
    value: str
    raw: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def canonical(self) -> str:
        """The canonical name (compact forms expanded)."""
        return canonical_name(self.name)

    def to_bytes(self) -> bytes:
        """The wire form including the trailing CRLF (the raw bytes when unmodified)."""
        if self.raw is not None:
            return self.raw
        if not is_token(self.name) or "\r" in self.value or "\n" in self.value:
            # A CR/LF in a value we were given would let it forge header lines.
            raise LocalProtocolError(f"refusing to serialise header {self.name[:40]!r}")
        return f"{self.name}: {self.value}\r\n".encode("utf-8", errors="surrogateescape")


@dataclass(frozen=True, slots=True)
class Headers:
    """An ordered, immutable collection of header fields with case-insensitive lookup."""

    fields: tuple[HeaderField, ...] = field(default=())

    @classmethod
    def of(cls, *pairs: tuple[str, str]) -> Headers:
        """Build from ``(name, value)`` pairs."""
        return cls(tuple(HeaderField(n, v) for n, v in pairs))

    def __iter__(self) -> Iterator[HeaderField]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def fields_named(self, name: str) -> list[HeaderField]:
        """Every field called ``name`` (compact forms included), in order."""
        want = canonical_name(name).lower()
        return [f for f in self.fields if f.canonical.lower() == want]

    def get(self, name: str) -> str | None:
        """The first value of ``name`` (the whole field, not split), or ``None``."""
        found = self.fields_named(name)
        return found[0].value if found else None

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``; list headers (``LIST_HEADERS``) are split on commas."""
        values: list[str] = []
        is_list = canonical_name(name) in LIST_HEADERS
        for f in self.fields_named(name):
            values.extend(split_list(f.value) if is_list else [f.value])
        return values

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.fields_named(name))

    def replace(self, name: str, value: str) -> Headers:
        """Set ``name`` to ``value``: the first field is replaced in place, others removed;
        appended when absent."""
        want = canonical_name(name).lower()
        out: list[HeaderField] = []
        done = False
        for f in self.fields:
            if f.canonical.lower() != want:
                out.append(f)
            elif not done:
                out.append(HeaderField(canonical_name(name), value))
                done = True
        if not done:
            out.append(HeaderField(canonical_name(name), value))
        return Headers(tuple(out))

    def add(self, name: str, value: str, *, first: bool = False) -> Headers:
        """Append (or, with ``first``, prepend) a field."""
        new = HeaderField(name, value)
        return Headers((new, *self.fields) if first else (*self.fields, new))

    def remove(self, name: str) -> Headers:
        """Drop every field called ``name``."""
        want = canonical_name(name).lower()
        return Headers(tuple(f for f in self.fields if f.canonical.lower() != want))
