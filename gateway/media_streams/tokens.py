"""One-time call tokens: what lets a carrier's WebSocket in, and what it is for.

The voice webhook is authenticated (Twilio HMAC, Telnyx Ed25519); the WebSocket the
carrier then opens is not, or only weakly (carriers.md §1.10, §2.5). So the webhook
issues a *call ticket* and puts its token in the ``<Stream url>`` **path** (carriers drop
query strings, TW-STREAM): ``wss://…/v1/media/{carrier}/{token}``. The WS route redeems
the token exactly once, before reading a single frame; an unknown, expired or
already-used token closes the socket with 1008 (policy violation).

Sans-clock and sans-randomness (STYLE.md P1): ``now`` comes in as an argument and the
token source is injected (default ``secrets.token_urlsafe(32)``, 256 bits). The in-memory
``CallTokenStore`` is bounded: at most ``max_tickets`` live tickets; the oldest are
evicted first (in Redis, the TTL bounds them).

Two stores behind one async interface, ``TicketStore`` (what the routes use):

``LocalTicketStore``
    Wraps ``CallTokenStore`` (this process's memory). A webhook and its WebSocket must
    reach the same node; it is what a gateway without ``--redis`` uses.
``RedisTicketStore``
    With ``--redis`` every node shares the tickets, so the carrier's WebSocket may reach
    any node (docs/media-streams.md, "Scaling out"). A ticket is the key
    ``telepath:stream-ticket:<sha256(token)>`` (``SET … PX ttl NX``) whose value is the
    whole ticket sealed with the deployment's keyring
    (AES-256-GCM, associated data ``stream-ticket:<sha256(token)>``), so Redis holds neither
    the token nor the Call Control ``stream_auth_token`` in clear. ``redeem`` is ``GETDEL``
    (Redis ≥ 6.2) inside ``MULTI`` with ``PTTL``: one node, one time, cluster-wide. The set
    ``telepath:stream-call:<call id>`` (same TTL) lists a call's ticket keys for
    ``revoke_call``.

Errors::

    TicketStoreError             the shared store did not answer (Redis down, timeout);
                                 redeem callers refuse the socket (fail closed), issue
                                 callers answer the webhook as for any setup failure

A ticket that is unknown, expired, for another carrier, or cannot be opened (sealed with
a key this node lacks, tampered with) is not an error: ``redeem`` returns ``None``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.secret_box import Keyring, SecretKeyError

__all__ = [
    "CallTicket",
    "CallTokenStore",
    "LocalTicketStore",
    "RedisTicketStore",
    "TelnyxMode",
    "TicketStore",
    "TicketStoreError",
]

logger = logging.getLogger(__name__)

TelnyxMode = Literal["texml", "call_control"]


@dataclass(frozen=True, slots=True)
class CallTicket:
    """What the webhook learnt about a call, handed to the WebSocket that carries it.

    ``carrier_call_id`` is Twilio's ``CallSid`` or Telnyx's ``call_control_id`` (a TeXML
    ``CallSid`` is one too, TX-TEXML-CB); ``carrier_account_id`` is the Twilio
    ``AccountSid`` or the TeXML ``AccountSid`` (needed for the TeXML REST hang-up).
    ``codec`` is the outbound format name we asked Telnyx for (``pcmu/8000`` …).
    ``stream_auth_token`` is the Call Control ``stream_auth_token`` we set, if any.
    """

    carrier: Literal["twilio", "telnyx"]
    trunk_id: str
    account_id: str
    call_id: str
    carrier_call_id: str
    from_number: str
    to_number: str
    codec: str = "pcmu/8000"
    telnyx_mode: TelnyxMode | None = None
    carrier_account_id: str | None = None
    stream_auth_token: str | None = field(default=None, repr=False)
    expires_at: float = 0.0


class CallTokenStore:
    """Issue and redeem one-time call tokens. See the module docstring."""

    def __init__(
        self,
        *,
        ttl_s: float = 60.0,
        max_tickets: int = 10_000,
        token_source: Callable[[], str] | None = None,
    ) -> None:
        """``ttl_s``: how long a carrier has to open the socket after the webhook answer."""
        if ttl_s <= 0 or max_tickets < 1:
            raise ValueError("ttl_s must be positive and max_tickets at least 1")
        self.ttl_s = ttl_s
        self.max_tickets = max_tickets
        self._token_source = token_source or _random_token
        self._tickets: OrderedDict[str, CallTicket] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._tickets)

    def issue(self, ticket: CallTicket, *, now: float) -> str:
        """Store ``ticket`` (its ``expires_at`` is set to ``now + ttl_s``); returns its token."""
        self._expire(now)
        token = self._token_source()
        if token in self._tickets:  # a broken source must not let one call take another's
            raise ValueError("token source repeated a token")
        while len(self._tickets) >= self.max_tickets:
            self._tickets.popitem(last=False)
            self.evicted += 1
        stamped = CallTicket(
            carrier=ticket.carrier,
            trunk_id=ticket.trunk_id,
            account_id=ticket.account_id,
            call_id=ticket.call_id,
            carrier_call_id=ticket.carrier_call_id,
            from_number=ticket.from_number,
            to_number=ticket.to_number,
            codec=ticket.codec,
            telnyx_mode=ticket.telnyx_mode,
            carrier_account_id=ticket.carrier_account_id,
            stream_auth_token=ticket.stream_auth_token,
            expires_at=now + self.ttl_s,
        )
        self._tickets[token] = stamped
        return token

    def redeem(self, token: str, carrier: str, *, now: float) -> CallTicket | None:
        """The ticket for ``token`` if it exists, is for ``carrier`` and has not expired.

        The token is spent either way (a token presented on the wrong carrier's route is
        a probe, not a retry). ``None`` means: refuse the socket.
        """
        self._expire(now)
        if not isinstance(token, str) or not 16 <= len(token) <= 256:
            return None
        ticket = self._tickets.pop(token, None)
        if ticket is None or not hmac.compare_digest(ticket.carrier, carrier):
            return None
        return ticket

    def revoke_call(self, call_id: str) -> int:
        """Drop every unused ticket of ``call_id`` (the call ended before its socket came)."""
        stale = [token for token, ticket in self._tickets.items() if ticket.call_id == call_id]
        for token in stale:
            del self._tickets[token]
        return len(stale)

    def _expire(self, now: float) -> None:
        # Tickets are issued in time order with one TTL, so the oldest expire first.
        while self._tickets:
            token, ticket = next(iter(self._tickets.items()))
            if ticket.expires_at > now:
                return
            del self._tickets[token]


def _random_token() -> str:
    return secrets.token_urlsafe(32)


def _plausible(token: object) -> bool:
    return isinstance(token, str) and 16 <= len(token) <= 256


class TicketStoreError(Exception):
    """The shared ticket store did not answer; the message says why (no secrets in it)."""


class TicketStore(Protocol):
    """What the media-stream routes need of a ticket store (see the module docstring)."""

    @property
    def ttl_s(self) -> float:
        """How long a carrier has to open the socket after the webhook answer."""
        ...

    async def issue(self, ticket: CallTicket, *, now: float) -> str:
        """Store ``ticket``; its one-time token. Raises ``TicketStoreError``."""
        ...

    async def redeem(self, token: str, carrier: str, *, now: float) -> CallTicket | None:
        """Spend ``token``; its ticket, or ``None`` (refuse). Raises ``TicketStoreError``."""
        ...

    async def revoke_call(self, call_id: str) -> int:
        """Drop the call's unused tickets; how many. Raises ``TicketStoreError``."""
        ...


