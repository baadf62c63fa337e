"""SDP session descriptions (RFC 4566): a bounded, forgiving parser and a serialiser.

Only the syntax lives here; choosing codecs and directions is ``offer_answer.py``.

The parser is lenient where carriers are sloppy (LF instead of CRLF, trailing blanks,
unknown line types and attributes, which are kept so a round trip loses nothing) and
strict where a wrong guess would misroute media (no ``v=0``, no ``o=``, an ``m=`` line
that does not parse, no connection address for an audio stream). Sizes are bounded by
the constructor arguments of :class:`SdpLimits`.

Errors (one tree for SDP and offer/answer)::

    SdpError                    status_hint: the SIP response to send
     ├── MalformedSdp           400 – the body is not valid SDP
     └── offer_answer.IncompatibleMedia
                                488 + Warning 305 – valid SDP, nothing we can use
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

__all__ = [
    "is_number",
    "Attribute",
    "Connection",
    "MalformedSdp",
    "MediaSection",
    "Origin",
    "RtpMap",
    "SdpError",
    "SdpLimits",
    "SessionDescription",
    "parse_sdp",
]


def is_number(text: str, max_digits: int = 9) -> bool:
    """ASCII decimal digits only, at most ``max_digits`` of them: ``str.isdigit`` also
    accepts "¹" and "٣", and ``int()`` refuses strings of more than 4300 digits."""
    return text.isascii() and text.isdigit() and len(text) <= max_digits


class SdpError(Exception):
    """Base of the SDP / offer-answer errors; ``status_hint`` is the SIP status to answer."""

    status_hint: int = 400

    def __init__(self, message: str, *, status_hint: int | None = None) -> None:
        super().__init__(message)
        if status_hint is not None:
            self.status_hint = status_hint


class MalformedSdp(SdpError):
    """The body is not a usable SDP session description (answer 400 Bad Request)."""

    status_hint = 400


@dataclass(frozen=True, slots=True)
class SdpLimits:
    """Bounds on hostile input: total size, number of lines and of media sections."""

    max_bytes: int = 16 * 1024
    max_lines: int = 512
    max_media: int = 16
    max_formats: int = 64


@dataclass(frozen=True, slots=True)
class Attribute:
    """``a=name`` (a property, ``value is None``) or ``a=name:value``."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"

    @classmethod
    def parse(cls, text: str) -> Attribute:
        name, sep, value = text.partition(":")
        return cls(name.strip(), value.strip() if sep else None)


@dataclass(frozen=True, slots=True)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>``."""

    username: str
    session_id: int
    session_version: int
    address: str
    nettype: str = "IN"
    addrtype: str = "IP4"

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """``c=<nettype> <addrtype> <connection-address>`` (TTL/count suffixes kept verbatim)."""

    address: str
    nettype: str = "IN"
    addrtype: str = "IP4"

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"

    @property
    def host(self) -> str:
        """The address without a multicast ``/ttl`` or ``/count`` suffix."""
        return self.address.split("/", 1)[0]

    @property
    def is_hold_address(self) -> bool:
        """RFC 3264 §8.4: the RFC 2543 way to put a stream on hold was ``c=IN IP4 0.0.0.0``."""
        return self.host in ("0.0.0.0", "::")


@dataclass(frozen=True, slots=True)
class RtpMap:
    """``a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]`` (RFC 4566 §6)."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int = 1

    def __str__(self) -> str:
        suffix = f"/{self.channels}" if self.channels != 1 else ""
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{suffix}"


