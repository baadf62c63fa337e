"""``/v1/trunks`` and ``/v1/credentials``: parse, call one service method, serialise."""

from __future__ import annotations

from typing import Any

from quart import Response, jsonify, request

from gateway.api import api, get_services, json_body, require_scope
from gateway.api.schemas import (
    CarrierWebhookUrls,
    TrunkCreate,
    TrunkOut,
    TrunkUpdate,
    parse_model,
)
from gateway.media_streams.urls import carrier_webhook_urls
from gateway.services.calls import TrunkCallStats
from gateway.services.errors import InvalidRequest
from gateway.services.trunks import TrunkState

MASKED_PASSWORD = "********"


def mask(value: str | None) -> str | None:
    """A secret as the API shows it: only its last 4 characters."""
    if value is None:
        return None
    return "****" + value[-4:] if len(value) > 8 else "****"


def trunk_out(
    state: TrunkState,
    sip_domain: str,
    public_url: str | None = None,
    stats: TrunkCallStats | None = None,
) -> dict[str, Any]:
    """The API view of a trunk (``TrunkOut``); ``public_url`` adds the carrier webhook URLs,
    ``stats`` its call figures (``CallService.trunk_stats``)."""
    trunk = state.trunk
    calls = stats or TrunkCallStats()
    secrets = state.secrets
    config = dict(trunk.provider_config or {})
    key_field = {
        "openai": "openai_api_key",
        "elevenlabs": "elevenlabs_api_key",
        "custom": "custom_credential",
    }
    headers = state.custom_headers
    # Validated on the way out too: the columns hold only the schema's values, and a
    # mismatch would be a bug better caught here than by a client.
    view = TrunkOut.model_validate(
        {
            "id": trunk.id,
            "name": trunk.name,
            "status": trunk.status,
            "status_reason": trunk.status_reason,
            "ai_provider": trunk.ai_provider,
            "provider": trunk.ai_provider,
            "sip_username": trunk.sip_username,
            "sip_password": state.sip_password or MASKED_PASSWORD,
            "sip_endpoint": f"{trunk.sip_username}@{sip_domain}",
            "origination_uri": f"sip:{trunk.sip_username}@{sip_domain}",
            "sip_realm": trunk.sip_realm,
            "auth_mode": trunk.auth_mode,
            "inbound_numbers": list(trunk.inbound_numbers or []),
            "allowed_ips": list(trunk.allowed_ips or []),
            "webhook_url": trunk.webhook_url,
            "webhook_secret": mask(secrets.get("webhook_secret")),
            "system_prompt": trunk.system_prompt,
            "custom_endpoint": trunk.custom_endpoint,
            "custom_headers": {name: mask(value) or "" for name, value in headers.items()}
            if headers
            else None,
            "openai_api_key": mask(secrets.get("openai_api_key")),
            "elevenlabs_api_key": mask(secrets.get("elevenlabs_api_key")),
            "elevenlabs_agent_id": config.get("agent_id"),
            "elevenlabs_voice_id": config.get("voice_id"),
            "provider_credential": mask(secrets.get(key_field.get(trunk.ai_provider, ""))),
            "provider_config": config,
            "credentials_verified": trunk.credentials_verified,
            "max_concurrent_calls": trunk.max_concurrent_calls,
            "max_call_duration": trunk.max_call_duration,
            "webhook_events": list(trunk.webhook_events or []),
            "total_calls": calls.total_calls,
            "last_call_at": calls.last_call_at.isoformat().replace("+00:00", "Z")
            if calls.last_call_at
            else None,
            "avg_latency": calls.avg_latency,
            "twilio_account_sid": secrets.get("twilio_account_sid"),
            "twilio_auth_token": mask(secrets.get("twilio_auth_token")),
            "telnyx_api_key": mask(secrets.get("telnyx_api_key")),
            "telnyx_public_key": secrets.get("telnyx_public_key"),
            "telnyx_mode": secrets.get("telnyx_mode") or "texml",
            "webhook_urls": CarrierWebhookUrls(**carrier_webhook_urls(public_url, trunk.id))
            if public_url
            else None,
            "created_at": trunk.created_at.isoformat().replace("+00:00", "Z"),
            "updated_at": trunk.updated_at.isoformat().replace("+00:00", "Z"),
        }
    )
    return view.model_dump(mode="json")