class LocalTicketStore:
    """``CallTokenStore`` behind the async interface: tickets in this process only."""

    def __init__(self, store: CallTokenStore | None = None) -> None:
        self.store = store or CallTokenStore()

    @property
    def ttl_s(self) -> float:
        """See ``CallTokenStore``."""
        return self.store.ttl_s

    def __len__(self) -> int:
        return len(self.store)

    async def issue(self, ticket: CallTicket, *, now: float) -> str:
        """See ``CallTokenStore.issue``."""
        return self.store.issue(ticket, now=now)

    async def redeem(self, token: str, carrier: str, *, now: float) -> CallTicket | None:
        """See ``CallTokenStore.redeem``."""
        return self.store.redeem(token, carrier, now=now)

    async def revoke_call(self, call_id: str) -> int:
        """See ``CallTokenStore.revoke_call``."""
        return self.store.revoke_call(call_id)


_TICKET_PREFIX = "telepath:stream-ticket:"
_CALL_PREFIX = "telepath:stream-call:"
_MAX_SEALED = 16_384  # a sealed ticket is well under 2 KiB; anything larger is not ours


def token_hash(token: str) -> str:
    """The name a token goes by in Redis (and in the associated data of its ticket)."""
    return hashlib.sha256(token.encode()).hexdigest()


def ticket_key(token: str) -> str:
    """The Redis key of ``token``'s ticket."""
    return _TICKET_PREFIX + token_hash(token)


def call_key(call_id: str) -> str:
    """The Redis set of a call's ticket keys."""
    return _CALL_PREFIX + call_id


