"""Trunks (the seed's "connections"): create, list, read, update, delete, rotate, activate.

Requests come in two shapes (the seed's flat ``ai_provider``/``openai_api_key``/… and its
nested ``provider``/``provider_config``/``provider_credential``); both are folded into one
canonical form here:

- non-secret provider settings live in ``provider_config`` (``elevenlabs_agent_id`` is
  ``provider_config.agent_id``, ``elevenlabs_voice_id`` is ``provider_config.voice_id``);
- every secret (provider keys, custom agent headers, the webhook secret) lives in one
  AES-256-GCM ciphertext per trunk, bound to the trunk's id;
- the SIP password is turned into HA1 values at once and never kept.

Changes apply to new calls only: a call takes a snapshot of its trunk when it starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from gateway.ids import looks_like, new_id
from gateway.secret_box import Keyring
from gateway.services.errors import Conflict, InvalidRequest, NotFound
from gateway.services.provider_check import ProviderChecker
from gateway.services.sip_credentials import digest_secrets, generate_password, generate_username
from models import Trunk

PROVIDERS = ("openai", "elevenlabs", "custom", "echo")
_KEY_FIELDS = {
    "openai": "openai_api_key",
    "elevenlabs": "elevenlabs_api_key",
    "custom": "custom_credential",
}
_NOT_CLEARABLE = (
    "name",
    "ai_provider",
    "provider",
    "sip_username",
    "sip_password",
    "status",
    "auth_mode",
)
_HEADER = "header:"
CARRIER_FIELDS = (
    "twilio_account_sid",
    "twilio_auth_token",
    "telnyx_api_key",
    "telnyx_public_key",
    "telnyx_mode",
)
"""Media-stream carrier settings (issue 6), kept in the trunk's sealed secrets dict."""


@dataclass(frozen=True, slots=True)
class TrunkState:
    """A trunk with its secrets opened; ``sip_password`` only right after it was set."""

    trunk: Trunk
    secrets: dict[str, str]
    sip_password: str | None = None

    @property
    def custom_headers(self) -> dict[str, str]:
        """The custom agent's extra headers (secret: they usually carry credentials)."""
        return {k[len(_HEADER) :]: v for k, v in self.secrets.items() if k.startswith(_HEADER)}


@dataclass(frozen=True, slots=True)
class TrunkPage:
    """One page of a cursor-paginated list."""

    items: list[TrunkState]
    next_cursor: str | None
    has_more: bool


def _credential_field(provider: str) -> str | None:
    return _KEY_FIELDS.get(provider)