def _int_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise InvalidRequest("invalid_parameter", f"{name} must be a positive integer")
    return int(raw)


async def _one(state: TrunkState, status: int = 200) -> tuple[Response, int]:
    services = get_services()
    settings = services.settings
    stats = (await services.calls.trunk_stats([state.trunk.id])).get(state.trunk.id)
    return jsonify(trunk_out(state, settings.sip_domain, settings.http_base_url, stats)), status


def _changes(body: dict[str, Any], model: type[TrunkCreate] | type[TrunkUpdate]) -> dict[str, Any]:
    parsed = parse_model(model, body)
    return parsed.model_dump(exclude_unset=True)


@api.post("/trunks")
async def create_trunk() -> tuple[Response, int]:
    """Create a trunk (201)."""
    who = require_scope("write")
    changes = _changes(await json_body(), TrunkCreate)
    state = await get_services().trunks.create(who.account_id, changes)
    return await _one(state, 201)


@api.get("/trunks")
async def list_trunks() -> Response:
    """List trunks: ``limit``, ``cursor``, ``status``, ``sort=created_at``."""
    who = require_scope("read")
    sort = request.args.get("sort", "-created_at")
    if sort not in ("created_at", "-created_at"):
        raise InvalidRequest("invalid_parameter", "sort must be created_at or -created_at")
    page = await get_services().trunks.list(
        who.account_id,
        limit=_int_arg("limit", 20),
        cursor=request.args.get("cursor") or None,
        status=request.args.get("status") or None,
        oldest_first=sort == "created_at",
    )
    domain = get_services().settings.sip_domain
    base_url = get_services().settings.http_base_url
    stats = await get_services().calls.trunk_stats([s.trunk.id for s in page.items])
    return jsonify(
        {
            "data": [trunk_out(s, domain, base_url, stats.get(s.trunk.id)) for s in page.items],
            "next_cursor": page.next_cursor,
            "has_more": page.has_more,
        }
    )


@api.get("/trunks/<trunk_id>")
async def get_trunk(trunk_id: str) -> tuple[Response, int]:
    """One trunk."""
    who = require_scope("read")
    return await _one(await get_services().trunks.get(who.account_id, trunk_id))


@api.patch("/trunks/<trunk_id>")
async def update_trunk(trunk_id: str) -> tuple[Response, int]:
    """Change a trunk; ``null`` clears a field."""
    who = require_scope("write")
    changes = _changes(await json_body(), TrunkUpdate)
    return await _one(await get_services().trunks.update(who.account_id, trunk_id, changes))


@api.delete("/trunks/<trunk_id>")
async def delete_trunk(trunk_id: str) -> Response:
    """Delete a trunk."""
    who = require_scope("write")
    await get_services().trunks.delete(who.account_id, trunk_id)
    return jsonify({"id": trunk_id, "object": "trunk", "deleted": True})


@api.post("/trunks/<trunk_id>/rotate-sip-password")
async def rotate_sip_password(trunk_id: str) -> Response:
    """A new SIP password, shown once; the old one stops working at once."""
    who = require_scope("write")
    state = await get_services().trunks.rotate_password(who.account_id, trunk_id)
    return jsonify(
        {
            "id": state.trunk.id,
            "sip_username": state.trunk.sip_username,
            "sip_password": state.sip_password,
        }
    )


@api.post("/trunks/<trunk_id>/activate")
async def activate_trunk(trunk_id: str) -> tuple[Response, int]:
    """Accept calls again (also clears an error status)."""
    who = require_scope("write")
    return await _one(await get_services().trunks.set_active(who.account_id, trunk_id, True))


@api.post("/trunks/<trunk_id>/deactivate")
async def deactivate_trunk(trunk_id: str) -> tuple[Response, int]:
    """Refuse new calls (480) until activated."""
    who = require_scope("write")
    return await _one(await get_services().trunks.set_active(who.account_id, trunk_id, False))


@api.post("/credentials/generate")
async def generate_credentials() -> Response:
    """A cryptographically random SIP username and password pair."""
    require_scope("write")
    username, password = get_services().trunks.generate_credentials()
    return jsonify({"sip_username": username, "sip_password": password})