class RedisTicketStore:
    """Tickets shared by every node through Redis, sealed with the keyring.

    ``redis`` is an asyncio client this store does not own (the caller closes it);
    ``now`` is the caller's clock, used only for ``CallTicket.expires_at``: Redis keeps the
    TTL, so nodes need not agree on a clock.
    """

    def __init__(
        self,
        redis: Redis,
        keyring: Keyring,
        *,
        ttl_s: float = 60.0,
        token_source: Callable[[], str] | None = None,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self._redis = redis
        self._keyring = keyring
        self._ttl_s = ttl_s
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._token_source = token_source or _random_token

    @property
    def ttl_s(self) -> float:
        """How long a carrier has to open the socket after the webhook answer."""
        return self._ttl_s

    async def issue(self, ticket: CallTicket, *, now: float) -> str:
        """Seal and store ``ticket`` under a new token (``SET NX PX``); the token."""
        token = self._token_source()
        digest = token_hash(token)
        body = json.dumps(asdict(ticket) | {"expires_at": 0.0}, separators=(",", ":"))
        sealed = self._keyring.seal(body.encode(), f"stream-ticket:{digest}")
        key = _TICKET_PREFIX + digest
        try:
            stored = await self._redis.set(key, sealed, px=self._ttl_ms, nx=True)
            if not stored:  # a broken source must not let one call take another's
                raise ValueError("token source repeated a token")
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.sadd(call_key(ticket.call_id), key)
                pipe.pexpire(call_key(ticket.call_id), self._ttl_ms)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise TicketStoreError(
                f"Redis did not store the ticket ({type(exc).__name__})"
            ) from exc
        return token

    async def redeem(self, token: str, carrier: str, *, now: float) -> CallTicket | None:
        """``GETDEL`` the ticket (spent either way, as in ``CallTokenStore.redeem``)."""
        if not _plausible(token):
            return None
        digest = token_hash(token)
        key = _TICKET_PREFIX + digest
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.pttl(key)
                pipe.getdel(key)
                left_ms, raw = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise TicketStoreError(f"Redis did not answer ({type(exc).__name__})") from exc
        if raw is None:
            return None
        ticket = self._open(raw, digest, now=now, left_ms=left_ms)
        if ticket is None or not hmac.compare_digest(ticket.carrier, carrier):
            return None
        return ticket

    async def revoke_call(self, call_id: str) -> int:
        """Delete every unused ticket of ``call_id`` and the call's set."""
        name = call_key(call_id)
        try:
            members = await self._redis.smembers(name)
            keys = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
            keys = [k for k in keys if k.startswith(_TICKET_PREFIX)]
            async with self._redis.pipeline(transaction=True) as pipe:
                if keys:
                    pipe.delete(*keys)
                pipe.delete(name)
                results = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise TicketStoreError(f"Redis did not answer ({type(exc).__name__})") from exc
        return int(results[0]) if keys else 0

    def _open(self, raw: object, digest: str, *, now: float, left_ms: object) -> CallTicket | None:
        if not isinstance(raw, bytes | str) or len(raw) > _MAX_SEALED:
            return None
        sealed = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
        try:
            value = json.loads(self._keyring.open(sealed, f"stream-ticket:{digest}"))
        except SecretKeyError as exc:
            logger.warning("stream ticket %s… could not be opened: %s", digest[:12], exc)
            return None
        except ValueError:
            logger.warning("stream ticket %s… is not a ticket", digest[:12])
            return None
        ticket = _ticket_from_json(value)
        if ticket is None:
            logger.warning("stream ticket %s… is not a ticket", digest[:12])
            return None
        # PTTL in the same MULTI as GETDEL: the ticket's expiry on this node's clock.
        left_s = left_ms / 1000 if isinstance(left_ms, int) and left_ms > 0 else 0.0
        return _with_expiry(ticket, now + left_s)


_STR_FIELDS = ("trunk_id", "account_id", "call_id", "carrier_call_id", "from_number", "to_number")


def _ticket_from_json(value: object) -> CallTicket | None:
    """A ``CallTicket`` from its JSON object, or ``None`` when a field is missing or wrong."""
    if not isinstance(value, dict):
        return None
    carrier, codec, mode = value.get("carrier"), value.get("codec"), value.get("telnyx_mode")
    if carrier not in ("twilio", "telnyx") or not isinstance(codec, str):
        return None
    if mode not in (None, "texml", "call_control"):
        return None
    strings = [value.get(name) for name in _STR_FIELDS]
    texts = [v for v in strings if isinstance(v, str)]
    account, auth_token = value.get("carrier_account_id"), value.get("stream_auth_token")
    if len(texts) != len(_STR_FIELDS):
        return None
    if not (account is None or isinstance(account, str)):
        return None
    if not (auth_token is None or isinstance(auth_token, str)):
        return None
    trunk_id, account_id, call_id, carrier_call_id, from_number, to_number = texts
    return CallTicket(
        carrier=carrier,
        trunk_id=trunk_id,
        account_id=account_id,
        call_id=call_id,
        carrier_call_id=carrier_call_id,
        from_number=from_number,
        to_number=to_number,
        codec=codec,
        telnyx_mode=mode,
        carrier_account_id=account,
        stream_auth_token=auth_token,
    )


def _with_expiry(ticket: CallTicket, expires_at: float) -> CallTicket:
    fields = asdict(ticket) | {"expires_at": expires_at}
    return CallTicket(**fields)