class TrunkService:
    """Trunk operations, scoped to an account."""

    def __init__(self, keyring: Keyring, sip_domain: str, checker: ProviderChecker) -> None:
        self.keyring = keyring
        self.sip_domain = sip_domain
        self.checker = checker

    # --- reading ---

    def _open(self, trunk: Trunk, password: str | None = None) -> TrunkState:
        secrets = (
            self.keyring.open_json(trunk.secrets, f"trunk:{trunk.id}") if trunk.secrets else {}
        )
        return TrunkState(trunk, secrets, password)

    async def _get_model(self, account_id: str, trunk_id: str) -> Trunk:
        trunk = None
        if looks_like("trunk", trunk_id):
            trunk = await Trunk.get_or_none(id=trunk_id, account_id=account_id)
        if trunk is None:
            # Another account's trunk reads exactly like a missing one.
            raise NotFound("trunk_not_found", f"No trunk with id {trunk_id!r}")
        return trunk

    async def get(self, account_id: str, trunk_id: str) -> TrunkState:
        """One trunk of the account."""
        return self._open(await self._get_model(account_id, trunk_id))

    async def list(
        self,
        account_id: str,
        *,
        limit: int = 20,
        cursor: str | None = None,
        status: str | None = None,
        oldest_first: bool = False,
    ) -> TrunkPage:
        """A page of trunks, newest first unless ``oldest_first`` (``sort=created_at``)."""
        if not 1 <= limit <= 100:
            raise InvalidRequest("invalid_parameter", "limit must be between 1 and 100")
        if status is not None and status not in ("active", "inactive", "error"):
            raise InvalidRequest("invalid_parameter", "status must be active, inactive or error")
        query = Trunk.filter(account_id=account_id)
        if status:
            query = query.filter(status=status)
        if cursor:
            if not looks_like("trunk", cursor):
                raise InvalidRequest("invalid_cursor", "cursor is not one this API returned")
            query = query.filter(id__gt=cursor) if oldest_first else query.filter(id__lt=cursor)
        rows = await query.order_by("id" if oldest_first else "-id").limit(limit + 1)
        has_more = len(rows) > limit
        rows = rows[:limit]
        return TrunkPage(
            [self._open(t) for t in rows], rows[-1].id if has_more and rows else None, has_more
        )

    async def find_by_username(self, username: str) -> TrunkState | None:
        """The trunk a Request-URI user routes to (case-insensitive), for the SIP ingress."""
        if not 3 <= len(username) <= 30:
            return None
        trunk = await Trunk.get_or_none(sip_username_key=username.lower())
        return self._open(trunk) if trunk else None

    async def find_by_id(self, trunk_id: str) -> TrunkState | None:
        """Any account's trunk by id, for carrier webhooks that name it in the URL."""
        trunk = await Trunk.get_or_none(id=trunk_id) if looks_like("trunk", trunk_id) else None
        return self._open(trunk) if trunk else None

    # --- writing ---

    def _fold(self, changes: Mapping[str, Any], provider: str | None) -> dict[str, Any]:
        """Fold the flat and nested request shapes into canonical changes."""
        out = dict(changes)
        if "provider" in out:
            nested = out.pop("provider")
            flat = out.get("ai_provider")
            if nested is not None and flat is not None and nested != flat:
                raise InvalidRequest("invalid_field", "ai_provider and provider disagree")
            if nested is not None or "ai_provider" not in out:
                out["ai_provider"] = nested if nested is not None else flat
        if "provider_credential" in out:
            target = _credential_field(out.get("ai_provider") or provider or "")
            if target is None:
                raise InvalidRequest(
                    "invalid_field", "provider_credential is not used by the echo provider"
                )
            out.setdefault(target, out.pop("provider_credential"))
            out.pop("provider_credential", None)
        for flat, key in (("elevenlabs_agent_id", "agent_id"), ("elevenlabs_voice_id", "voice_id")):
            if flat in out:
                config = dict(out.get("provider_config") or {})
                config.setdefault(key, out.pop(flat))
                out["provider_config"] = config
        return out

    def _check_requirements(self, trunk: Trunk, secrets: Mapping[str, str]) -> None:
        provider = trunk.ai_provider
        if provider == "openai" and not secrets.get("openai_api_key"):
            raise InvalidRequest(
                "missing_required_field", "openai_api_key is required when ai_provider is openai"
            )
        if provider == "elevenlabs":
            if not trunk.provider_config.get("agent_id"):
                raise InvalidRequest(
                    "missing_required_field",
                    "elevenlabs_agent_id is required when ai_provider is elevenlabs",
                )
            if not secrets.get("elevenlabs_api_key"):
                raise InvalidRequest(
                    "missing_required_field",
                    "elevenlabs_api_key is required when ai_provider is elevenlabs",
                )
        if provider == "custom" and not trunk.custom_endpoint:
            raise InvalidRequest(
                "missing_required_field", "custom_endpoint is required when ai_provider is custom"
            )
        if trunk.auth_mode == "ip" and not trunk.allowed_ips:
            raise InvalidRequest(
                "missing_required_field", "allowed_ips is required when auth_mode is ip"
            )

    def _set_password(self, trunk: Trunk, password: str) -> None:
        digest = digest_secrets(trunk.sip_username, self.sip_domain, password)
        trunk.sip_realm = digest.realm
        trunk.ha1_md5 = digest.ha1_md5
        trunk.ha1_sha256 = digest.ha1_sha256

    def _apply(
        self, trunk: Trunk, secrets: dict[str, str], changes: Mapping[str, Any]
    ) -> str | None:
        """Apply canonical changes to a (possibly new) trunk; returns a new password if set."""
        password: str | None = None
        for field, value in changes.items():
            if value is None and field in _NOT_CLEARABLE:
                raise InvalidRequest("invalid_field", f"{field} cannot be cleared")
            if field == "sip_username":
                trunk.sip_username = value
                trunk.sip_username_key = value.lower()
            elif field == "sip_password":
                password = value
            elif field in (
                "openai_api_key",
                "elevenlabs_api_key",
                "custom_credential",
                "webhook_secret",
                *CARRIER_FIELDS,
            ):
                # Carrier settings ride in the sealed dict too (docs/media-streams.md): the
                # auth token and API key are secrets; the account SID, public key and
                # Telnyx mode are not, but keeping them beside their secrets needs no
                # migration and keeps them out of the agent's provider_config.
                if value is None:
                    secrets.pop(field, None)
                else:
                    secrets[field] = value
            elif field == "custom_headers":
                for name in [k for k in secrets if k.startswith(_HEADER)]:
                    del secrets[name]
                for name, header_value in (value or {}).items():
                    secrets[_HEADER + name] = header_value
            elif field == "provider_config":
                if value is None:
                    trunk.provider_config = {}
                else:
                    merged = dict(trunk.provider_config or {})
                    for key, item in value.items():
                        if item is None:
                            merged.pop(key, None)
                        else:
                            merged[key] = item
                    trunk.provider_config = merged
            elif field in ("inbound_numbers", "allowed_ips"):
                setattr(trunk, field, list(dict.fromkeys(value or [])))
            elif field == "status":
                trunk.status = value
                trunk.status_reason = None
            else:
                setattr(trunk, field, value)
        return password

    async def _verify(self, trunk: Trunk, secrets: Mapping[str, str], changed: set[str]) -> None:
        if not changed & {"openai_api_key", "elevenlabs_api_key", "ai_provider", "provider_config"}:
            return
        key = secrets.get(_KEY_FIELDS.get(trunk.ai_provider, ""), "")
        trunk.credentials_verified = await self.checker.check(trunk.ai_provider, key)

    async def create(self, account_id: str, changes: Mapping[str, Any]) -> TrunkState:
        """Create a trunk from a validated request (either shape)."""
        folded = self._fold(changes, None)
        if not folded.get("ai_provider"):
            raise InvalidRequest("missing_required_field", "ai_provider is required")
        if not folded.get("sip_username"):
            raise InvalidRequest("missing_required_field", "sip_username is required")
        folded.setdefault("name", folded["sip_username"])
        password: str = folded.get("sip_password") or generate_password()
        folded["sip_password"] = password
        trunk = Trunk(
            id=new_id("trunk"),
            account_id=account_id,
            status="active",
            auth_mode="digest",
            provider_config={},
            inbound_numbers=[],
            allowed_ips=[],
        )
        secrets: dict[str, str] = {}
        self._apply(trunk, secrets, folded)
        self._set_password(trunk, password)
        self._check_requirements(trunk, secrets)
        await self._verify(trunk, secrets, set(folded))
        trunk.secrets = self.keyring.seal_json(secrets, f"trunk:{trunk.id}") if secrets else None
        await self._ensure_username_free(trunk.sip_username, None)
        try:
            await trunk.save()
        except IntegrityError:
            raise self._taken(trunk.sip_username) from None
        return TrunkState(trunk, secrets, password)

    @staticmethod
    def _taken(username: str) -> Conflict:
        return Conflict("conflict", f"A trunk with sip_username {username!r} already exists")

    async def _ensure_username_free(self, username: str, own_id: str | None) -> None:
        clash = (
            await Trunk.filter(sip_username_key=username.lower()).exclude(id=own_id or "").exists()
        )
        if clash:
            raise self._taken(username)

    async def update(
        self, account_id: str, trunk_id: str, changes: Mapping[str, Any]
    ) -> TrunkState:
        """Apply a PATCH: fields sent replace, ``null`` clears, lists are replaced whole."""
        async with in_transaction():
            trunk = await self._get_model(account_id, trunk_id)
            state = self._open(trunk)
            secrets = dict(state.secrets)
            folded = self._fold(changes, trunk.ai_provider)
            if (
                "sip_username" in folded
                and folded["sip_username"] != trunk.sip_username
                and not folded.get("sip_password")
            ):
                raise InvalidRequest(
                    "missing_required_field", "sip_password is required to change sip_username"
                )
            password = self._apply(trunk, secrets, folded)
            if password is not None:
                self._set_password(trunk, password)
            self._check_requirements(trunk, secrets)
            credentials = {
                "openai_api_key",
                "elevenlabs_api_key",
                "custom_credential",
                "custom_headers",
                "custom_endpoint",
            }
            if trunk.status == "error" and folded.keys() & credentials:
                # New credentials clear the provider error (issue: until they are updated).
                trunk.status, trunk.status_reason = "active", None
            await self._verify(trunk, secrets, set(folded))
            trunk.secrets = (
                self.keyring.seal_json(secrets, f"trunk:{trunk.id}") if secrets else None
            )
            if "sip_username" in folded:
                await self._ensure_username_free(trunk.sip_username, trunk.id)
            try:
                await trunk.save()
            except IntegrityError:
                raise self._taken(trunk.sip_username) from None
        return TrunkState(trunk, secrets, password)

    async def delete(self, account_id: str, trunk_id: str) -> None:
        """Delete a trunk; its call records stay."""
        trunk = await self._get_model(account_id, trunk_id)
        await trunk.delete()

    async def rotate_password(self, account_id: str, trunk_id: str) -> TrunkState:
        """A new random SIP password; the old one stops authenticating at once."""
        trunk = await self._get_model(account_id, trunk_id)
        password = generate_password()
        self._set_password(trunk, password)
        await trunk.save(update_fields=["sip_realm", "ha1_md5", "ha1_sha256", "updated_at"])
        return self._open(trunk, password)

    async def set_active(self, account_id: str, trunk_id: str, active: bool) -> TrunkState:
        """Activate (also clears an error status) or deactivate a trunk."""
        trunk = await self._get_model(account_id, trunk_id)
        trunk.status = "active" if active else "inactive"
        trunk.status_reason = None
        await trunk.save(update_fields=["status", "status_reason", "updated_at"])
        return self._open(trunk)

    async def mark_error(self, trunk_id: str, reason: str) -> None:
        """A provider refused the trunk's credentials: show it until they are fixed."""
        await Trunk.filter(id=trunk_id).update(status="error", status_reason=reason[:500])

    @staticmethod
    def generate_credentials() -> tuple[str, str]:
        """A random username and password pair (``POST /v1/credentials/generate``)."""
        return generate_username(), generate_password()
