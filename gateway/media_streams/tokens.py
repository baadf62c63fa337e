"""One-time call tokens: what lets a carrier's WebSocket in, and what it is for.

The voice webhook is authenticated (Twilio HMAC, Telnyx Ed25519); the WebSocket the
carrier then opens is not, or only weakly (carriers.md §1.10, §2.5). So the webhook
issues a *call ticket* and puts its token in the ``<Stream url>`` **path** (carriers drop
query strings, TW-STREAM): ``wss://…/v1/media/{carrier}/{token}``. The WS route redeems
the token exactly once, before reading a single frame; an unknown, expired or
already-used token closes the socket with 1008 (policy violation).

Sans-clock and sans-randomness (STYLE.md P1): ``now`` comes in as an argument and the
token source is injected (default ``secrets.token_urlsafe(32)``, 256 bits). Memory is
bounded: at most ``max_tickets`` live tickets; the oldest are evicted first.

Tickets live in this process. A webhook and its WebSocket must therefore reach the same
node (docs/media-streams.md, "Scaling out").
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["CallTicket", "CallTokenStore", "TelnyxMode"]

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
