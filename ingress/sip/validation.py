"""Application-level checks a UAS makes before acting on a request (RFC 3261 §8.2).

:func:`check_request` is pure: it looks at a parsed :class:`~.message.Request` and returns
the status a UAS should answer with, or ``None`` when the request may be processed.
:func:`check_request_detail` returns the same decision as a :class:`Rejection` carrying the
headers the response needs (``Unsupported`` for 420, ``Allow`` for 405/501, ``Accept`` for
415/406) and a short reason for logs and a ``Warning``. Neither raises.

Order of the checks (the first that fails wins):

1. required headers present and single (400; RFC 3261 §8.1.1, §20; RFC 4475 §3.3.1, §3.3.8)
2. method implemented (501) and allowed (405) (§8.2.1)
3. CSeq method equals the Request-Line method (400; RFC 4475 §3.1.2.17)
4. Request-URI scheme supported (416; §8.2.2.1)
5. every Require option-tag supported (420; §8.2.2.3; not for ACK/CANCEL)
6. REGISTER only: To/From must be SIP or SIPS URIs (400; RFC 4475 §3.3.4)
7. INVITE only: body type supported (415; §8.2.3) and SDP acceptable in a reply (406)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from .errors import SipParseError
from .message import Request
from .uri import SipUri

__all__ = [
    "DEFAULT_METHODS",
    "KNOWN_METHODS",
    "Rejection",
    "check_request",
    "check_request_detail",
]

#: Methods this gateway's UAS implements by default.
DEFAULT_METHODS: Final = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"})
#: Methods defined by RFC 3261 and common extensions: known but maybe not allowed (405).
KNOWN_METHODS: Final = frozenset(
    {
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
        "INFO",
        "REFER",
        "MESSAGE",
        "UPDATE",
    }
)
_SINGLE: Final = ("To", "From", "Call-ID", "CSeq", "Max-Forwards", "Content-Length", "Content-Type")
_REQUIRED: Final = ("To", "From", "Call-ID", "CSeq")


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a request is refused: the status, a short reason, and headers to add."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = field(default=())


def check_request(
    request: Request,
    *,
    methods: Iterable[str] = DEFAULT_METHODS,
    supported: Iterable[str] = (),
    schemes: Iterable[str] = ("sip", "sips"),
    body_types: Iterable[str] = ("application/sdp",),
) -> int | None:
    """The status a UAS should answer ``request`` with, or ``None`` to process it."""
    found = check_request_detail(
        request, methods=methods, supported=supported, schemes=schemes, body_types=body_types
    )
    return None if found is None else found.status


def check_request_detail(
    request: Request,
    *,
    methods: Iterable[str] = DEFAULT_METHODS,
    supported: Iterable[str] = (),
    schemes: Iterable[str] = ("sip", "sips"),
    body_types: Iterable[str] = ("application/sdp",),
) -> Rejection | None:
    """Like :func:`check_request`, with the response headers and a reason."""
    try:
        return _check(request, frozenset(methods), supported, schemes, body_types)
    except SipParseError:
        # e.g. an unterminated quoted string in Require or Accept (unvalidated by the parser)
        return Rejection(400, "malformed header")


def _check(
    request: Request,
    allowed: frozenset[str],
    supported: Iterable[str],
    schemes: Iterable[str],
    body_types: Iterable[str],
) -> Rejection | None:
    headers = request.headers
    for name in _REQUIRED:
        if name not in headers:
            return Rejection(400, f"missing {name}")
    for name in _SINGLE:
        if len(headers.fields_named(name)) > 1:
            return Rejection(400, f"multiple {name} values")
    allow = (("Allow", ", ".join(sorted(allowed))),)
    if request.method not in allowed:
        if request.method in KNOWN_METHODS:
            return Rejection(405, "method not allowed", allow)
        return Rejection(501, "method not implemented", allow)
    cseq = request.cseq
    to, from_ = request.to, request.from_
    if cseq is None or cseq.method != request.method:
        return Rejection(400, "CSeq method does not match the request method")
    if request.uri.scheme.lower() not in {s.lower() for s in schemes}:
        return Rejection(416, "unsupported URI scheme")
    if request.method not in ("ACK", "CANCEL"):
        known = {tag.lower() for tag in supported}
        missing = [tag for tag in headers.get_all("Require") if tag and tag.lower() not in known]
        if missing:
            return Rejection(420, "unsupported extension", (("Unsupported", ", ".join(missing)),))
    if request.method == "REGISTER":
        for addr in (to, from_):
            if addr is None or not isinstance(addr.uri, SipUri):
                return Rejection(400, "address-of-record is not a SIP URI")
    if request.method == "INVITE":
        types = {t.lower() for t in body_types}
        accept = (("Accept", ", ".join(sorted(types))),)
        content_type = request.content_type
        if request.body and content_type is not None and content_type not in types:
            return Rejection(415, "unsupported media type", accept)
        accepted = [v.split(";")[0].strip().lower() for v in headers.get_all("Accept")]
        if accepted and not any(_acceptable(a, types) for a in accepted if a):
            return Rejection(406, "no acceptable body type", accept)
    return None


def _acceptable(pattern: str, types: set[str]) -> bool:
    if pattern == "*/*":
        return True
    if pattern.endswith("/*"):
        return any(t.startswith(pattern[:-1]) for t in types)
    return pattern in types