@dataclass(frozen=True, slots=True)
class MediaSection:
    """One ``m=`` section and the lines that follow it."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    connection: Connection | None = None
    attributes: tuple[Attribute, ...] = ()
    other: tuple[tuple[str, str], ...] = ()  # i=, b=, k= lines, kept in order

    def attribute(self, name: str) -> str | None:
        """The value of the first ``a=name:value`` (``""`` for a bare ``a=name``)."""
        for attr in self.attributes:
            if attr.name.lower() == name.lower():
                return "" if attr.value is None else attr.value
        return None

    def has(self, name: str) -> bool:
        """Whether a property or value attribute called ``name`` is present."""
        return self.attribute(name) is not None

    def rtpmaps(self) -> dict[int, RtpMap]:
        """Every parsable ``a=rtpmap`` by payload type; malformed ones are ignored."""
        maps: dict[int, RtpMap] = {}
        for attr in self.attributes:
            if attr.name.lower() != "rtpmap" or attr.value is None:
                continue
            parsed = _parse_rtpmap(attr.value)
            if parsed is not None and parsed.payload_type not in maps:
                maps[parsed.payload_type] = parsed
        return maps

    def fmtp(self, payload_type: int) -> str | None:
        """The parameters of ``a=fmtp:<payload_type> …``, if any."""
        for attr in self.attributes:
            if attr.name.lower() != "fmtp" or attr.value is None:
                continue
            pt, _, params = attr.value.partition(" ")
            if pt.strip() == str(payload_type):
                return params.strip()
        return None

    def int_attribute(self, name: str) -> int | None:
        """A numeric attribute such as ``ptime``/``maxptime``; ``None`` if absent or bad."""
        value = self.attribute(name)
        if value is None:
            return None
        value = value.strip()
        # RFC 4566 §6 allows decimal ptime ("a=ptime:20.0" seen in the wild): truncate.
        whole = value.split(".", 1)[0]
        if not is_number(whole) or len(whole) > 6:
            return None
        return int(whole)

    def lines(self) -> list[str]:
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        out = [f"m={self.media} {port} {self.proto} {' '.join(self.formats)}".rstrip()]
        out.extend(f"{k}={v}" for k, v in self.other if k == "i")
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out.extend(f"{k}={v}" for k, v in self.other if k != "i")  # b=, k=, unknown
        out.extend(f"a={a}" for a in self.attributes)
        return out


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A whole SDP body. ``str(sdp)``/``bytes(sdp)`` serialise with CRLF line ends."""

    origin: Origin
    session_name: str = "-"
    connection: Connection | None = None
    timing: tuple[str, ...] = ("0 0",)
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaSection, ...] = ()
    other: tuple[tuple[str, str], ...] = field(default=())  # i u e p b z k r, in order

    def __str__(self) -> str:
        lines = ["v=0", f"o={self.origin}", f"s={self.session_name}"]
        lines.extend(f"{k}={v}" for k, v in self.other if k in "iuep")
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines.extend(f"{k}={v}" for k, v in self.other if k == "b")
        for t in self.timing:
            lines.append(f"t={t}")
        lines.extend(f"{k}={v}" for k, v in self.other if k in "rzk")
        # Unknown line types are kept but go last (RFC 4566 §5: parsers ignore them).
        lines.extend(f"{k}={v}" for k, v in self.other if k not in _SESSION_ORDER)
        lines.extend(f"a={a}" for a in self.attributes)
        for section in self.media:
            lines.extend(section.lines())
        return "\r\n".join(lines) + "\r\n"

    def __bytes__(self) -> bytes:
        return str(self).encode("utf-8")

    def with_version(self, version: int) -> SessionDescription:
        return replace(self, origin=replace(self.origin, session_version=version))

    def connection_for(self, section: MediaSection) -> Connection | None:
        """RFC 4566 §5.7: a media-level ``c=`` overrides the session-level one."""
        return section.connection if section.connection is not None else self.connection


_SESSION_ORDER = "iuepbrzk"  # the optional session-level lines, RFC 4566 §5 order
_MEDIA_ORDER = "ibk"


def _parse_rtpmap(value: str) -> RtpMap | None:
    pt_text, _, spec = value.strip().partition(" ")
    parts = spec.strip().split("/")
    if not is_number(pt_text) or len(parts) < 2 or not is_number(parts[1].strip()):
        return None
    pt = int(pt_text)
    if pt > 127:
        return None
    channels = 1
    if len(parts) > 2:
        if not is_number(parts[2].strip()):
            return None
        channels = int(parts[2])
    rate = int(parts[1])
    if not 0 < rate <= 1_000_000 or len(parts[1].strip()) > 7:
        return None
    return RtpMap(pt, parts[0].strip(), rate, channels)


def _parse_connection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise MalformedSdp(f"bad c= line: {value!r}")
    return Connection(parts[2], parts[0], parts[1])


def _parse_origin(value: str) -> Origin:
    parts = value.split()
    if len(parts) != 6 or not is_number(parts[1], 20) or not is_number(parts[2], 20):
        raise MalformedSdp(f"bad o= line: {value!r}")
    if len(parts[1]) > 20 or len(parts[2]) > 20:
        raise MalformedSdp("o= session id or version too long")
    return Origin(parts[0], int(parts[1]), int(parts[2]), parts[5], parts[3], parts[4])


