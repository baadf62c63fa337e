"""Who may call which trunk: routing and admission policy for new INVITEs, pure.

The gateway looks the trunk up (the Request-URI user, case-insensitive) and hands this
module a plain :class:`TrunkPolicy` snapshot; nothing here touches a database, a clock or
the network. Decisions, in the order the gateway applies them:

1. :func:`route_user` – the Request-URI user that names the trunk.
2. :func:`authentication_route` – ``auth_mode`` ``digest`` (challenge), ``ip`` (the source
   must be in ``allowed_ips``; no challenge) or ``either`` (an allowed source skips the
   challenge, any other must authenticate).
3. :func:`admit` – after authentication: inactive trunk → 480; a source outside
   ``allowed_ips`` (when set, except in ``either`` mode where it is the alternative to
   digest) → 403; a called/calling number outside ``inbound_numbers``
   (when set) → 403; the process at its global cap → 503 with ``Retry-After``; the trunk
   at its own cap → 486 Busy Here.

Every refusal is a :class:`Refusal` with the status, the headers to send and a short
reason safe to log. :func:`call_context_fields` extracts what the agent gets to know
(X- headers as sent, E.164 numbers, the carrier when recognisable).
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from .errors import SipParseError
from .headers import NameAddr
from .message import Peer, Request, TransportKind
from .uri import AbsoluteUri, SipUri, Uri, unescape

__all__ = [
    "AuthRoute",
    "CallerIdentity",
    "ContextFields",
    "Refusal",
    "TrunkPolicy",
    "admit",
    "authentication_route",
    "call_context_fields",
    "e164",
    "recognise_carrier",
    "route_user",
]


class AuthRoute(enum.Enum):
    """How a new INVITE for a trunk is authenticated."""

    DIGEST = "digest"  # challenge / verify credentials
    SOURCE_ALLOWED = "source_allowed"  # the source address alone authenticates it
    SOURCE_FORBIDDEN = "source_forbidden"  # auth_mode ip and the source is not allowed: 403


@dataclass(frozen=True, slots=True)
class TrunkPolicy:
    """The parts of a trunk the policy needs (a snapshot taken when the call arrives)."""

    trunk_id: str
    username: str
    active: bool = True
    auth_mode: str = "digest"
    allowed_ips: tuple[str, ...] = ()
    inbound_numbers: tuple[str, ...] = ()
    max_concurrent_calls: int | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused INVITE: the status to send, extra headers and a loggable reason."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = field(default=())


def route_user(request: Request) -> str | None:
    """The Request-URI user that picks the trunk (unescaped), or ``None``."""
    uri = request.uri
    if isinstance(uri, SipUri) and uri.user:
        return unescape(uri.user).split(";", 1)[0]
    return None


def _networks(cidrs: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for text in cidrs:
        try:
            out.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            continue  # the API validates CIDRs; a bad stored one matches nothing
    return out


def source_allowed(source: str, cidrs: Sequence[str]) -> bool:
    """Whether ``source`` (an IP literal) is inside one of ``cidrs``."""
    try:
        ip = ipaddress.ip_address(source)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in _networks(cidrs))


def authentication_route(trunk: TrunkPolicy, source: Peer) -> AuthRoute:
    """How to authenticate a call from ``source`` to ``trunk`` (see the module doc)."""
    mode = trunk.auth_mode.lower()
    allowed = bool(trunk.allowed_ips) and source_allowed(source.host, trunk.allowed_ips)
    if mode == "ip":
        return AuthRoute.SOURCE_ALLOWED if allowed else AuthRoute.SOURCE_FORBIDDEN
    if mode == "either" and allowed:
        return AuthRoute.SOURCE_ALLOWED
    return AuthRoute.DIGEST


# -- numbers ---------------------------------------------------------------------------------
_VISUAL: Final = re.compile(r"[\s().\-]")
_DIGITS: Final = re.compile(r"\+?[0-9]{3,15}\Z")


def e164(text: str | None) -> str | None:
    """A user part or ``tel:`` number as E.164 (``+`` and 3-15 digits), or ``None``.

    Visual separators (RFC 3966 §5.1.1) are removed, ``00`` becomes ``+``; a number
    without ``+`` is taken as given (``+`` prefixed) when it has 10 or more digits.
    """
    if not text:
        return None
    number = _VISUAL.sub("", unescape(text).split(";", 1)[0])
    if number.startswith("00"):
        number = "+" + number[2:]
    if not _DIGITS.match(number):
        return None
    if number.startswith("+"):
        return number
    return "+" + number if len(number) >= 10 else None


def _uri_number(uri: Uri) -> str | None:
    if isinstance(uri, SipUri):
        return e164(uri.user)
    if isinstance(uri, AbsoluteUri) and uri.scheme.lower() == "tel":
        return e164(uri.opaque)
    return None


def _header_number(request: Request, name: str) -> str | None:
    value = request.headers.get(name)
    if value is None:
        return None
    try:
        return _uri_number(NameAddr.parse(value).uri)
    except SipParseError:
        return None


@dataclass(frozen=True, slots=True)
class CallerIdentity:
    """The numbers of a call, E.164 where possible (else the raw user part)."""

    called: str | None  # To, else the Request-URI
    called_candidates: tuple[str, ...]
    calling: str | None  # P-Asserted-Identity, else From
    calling_candidates: tuple[str, ...]


def identity(request: Request) -> CallerIdentity:
    """Called and calling numbers from To/Request-URI and P-Asserted-Identity/From."""
    called = [n for n in (_header_number(request, "To"), _uri_number(request.uri)) if n]
    calling = [
        n
        for n in (_header_number(request, "P-Asserted-Identity"), _header_number(request, "From"))
        if n
    ]
    return CallerIdentity(
        called[0] if called else None,
        tuple(dict.fromkeys(called)),
        calling[0] if calling else None,
        tuple(dict.fromkeys(calling)),
    )


def _numbers_match(candidates: Iterable[str], allowed: Iterable[str]) -> bool:
    wanted = {n for n in (e164(a) for a in allowed) if n}
    return any(c in wanted for c in candidates)


def admit(
    trunk: TrunkPolicy,
    request: Request,
    source: Peer,
    *,
    active_calls: int,
    trunk_calls: int,
    max_calls: int | None = None,
) -> Refusal | None:
    """Policy after authentication: ``None`` to go on, or the :class:`Refusal`.

    ``inbound_numbers`` lists the trunk's own numbers: the call is admitted when either
    the called number (To / Request-URI) or the calling number (P-Asserted-Identity /
    From) is among them, so both "calls to my DID" and "calls from my PBX's numbers"
    configurations work.
    """
    if not trunk.active:
        return Refusal(480, "trunk inactive")  # RFC 3261 §21.4.18 Temporarily Unavailable
    # With auth_mode "either" the allow-list is an alternative to digest, not a filter;
    # with "digest" it restricts authenticated callers further ("ip" checked it already).
    restricts = trunk.auth_mode.lower() != "either"
    if restricts and trunk.allowed_ips and not source_allowed(source.host, trunk.allowed_ips):
        return Refusal(403, "source address not allowed")
    if trunk.inbound_numbers:
        who = identity(request)
        if not _numbers_match(
            (*who.called_candidates, *who.calling_candidates), trunk.inbound_numbers
        ):
            return Refusal(403, "number not allowed")
    if max_calls is not None and active_calls >= max_calls:
        return Refusal(503, "gateway at capacity", (("Retry-After", "30"),))
    if trunk.max_concurrent_calls is not None and trunk_calls >= trunk.max_concurrent_calls:
        return Refusal(486, "trunk at its concurrent call limit")
    return None


# -- call context ---------------------------------------------------------------------------
def recognise_carrier(request: Request) -> str:
    """The carrier that sent the INVITE, from its tell-tale headers; ``"sip"`` if unknown."""
    names = {f.name.lower() for f in request.headers}
    agent = (request.headers.get("User-Agent") or request.headers.get("Server") or "").lower()
    if any(n.startswith("x-twilio-") for n in names) or "twilio" in agent:
        return "twilio"
    if any(n.startswith("x-telnyx-") for n in names) or "telnyx" in agent:
        return "telnyx"
    if any(n.startswith("x-signalwire-") for n in names) or "signalwire" in agent:
        return "signalwire"
    if any(n.startswith("x-plivo-") for n in names) or "plivo" in agent:
        return "plivo"
    if any(n.startswith("x-bandwidth-") for n in names) or "bandwidth" in agent:
        return "bandwidth"
    if "vonage" in agent or "nexmo" in agent:
        return "vonage"
    if "asterisk" in agent:
        return "asterisk"
    if "freeswitch" in agent:
        return "freeswitch"
    return "sip"


_MAX_X_HEADERS: Final = 64
_MAX_X_VALUE: Final = 1024


@dataclass(frozen=True, slots=True)
class ContextFields:
    """The INVITE's part of ``media.CallContext``."""

    sip_call_id: str
    from_number: str
    to_number: str
    request_uri: str
    source_address: str
    transport: str
    carrier: str
    headers: dict[str, str]


