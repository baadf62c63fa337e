"""The error tree of the SIP signalling core (RFC 3261 and friends).

::

    SipError                      root of everything this package raises
    ├── LocalProtocolError        we (the TU/caller) broke the protocol: a bug on our side,
    │                             e.g. a second final response to a server transaction
    └── RemoteProtocolError       the peer sent something we cannot accept; expected input
        ├── SipParseError         a message failed to parse; ``status_hint`` is the response
        │   │                     to send (400) or ``None`` when the message must be dropped
        │   │                     (a broken response, or no Via to answer to)
        │   ├── VersionNotSupported   505, RFC 3261 §8.2.2.1 / RFC 4475 §3.1.2.16
        │   └── MessageTooLarge       513, RFC 3261 §21.5.14
        ├── FramingError          a stream (TCP/TLS) lost its framing: Content-Length missing,
        │                         negative, non-numeric or repeated, or the message exceeds the
        │                         size limit. The connection must be closed (RFC 3261 §18.3).
        └── DigestError           an Authorization/WWW-Authenticate value is malformed

Peer input never escapes the core as anything but a ``RemoteProtocolError`` subclass, and the
aggregate entry points (``TransactionLayer.receive_bytes``) catch those and turn them into an
error response or a silent drop. ``LocalProtocolError`` means a bug in the caller and is
raised straight through.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "DigestError",
    "ErrorContext",
    "FramingError",
    "LocalProtocolError",
    "MessageTooLarge",
    "RemoteProtocolError",
    "SipError",
    "SipParseError",
    "VersionNotSupported",
]


class SipError(Exception):
    """Root of the SIP core's errors."""


class LocalProtocolError(SipError):
    """The caller tried something the protocol does not allow (a bug on our side)."""


class RemoteProtocolError(SipError):
    """The peer sent something we cannot accept.

    Attributes:
        status_hint: the SIP status a UAS should answer with, or ``None`` when nothing
            must be sent (the input was a response, or there is nobody to answer to).
    """

    default_status: int | None = 400

    def __init__(self, reason: str, *, status_hint: int | None = -1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_hint: int | None = self.default_status if status_hint == -1 else status_hint


@dataclass(frozen=True, slots=True)
class ErrorContext:
    """What could be salvaged from a broken message to build an error response.

    ``fields`` holds the raw ``(name, value)`` pairs of the Via, From, To, Call-ID and CSeq
    header fields in message order (RFC 3261 §8.2.6.2 copies exactly these).
    """

    is_request: bool
    method: str | None = None
    fields: tuple[tuple[str, str], ...] = field(default=())


class SipParseError(RemoteProtocolError):
    """A SIP message could not be parsed.

    Attributes:
        context: the salvaged headers, or ``None`` if even the header block was unreadable.
    """

    def __init__(
        self,
        reason: str,
        *,
        status_hint: int | None = -1,
        context: ErrorContext | None = None,
    ) -> None:
        super().__init__(reason, status_hint=status_hint)
        self.context = context

    def with_context(self, context: ErrorContext | None) -> SipParseError:
        """Return a copy of this error carrying ``context``; responses get no status."""
        status = self.status_hint if context is None or context.is_request else None
        clone = type(self)(self.reason, status_hint=status, context=context)
        return clone


class VersionNotSupported(SipParseError):
    """The start line names a SIP version other than 2.0 (RFC 3261 §21.5.15)."""

    default_status = 505


class MessageTooLarge(SipParseError):
    """The message exceeds a configured size limit (RFC 3261 §21.5.14)."""

    default_status = 513


class FramingError(RemoteProtocolError):
    """A stream connection lost its message framing; the caller must close it.

    Attributes:
        head: the header block of the offending message when it was complete, so the caller
            may still try to parse it and answer before closing (RFC 4475 §3.1.2.3).
    """

    def __init__(self, reason: str, *, status_hint: int | None = -1, head: bytes = b"") -> None:
        super().__init__(reason, status_hint=status_hint)
        self.head = head


class DigestError(RemoteProtocolError):
    """A digest Authorization or challenge header is malformed (RFC 7616 §3.4)."""