def _parse_media_line(value: str, limits: SdpLimits) -> MediaSection:
    parts = value.split()
    if len(parts) < 3:
        raise MalformedSdp(f"bad m= line: {value!r}")
    port_text, slash, count_text = parts[1].partition("/")
    if not is_number(port_text) or len(port_text) > 5 or int(port_text) > 65535:
        raise MalformedSdp(f"bad m= port: {parts[1]!r}")
    count: int | None = None
    if slash:
        if not is_number(count_text) or len(count_text) > 5:
            raise MalformedSdp(f"bad m= port count: {parts[1]!r}")
        count = int(count_text)
    formats = tuple(parts[3:])
    if len(formats) > limits.max_formats:
        raise MalformedSdp("too many formats on one m= line")
    return MediaSection(parts[0], int(port_text), parts[2], formats, count)


def parse_sdp(body: bytes | str, limits: SdpLimits | None = None) -> SessionDescription:
    """Parse an SDP body; raises :class:`MalformedSdp` on anything unusable.

    Unknown line types and attributes are kept (and so re-serialised) but never
    interpreted; lines that are not ``<letter>=<text>`` are skipped, as RFC 4566 §5 asks
    of parsers that meet an unknown type.
    """
    limits = limits or SdpLimits()
    if len(body) > limits.max_bytes:
        raise MalformedSdp(f"SDP body larger than {limits.max_bytes} bytes")
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            # RFC 4566 §5: the charset is UTF-8 unless a=charset says otherwise; accept
            # Latin-1 rather than drop a call over a session name.
            text = body.decode("latin-1")
    else:
        text = body
    raw_lines = [
        line.strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    ]
    lines = [line for line in raw_lines if line]
    if len(lines) > limits.max_lines:
        raise MalformedSdp(f"SDP has more than {limits.max_lines} lines")
    if not lines or lines[0].replace(" ", "") != "v=0":
        raise MalformedSdp("SDP must start with v=0")

    origin: Origin | None = None
    session_name = "-"
    session_conn: Connection | None = None
    timing: list[str] = []
    session_attrs: list[Attribute] = []
    session_other: list[tuple[str, str]] = []
    sections: list[MediaSection] = []
    # The media section being built: its m= line and the lines seen after it.
    current: MediaSection | None = None
    cur_conn: Connection | None = None
    cur_attrs: list[Attribute] = []
    cur_other: list[tuple[str, str]] = []

    def flush() -> None:
        if current is not None:
            sections.append(
                replace(
                    current,
                    connection=cur_conn,
                    attributes=tuple(cur_attrs),
                    other=tuple(sorted(cur_other, key=lambda kv: _MEDIA_ORDER.find(kv[0]))),
                )
            )

    for line in lines[1:]:
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            continue
        kind, value = line[0], line[2:].strip()
        if kind == "m":
            flush()
            if len(sections) >= limits.max_media:
                raise MalformedSdp(f"SDP has more than {limits.max_media} media sections")
            current = _parse_media_line(value, limits)
            cur_conn, cur_attrs, cur_other = None, [], []
        elif current is not None:
            if kind == "c":
                cur_conn = _parse_connection(value)
            elif kind == "a":
                cur_attrs.append(Attribute.parse(value))
            else:
                cur_other.append((kind, value))
        elif kind == "o":
            origin = _parse_origin(value)
        elif kind == "s":
            session_name = value or "-"
        elif kind == "c":
            session_conn = _parse_connection(value)
        elif kind == "t":
            timing.append(value)
        elif kind == "a":
            session_attrs.append(Attribute.parse(value))
        elif kind != "v":
            session_other.append((kind, value))
    flush()
    if origin is None:
        raise MalformedSdp("SDP has no o= line")
    return SessionDescription(
        origin=origin,
        session_name=session_name,
        connection=session_conn,
        timing=tuple(timing) or ("0 0",),
        attributes=tuple(session_attrs),
        media=tuple(sections),
        # Stable-sorted into the RFC 4566 §5 order the serialiser writes them in.
        other=tuple(sorted(session_other, key=lambda kv: _SESSION_ORDER.find(kv[0]))),
    )


def attributes(items: Iterable[str | tuple[str, str]]) -> tuple[Attribute, ...]:
    """Build attributes from ``"sendrecv"`` / ``("ptime", "20")`` shorthands."""
    out: list[Attribute] = []
    for item in items:
        if isinstance(item, str):
            out.append(Attribute(item))
        else:
            out.append(Attribute(item[0], item[1]))
    return tuple(out)
