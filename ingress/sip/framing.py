"""Cut SIP messages out of a byte stream (TCP/TLS; RFC 3261 §7.5, §18.3; RFC 5626 §3.5.1).

Calling contract (h11 style, no I/O):

* ``framer.receive_data(data)`` whenever bytes arrive (``b""`` is ignored; EOF is the
  caller's business: a partial message at EOF is simply discarded).
* Then call ``framer.next_event()`` until it returns ``NEED_DATA``. Each call returns
  :class:`MessageFramed` (one whole message, ready for ``MessageParser.parse``),
  :class:`PingReceived` (a CRLFCRLF keep-alive ping), or :class:`PongReceived` (a lone
  CRLF: a pong, or an RFC 3261 §7.5 keep-alive to ignore).
* After a ping, ``framer.data_to_send()`` returns the CRLF pong to write back
  (RFC 5626 §3.5.1: "the server … MUST respond with a single CRLF").
* ``next_event()`` raises :class:`~.errors.FramingError` when framing is lost: no
  Content-Length (mandatory on streams, §18.3), a negative, non-numeric or repeated one, or a
  message above ``max_message_size`` (status 513). The connection must then be closed; the
  error's ``head`` holds the header block when it was complete, so a 400 can be attempted
  first. Every later call raises the same error.

Memory is bounded by ``max_message_size``: the buffer never holds more than one message
plus what arrived with it in the same ``receive_data`` call.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final, Literal, NoReturn

from .errors import FramingError
from .headers import canonical_name

__all__ = [
    "NEED_DATA",
    "FramerEvent",
    "MessageFramed",
    "NeedData",
    "PingReceived",
    "PongReceived",
    "StreamFramer",
]


class NeedData(enum.Enum):
    """Sentinel type: more bytes are needed before the next event."""

    NEED_DATA = enum.auto()


NEED_DATA: Final = NeedData.NEED_DATA
_FOLD: Final = re.compile(rb"\r\n[ \t]+")


@dataclass(frozen=True, slots=True)
class MessageFramed:
    """One whole message: the header block and exactly Content-Length body octets."""

    data: bytes


@dataclass(frozen=True, slots=True)
class PingReceived:
    """A CRLFCRLF keep-alive ping arrived; a CRLF pong is waiting in ``data_to_send()``."""


@dataclass(frozen=True, slots=True)
class PongReceived:
    """A lone CRLF arrived between messages (a pong, or a keep-alive to ignore)."""


FramerEvent = MessageFramed | PingReceived | PongReceived


class StreamFramer:
    """Sans-I/O framer for one stream connection."""

    def __init__(self, *, max_message_size: int = 65_535) -> None:
        self._max = max_message_size
        self._buffer = bytearray()
        self._scan_from = 0
        self._outgoing = bytearray()
        self._error: FramingError | None = None

    def receive_data(self, data: bytes) -> None:
        """Append received bytes. Afterwards call ``next_event()`` until ``NEED_DATA``."""
        self._buffer += data

    def data_to_send(self) -> bytes:
        """Bytes to write back to the peer (CRLF pongs), then cleared."""
        out = bytes(self._outgoing)
        self._outgoing.clear()
        return out

    def next_event(self) -> FramerEvent | Literal[NeedData.NEED_DATA]:
        """The next framed item, or ``NEED_DATA``. Raises ``FramingError`` (close the stream)."""
        if self._error is not None:
            raise self._error
        buf = self._buffer
        if buf[:1] == b"\r":
            # Between messages: "\r\n\r\n" is a ping, a lone "\r\n" a pong (RFC 5626 §3.5.1).
            if buf[:4] == b"\r\n\r\n":
                del buf[:4]
                self._outgoing += b"\r\n"
                return PingReceived()
            if bytes(buf[:4]) in (b"\r", b"\r\n", b"\r\n\r"):
                return NEED_DATA
            if buf[:2] == b"\r\n":
                del buf[:2]
                return PongReceived()
            self._fail(FramingError("stray CR before a start line"))
        end = buf.find(b"\r\n\r\n", self._scan_from)
        if end < 0:
            if len(buf) > self._max:
                self._fail(FramingError("header block too large", status_hint=513))
            self._scan_from = max(0, len(buf) - 3)
            return NEED_DATA
        head = bytes(buf[: end + 4])
        length = self._content_length(head)
        total = end + 4 + length
        if total > self._max:
            self._fail(FramingError("message too large", status_hint=513, head=head))
        if len(buf) < total:
            return NEED_DATA
        message = bytes(buf[:total])
        del buf[:total]
        self._scan_from = 0
        return MessageFramed(message)

    def _content_length(self, head: bytes) -> int:
        values: list[bytes] = []
        # RFC 3261 §7.3.1: unfold continuation lines first.
        for line in _FOLD.sub(b" ", head).split(b"\r\n")[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                continue
            text = name.strip(b" \t").decode("latin-1")
            if canonical_name(text) == "Content-Length":
                values.append(value.strip(b" \t"))
        # RFC 3261 §18.3: "In the case of stream-oriented transports such as TCP, the
        # Content-Length header field indicates the size of the body … MUST be used".
        if not values:
            self._fail(FramingError("Content-Length missing on a stream", head=head))
        if len(values) > 1:
            self._fail(FramingError("multiple Content-Length values", head=head))
        if not values[0].isdigit() or len(values[0]) > 10:
            self._fail(FramingError("malformed Content-Length", head=head))
        return int(values[0])

    def _fail(self, error: FramingError) -> NoReturn:
        self._error = error
        raise error
