"""Accounts and API keys.

A key is ``sk_live_`` + 32 random bytes (base64url, 43 characters). Only its SHA-256 is
stored; lookups go by hash and the final comparison is constant-time. Keys carry scopes
(``read``, ``write``), record their last use (at most once a minute, to keep writes off
the request path), and can be revoked.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.ids import new_id
from gateway.services.errors import InvalidRequest, NotFound, Unauthorized
from models import Account, ApiKey

KEY_PREFIX = "sk_live_"
SCOPES = ("read", "write")
_LAST_USED_EVERY = 60.0


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling the API: an account through one of its keys."""

    account_id: str
    key_id: str
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new key: ``secret`` is shown once and never stored."""

    key: ApiKey
    secret: str


def hash_key(secret: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeyService:
    """Creates, checks, lists and revokes API keys."""

    def __init__(self) -> None:
        self._last_touch: dict[str, float] = {}

    async def get_or_create_account(self, name: str) -> Account:
        """The account called ``name``, made if it does not exist yet."""
        account = await Account.get_or_none(name=name)
        if account is None:
            account = await Account.create(id=new_id("acct"), name=name)
        return account

    async def create(
        self, account_name: str, name: str, scopes: list[str] | None = None
    ) -> CreatedKey:
        """Make a key for ``account_name`` (created on first use)."""
        chosen = list(scopes) if scopes else list(SCOPES)
        unknown = sorted(set(chosen) - set(SCOPES))
        if unknown or not chosen:
            raise InvalidRequest(
                "invalid_scope", f"unknown scopes {unknown}; use read and/or write"
            )
        if not name.strip() or len(name) > 200:
            raise InvalidRequest("invalid_name", "name must be 1 to 200 characters")
        account = await self.get_or_create_account(account_name)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = await ApiKey.create(
            id=new_id("key"),
            account=account,
            name=name.strip(),
            key_hash=hash_key(secret),
            prefix=secret[: len(KEY_PREFIX) + 4],
            scopes=sorted(set(chosen)),
        )
        return CreatedKey(key, secret)

    async def authenticate(self, secret: str) -> Principal:
        """The principal behind a bearer token; ``Unauthorized`` for anything else."""
        if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
            raise Unauthorized("unauthorized", "Invalid API key")
        digest = hash_key(secret)
        key = await ApiKey.get_or_none(key_hash=digest)
        if (
            key is None
            or not hmac.compare_digest(key.key_hash, digest)
            or key.revoked_at is not None
        ):
            raise Unauthorized("unauthorized", "Invalid or revoked API key")
        now = time.monotonic()
        if now - self._last_touch.get(key.id, -_LAST_USED_EVERY) >= _LAST_USED_EVERY:
            self._last_touch[key.id] = now
            await ApiKey.filter(id=key.id).update(last_used_at=datetime.now(UTC))
        return Principal(key.account_id, key.id, frozenset(key.scopes))

    async def list(self, account_id: str | None = None) -> list[ApiKey]:
        """Keys, newest first (of one account, or all for the CLI)."""
        query = ApiKey.all().order_by("-id")
        if account_id is not None:
            query = query.filter(account_id=account_id)
        return await query.prefetch_related("account")

    async def revoke(self, key_id: str, account_id: str | None = None) -> ApiKey:
        """Revoke a key at once; ``NotFound`` if it is not (in) the account's."""
        query = ApiKey.filter(id=key_id)
        if account_id is not None:
            query = query.filter(account_id=account_id)
        key = await query.first()
        if key is None:
            raise NotFound("api_key_not_found", f"No API key {key_id!r}")
        if key.revoked_at is None:
            key.revoked_at = datetime.now(UTC)
            await key.save(update_fields=["revoked_at"])
        return key
