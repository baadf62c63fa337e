"""SIP and other URIs (RFC 3261 §19.1, §25.1).

``parse_uri(text)`` returns a :class:`SipUri` for ``sip:``/``sips:`` and an
:class:`AbsoluteUri` (opaque text) for every other scheme, so that a Request-URI with an
unknown scheme parses and the UAS can answer 416 (RFC 4475 §3.3.2). ``str(uri)`` gives the
wire form back; ``parse_uri(str(u)) == u`` for any URI built here. Escapes (``%41``) are
kept as written; :func:`unescape` decodes them where the application needs the value.

Raises ``SipParseError`` (status 400) on malformed text; nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Final

from .errors import SipParseError

__all__ = ["AbsoluteUri", "SipUri", "Uri", "parse_uri", "unescape"]

_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*\Z")
# RFC 3261 §25.1: user = 1*( unreserved / escaped / user-unreserved )
_USER: Final = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+\Z")
_PASSWORD: Final = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,]|%[0-9A-Fa-f]{2})*\Z")
_HOSTNAME: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-_.]*[A-Za-z0-9.])?\Z")
_IPV6: Final = re.compile(r"\[[0-9A-Fa-f:.]+\]\Z")
# paramchar = param-unreserved / unreserved / escaped
_PARAM: Final = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()\[\]/:&+$]|%[0-9A-Fa-f]{2})+\Z")
_HNAME: Final = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()\[\]/?:+$]|%[0-9A-Fa-f]{2})+\Z")
_HVALUE: Final = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()\[\]/?:+$]|%[0-9A-Fa-f]{2})*\Z")
_OPAQUE: Final = re.compile(r"[\x21-\x7e]+\Z")
_ESCAPE: Final = re.compile(rb"%([0-9A-Fa-f]{2})")


def unescape(text: str) -> str:
    """Decode ``%HH`` escapes (RFC 3261 §19.1.2); invalid UTF-8 is replaced, not raised."""
    raw = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), text.encode("utf-8"))
    return raw.decode("utf-8", errors="replace")


def _bad(what: str) -> SipParseError:
    return SipParseError(f"malformed URI: {what}")


@dataclass(frozen=True, slots=True)
class SipUri:
    """A ``sip:``/``sips:`` URI (RFC 3261 §19.1.1).

    ``params`` and ``headers`` keep their order and their escapes; a parameter without a
    value (``;lr``) has value ``None``. ``host`` is compared case-insensitively by
    :meth:`same_host` but kept as written.
    """

    scheme: str
    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: tuple[tuple[str, str | None], ...] = field(default=())
    headers: tuple[tuple[str, str], ...] = field(default=())

    def param(self, name: str) -> str | None:
        """The value of URI parameter ``name`` (case-insensitive), ``""`` if valueless."""
        lname = name.lower()
        for key, value in self.params:
            if key.lower() == lname:
                return "" if value is None else value
        return None

    @property
    def host_port(self) -> str:
        """``host[:port]`` as written."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def with_params(self, **params: str | None) -> SipUri:
        """A copy with ``params`` set (replacing same-named ones, in place)."""
        out = [(k, v) for k, v in self.params if k.lower() not in {p.lower() for p in params}]
        out.extend(params.items())
        return replace(self, params=tuple(out))

    def __str__(self) -> str:
        text = f"{self.scheme}:"
        if self.user is not None:
            text += self.user
            if self.password is not None:
                text += f":{self.password}"
            text += "@"
        text += self.host_port
        for key, value in self.params:
            text += f";{key}" if value is None else f";{key}={value}"
        if self.headers:
            text += "?" + "&".join(f"{k}={v}" for k, v in self.headers)
        return text


@dataclass(frozen=True, slots=True)
class AbsoluteUri:
    """Any other URI (``tel:``, ``http:``, ``isbn:`` …), kept as opaque text (RFC 3986)."""

    scheme: str
    opaque: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"


Uri = SipUri | AbsoluteUri


def _parse_host(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise _bad("unterminated IPv6 reference")
        host, rest = text[: end + 1], text[end + 1 :]
        if not _IPV6.match(host):
            raise _bad("bad IPv6 reference")
    else:
        host, sep, port_text = text.partition(":")
        rest = f":{port_text}" if sep else ""
        if not _HOSTNAME.match(host):
            raise _bad("bad host")
    if not rest:
        return host, None
    if not rest.startswith(":") or not rest[1:].isdigit() or len(rest) > 6:
        raise _bad("bad port")
    port = int(rest[1:])
    if port > 65535:
        raise _bad("port out of range")
    return host, port


def _parse_sip(scheme: str, rest: str) -> SipUri:
    user: str | None = None
    password: str | None = None
    # '@' is not allowed unescaped after the userinfo (RFC 3261 §25.1), so the first one ends it.
    if "@" in rest:
        userinfo, rest = rest.split("@", 1)
        user, sep, pw = userinfo.partition(":")
        if not _USER.match(user):
            raise _bad("bad user part")
        if sep:
            if not _PASSWORD.match(pw):
                raise _bad("bad password")
            password = pw
    rest, qmark, header_text = rest.partition("?")
    hostport, *param_texts = rest.split(";")
    host, port = _parse_host(hostport)
    params: list[tuple[str, str | None]] = []
    for item in param_texts:
        key, eq, value = item.partition("=")
        if not _PARAM.match(key) or (eq and not _PARAM.match(value)):
            raise _bad("bad uri-parameter")
        params.append((key, value if eq else None))
    headers: list[tuple[str, str]] = []
    if qmark:
        for item in header_text.split("&"):
            key, eq, value = item.partition("=")
            if not eq or not _HNAME.match(key) or not _HVALUE.match(value):
                raise _bad("bad header in URI")
            headers.append((key, value))
    return SipUri(scheme, host, user, password, port, tuple(params), tuple(headers))


def parse_uri(text: str) -> Uri:
    """Parse ``text`` (no surrounding whitespace or angle brackets) into a URI.

    Raises:
        SipParseError: status 400, for anything that is not a well-formed URI.
    """
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME.match(scheme) or not rest:
        raise _bad("no scheme")
    if scheme.lower() in ("sip", "sips"):
        return _parse_sip(scheme, rest)
    if not _OPAQUE.match(rest) or any(c in rest for c in '<>"'):
        raise _bad("bad characters")
    return AbsoluteUri(scheme, rest)
