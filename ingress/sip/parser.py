"""Parse one SIP message from bytes (RFC 3261 §7, §18.3, §25) and answer broken ones.

Calling contract:

* ``parser = MessageParser(max_size=…, max_headers=…)``; ``parser.parse(data)`` takes one
  whole message (a UDP datagram, or one message cut out by ``framing.StreamFramer``) and
  returns a :class:`~.message.Request` or :class:`~.message.Response`.
* It raises only :class:`~.errors.SipParseError` (and its subclasses
  ``VersionNotSupported``/``MessageTooLarge``). The error's ``status_hint`` is the
  response to send (400, 505, 513) or ``None`` when the message must be dropped (it was a
  response, or a request without a Via to answer). ``error.context`` holds the salvaged
  Via/From/To/Call-ID/CSeq so :func:`error_response` can build the answer.
* Datagram rules (RFC 3261 §18.3): octets beyond Content-Length are discarded; fewer
  octets than Content-Length is a 400; without Content-Length the body runs to the end.

What the parser checks: the start line (single SP separators, version, status range,
Request-URI syntax, no ``?headers`` in a Request-URI), header-field syntax, and the
grammar of Via, From, To, Contact, Route, Record-Route, CSeq, Call-ID, Max-Forwards and
Content-Length. Presence and multiplicity rules (a missing Call-ID, two To fields, a CSeq
method mismatch) are the UAS's business: see ``validation.check_request``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from .errors import ErrorContext, MessageTooLarge, SipParseError, VersionNotSupported
from .headers import CSeq, HeaderField, Headers, NameAddr, Via, canonical_name, is_token, split_list
from .message import Request, Response, build_response
from .uri import SipUri, Uri, parse_uri

__all__ = [
    "DEFAULT_MAX_HEADERS",
    "DEFAULT_MAX_SIZE",
    "MessageParser",
    "error_response",
    "parse_message",
]

DEFAULT_MAX_SIZE: Final = 65_535
DEFAULT_MAX_HEADERS: Final = 256
_VERSION: Final = re.compile(r"SIP/([0-9]+)\.([0-9]+)\Z", re.IGNORECASE)
_STATUS: Final = re.compile(rb"SIP/", re.IGNORECASE)
_FOLD: Final = re.compile(r"\r\n[ \t]+")
_SALVAGED: Final = frozenset({"via", "from", "to", "call-id", "cseq"})
_WARNING_TEXT: Final = re.compile(r"[^ -~]|[\"\\]")


def _decode(raw: bytes) -> str:
    # Values are UTF-8 (RFC 3261 §7.3.1 TEXT-UTF8); surrogateescape keeps other octets
    # reversible instead of failing on them.
    return raw.decode("utf-8", errors="surrogateescape")


@dataclass(frozen=True, slots=True)
class MessageParser:
    """A configured parser; the limits bound memory and work on hostile input."""

    max_size: int = DEFAULT_MAX_SIZE
    max_headers: int = DEFAULT_MAX_HEADERS

    def parse(self, data: bytes) -> Request | Response:
        """Parse one whole message. Raises ``SipParseError`` (see the module docstring)."""
        is_request, lines, rest = _split(data)
        start_raw = lines[0] + b"\r\n"
        try:
            fields = self._fields(lines[1:])
        except SipParseError as exc:
            raise exc.with_context(ErrorContext(is_request=is_request)) from None
        context = _context(is_request, lines[0], fields)
        try:
            if len(data) > self.max_size:
                raise MessageTooLarge(f"message larger than {self.max_size} octets")
            headers = Headers(tuple(fields))
            _check_headers(headers)
            body = _body(headers, rest)
            start = _decode(lines[0])
            if is_request:
                method, uri, version = _request_line(start)
                if not headers.get_all("Via"):
                    raise SipParseError("request without Via", status_hint=None)
                return Request(method, uri, headers, body, version, raw_start=start_raw)
            version, status, reason = _status_line(start)
            if not headers.get_all("Via") or headers.get("CSeq") is None:
                raise SipParseError("response without Via or CSeq")
            return Response(status, reason, headers, body, version, raw_start=start_raw)
        except SipParseError as exc:
            if exc.status_hint is None and exc.context is None:
                raise exc.with_context(None) from None
            raise exc.with_context(context) from None
        except (ValueError, IndexError) as exc:  # defensive: no other error leaves the parser
            raise SipParseError("malformed message", context=context) from exc

    def salvage(self, data: bytes) -> ErrorContext | None:
        """The Via/From/To/Call-ID/CSeq of a message that could not be framed or parsed,
        for an error response (RFC 3261 §8.2.6); ``None`` if the headers are unreadable."""
        try:
            is_request, lines, _ = _split(data)
            return _context(is_request, lines[0], self._fields(lines[1:]))
        except SipParseError:
            return None

    def _fields(self, lines: list[bytes]) -> list[HeaderField]:
        """Group folded lines (RFC 3261 §7.3.1) and split ``name: value``."""
        groups: list[list[bytes]] = []
        for line in lines:
            if line[:1] in (b" ", b"\t"):
                if not groups:
                    raise SipParseError("continuation line before the first header")
                groups[-1].append(line)
            else:
                groups.append([line])
        if len(groups) > self.max_headers:
            raise MessageTooLarge(f"more than {self.max_headers} header fields")
        fields: list[HeaderField] = []
        for group in groups:
            raw = b"".join(part + b"\r\n" for part in group)
            text = _decode(raw[:-2])
            if "\r" in _FOLD.sub(" ", text) or "\n" in _FOLD.sub(" ", text):
                raise SipParseError("bare CR or LF in a header")
            name, colon, value = text.partition(":")
            name = name.rstrip(" \t")
            if not colon or not is_token(name):
                raise SipParseError("malformed header field")
            fields.append(HeaderField(name, _FOLD.sub(" ", value).strip(" \t"), raw))
        return fields


def _split(data: bytes) -> tuple[bool, list[bytes], bytes]:
    """Split into (is_request, start line + header lines without CRLF, rest)."""
    # RFC 3261 §7.5: CRLFs before the start line are ignored.
    offset = 0
    while data.startswith(b"\r\n", offset):
        offset += 2
    is_request = not _STATUS.match(data, offset)
    end = data.find(b"\r\n\r\n", offset)
    if end < 0:
        # No empty line: the whole datagram is the header section (RFC 4475 §3.1.2.15).
        head, rest = data[offset:], b""
        if not head.endswith(b"\r\n"):
            head += b"\r\n"
    else:
        head, rest = data[offset : end + 2], data[end + 4 :]
    lines = head.split(b"\r\n")[:-1]
    if not lines or not lines[0]:
        raise SipParseError("empty message", status_hint=None)
    return is_request, lines, rest


def _context(is_request: bool, start: bytes, fields: list[HeaderField]) -> ErrorContext:
    return ErrorContext(
        is_request=is_request,
        method=_decode(start).split(" ", 1)[0] if is_request else None,
        fields=tuple((f.name, f.value) for f in fields if f.canonical.lower() in _SALVAGED),
    )


def parse_message(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> Request | Response:
    """Parse with default limits; see :class:`MessageParser`."""
    return MessageParser(max_size=max_size).parse(data)


def _request_line(line: str) -> tuple[str, Uri, str]:
    # RFC 3261 §7.1: "Method SP Request-URI SP SIP-Version" with single SPs; extra SPs or LWS
    # inside the URI are rejected (RFC 4475 §3.1.2.8-10 allow this).
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError("malformed Request-Line")
    method, uri_text, version = parts
    if not is_token(method):
        raise SipParseError("malformed method")
    _check_version(version)
    uri = parse_uri(uri_text)
    # RFC 3261 §19.1.1 table: headers are not allowed in a Request-URI (RFC 4475 §3.1.2.11).
    if isinstance(uri, SipUri) and uri.headers:
        raise SipParseError("headers in Request-URI")
    return method, uri, version


def _check_version(version: str) -> None:
    found = _VERSION.match(version)
    if not found:
        raise SipParseError("malformed SIP version")
    if (int(found.group(1)), int(found.group(2))) != (2, 0):
        raise VersionNotSupported(f"SIP version {version} not supported")


def _status_line(line: str) -> tuple[str, int, str]:
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    _check_version(version)
    # RFC 3261 §25.1: Status-Code = 3DIGIT (RFC 4475 §3.1.2.19: drop 4294967301).
    if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 699:
        raise SipParseError("malformed status code")
    return version, int(code), reason


def _check_headers(headers: Headers) -> None:
    """Validate the grammar of the headers the core and the UAS rely on."""
    lengths = 0
    for f in headers:
        name = f.canonical
        value = f.value
        if name == "Via":
            for item in split_list(value):
                Via.parse(item) if item else _empty(name)
        elif name in ("From", "To"):
            NameAddr.parse(value)
        elif name in ("Contact", "Route", "Record-Route"):
            if name == "Contact" and value == "*":
                continue
            for item in split_list(value):
                NameAddr.parse(item) if item else _empty(name)
        elif name == "CSeq":
            CSeq.parse(value)
        elif name == "Call-ID":
            if not value or any(c in value for c in " \t"):
                raise SipParseError("malformed Call-ID")
        elif name == "Max-Forwards":
            if not value.isdigit() or len(value) > 5 or int(value) > 255:
                raise SipParseError("malformed Max-Forwards")
        elif name == "Content-Length":
            lengths += 1
            # RFC 4475 §3.1.2.3 / §3.3.9: negative, non-numeric and repeated values are errors.
            if not value.isdigit() or len(value) > 10 or lengths > 1:
                raise SipParseError("malformed or repeated Content-Length")


def _empty(name: str) -> None:
    raise SipParseError(f"empty element in {name}")


def _body(headers: Headers, rest: bytes) -> bytes:
    value = headers.get("Content-Length")
    if value is None:
        return rest
    length = int(value)
    if length > len(rest):
        # RFC 3261 §18.3: a datagram shorter than Content-Length is rejected with 400.
        raise SipParseError("Content-Length larger than the message")
    return rest[:length]


def error_response(
    error: SipParseError, *, to_tag: str, agent: str = "telepath"
) -> Response | None:
    """The response for a request that failed to parse, or ``None`` to drop it silently.

    Builds ``status_hint`` per RFC 3261 §8.2.6 from the salvaged headers, with a
    ``Warning: 399 <agent> "<reason>"`` (RFC 3261 §20.43) naming what was wrong. Nothing
    from the peer is echoed into the warning text.
    """
    context = error.context
    if error.status_hint is None or context is None or not context.is_request:
        return None
    fields = [HeaderField(name, value) for name, value in context.fields]
    try:
        vias = [i for f in fields if canonical_name(f.name) == "Via" for i in split_list(f.value)]
        # Responses are routed by Via (RFC 3261 §18.2.2): without a readable sent-by in the
        # top one, drop. Broken parameters are tolerated (RFC 4475 §3.1.2.1 expects a 400).
        if not vias:
            return None
        Via.parse(vias[0].split(";", 1)[0])
    except SipParseError:
        return None
    if context.method == "ACK":
        # RFC 3261 §17.2.1/§8.2: an ACK is never answered.
        return None
    warning = _WARNING_TEXT.sub("", error.reason)[:100]
    return build_response(
        fields, error.status_hint, to_tag=to_tag, extra=[("Warning", f'399 {agent} "{warning}"')]
    )