def call_context_fields(request: Request, source: Peer) -> ContextFields:
    """What the call context needs from the INVITE (see ``media.CallContext``).

    ``headers`` holds every ``X-`` header with its name as sent (first value, bounded in
    count and length), plus ``X-SIP-Call-ID``; numbers are E.164 where possible.
    """
    headers: dict[str, str] = {}
    for f in request.headers:
        if f.name.lower().startswith("x-") and f.name not in headers:
            if len(headers) >= _MAX_X_HEADERS:
                break
            headers[f.name] = f.value[:_MAX_X_VALUE]
    call_id = request.call_id or ""
    headers["X-SIP-Call-ID"] = call_id
    who = identity(request)
    from_raw = _raw_user(request, "P-Asserted-Identity") or _raw_user(request, "From")
    to_raw = _raw_user(request, "To")
    return ContextFields(
        sip_call_id=call_id,
        from_number=who.calling or from_raw or "",
        to_number=who.called or to_raw or "",
        request_uri=str(request.uri),
        source_address=f"{source.host}:{source.port}",
        transport=source.transport.value.lower(),
        carrier=recognise_carrier(request),
        headers=headers,
    )


def _raw_user(request: Request, name: str) -> str | None:
    value = request.headers.get(name)
    if value is None:
        return None
    try:
        uri = NameAddr.parse(value).uri
    except SipParseError:
        return None
    if isinstance(uri, SipUri):
        return uri.user
    return uri.opaque if isinstance(uri, AbsoluteUri) else None


def client_origin(request: Request, source: Peer, trusted_proxy: Callable[[str], bool]) -> Peer:
    """Where a request really came from, seen through a trusted SIP proxy.

    Behind a load balancer (Kamailio's dispatcher, docs/deployment.md) every request arrives
    from the proxy, so address checks, failed-auth limits and logs would all see the proxy.
    When ``source`` is a trusted proxy, the caller is the second Via: the proxy added its own
    on top (RFC 3261 §16.6 step 8) and recorded where the caller's request came from in that
    Via's ``received``/``rport`` (§18.2.1, RFC 3581 §4). An untrusted source is taken as is:
    anybody can write Via headers.
    """
    if not trusted_proxy(source.host):
        return source
    try:
        vias = request.vias
    except SipParseError:
        return source
    if len(vias) < 2:
        return source
    via = vias[1]
    host = via.param("received") or via.host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return source  # a host name: nothing to check an address against
    rport = via.param("rport")
    port = int(rport) if rport and rport.isdigit() and int(rport) < 65536 else (via.port or 5060)
    kinds = {kind.value: kind for kind in TransportKind}
    transport = kinds.get(via.transport.upper(), source.transport)
    return Peer(transport, host, port)
