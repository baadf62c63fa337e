"""Trunk lifecycle on a live server: pagination, isolation, PATCH semantics, rotation."""

from __future__ import annotations

from typing import Any

import requests

from ingress.sip.digest import Algorithm, ha1
from tests.support.db_peek import fetch_one
from tests.support.live_server import LiveServer

BASE = {"ai_provider": "echo", "sip_password": "s3cur3P@ssw0rd!"}


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _create(server: LiveServer, key: str, username: str, **extra: Any) -> dict[str, Any]:
    response = requests.post(
        server.url + "/v1/trunks",
        json={**BASE, "sip_username": username, **extra},
        headers=_auth(key),
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_cursor_pagination_newest_first_and_oldest_first(
    server: LiveServer, fresh_key: str
) -> None:
    made = [_create(server, fresh_key, f"page-{i:02d}")["id"] for i in range(7)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "limit=3" + (f"&cursor={cursor}" if cursor else "")
        body = requests.get(
            f"{server.url}/v1/trunks?{query}", headers=_auth(fresh_key), timeout=10
        ).json()
        pages += 1
        assert len(body["data"]) <= 3
        seen.extend(t["id"] for t in body["data"])
        assert body["has_more"] == (body["next_cursor"] is not None)
        if not body["has_more"]:
            break
        cursor = body["next_cursor"]
    assert pages == 3
    assert seen == list(reversed(made))
    oldest = requests.get(
        f"{server.url}/v1/trunks?limit=100&sort=created_at", headers=_auth(fresh_key), timeout=10
    ).json()
    assert [t["id"] for t in oldest["data"]] == made


def test_status_filter_and_activation(server: LiveServer, fresh_key: str) -> None:
    a = _create(server, fresh_key, "status-a")
    b = _create(server, fresh_key, "status-b")
    off = requests.post(
        f"{server.url}/v1/trunks/{b['id']}/deactivate", headers=_auth(fresh_key), timeout=10
    )
    assert off.status_code == 200 and off.json()["status"] == "inactive"
    inactive = requests.get(
        f"{server.url}/v1/trunks?status=inactive", headers=_auth(fresh_key), timeout=10
    ).json()
    active = requests.get(
        f"{server.url}/v1/trunks?status=active", headers=_auth(fresh_key), timeout=10
    ).json()
    assert [t["id"] for t in inactive["data"]] == [b["id"]]
    assert [t["id"] for t in active["data"]] == [a["id"]]
    on = requests.post(
        f"{server.url}/v1/trunks/{b['id']}/activate", headers=_auth(fresh_key), timeout=10
    )
    assert on.json()["status"] == "active"


def test_accounts_are_isolated(server: LiveServer, fresh_key: str) -> None:
    mine = _create(server, fresh_key, "iso-mine")
    other = server.api_key(account="iso-other")
    _create(server, other, "iso-theirs")
    listed = requests.get(f"{server.url}/v1/trunks", headers=_auth(fresh_key), timeout=10).json()
    assert [t["id"] for t in listed["data"]] == [mine["id"]]
    theirs = requests.get(f"{server.url}/v1/trunks", headers=_auth(other), timeout=10).json()
    assert "iso-mine" not in [t["sip_username"] for t in theirs["data"]]


def test_patch_null_clears_and_lists_replace(server: LiveServer, api_key: str) -> None:
    trunk = _create(
        server,
        api_key,
        "patchy",
        webhook_url="https://example.com/hook",
        webhook_secret="whsec-123456789",
        inbound_numbers=["+14155550100", "+14155550101"],
        system_prompt="Be brief.",
        provider_config={"delay_ms": 100, "greeting": "Hi"},
    )
    url = f"{server.url}/v1/trunks/{trunk['id']}"
    r = requests.patch(
        url,
        json={"webhook_url": None, "inbound_numbers": ["+15550199000"]},
        headers=_auth(api_key),
        timeout=10,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["webhook_url"] is None
    assert body["inbound_numbers"] == ["+15550199000"]
    assert body["system_prompt"] == "Be brief."  # untouched fields stay
    assert body["webhook_secret"] == "****6789"
    r = requests.patch(
        url,
        json={"system_prompt": None, "webhook_secret": None, "provider_config": {"greeting": None}},
        headers=_auth(api_key),
        timeout=10,
    )
    body = r.json()
    assert body["system_prompt"] is None and body["webhook_secret"] is None
    assert body["provider_config"] == {"delay_ms": 100}
    r = requests.patch(url, json={"inbound_numbers": None}, headers=_auth(api_key), timeout=10)
    assert r.json()["inbound_numbers"] == []
    # Required fields cannot be cleared.
    r = requests.patch(url, json={"name": None}, headers=_auth(api_key), timeout=10)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_field"
    # Switching provider enforces the new provider's requirements on the merged trunk.
    r = requests.patch(url, json={"ai_provider": "openai"}, headers=_auth(api_key), timeout=10)
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_required_field"
    r = requests.patch(
        url,
        json={"ai_provider": "openai", "openai_api_key": "sk-new-key-5678"},
        headers=_auth(api_key),
        timeout=10,
    )
    assert r.status_code == 200 and r.json()["openai_api_key"] == "****5678"
    assert (
        requests.get(url, headers=_auth(api_key), timeout=10).json()["updated_at"]
        >= trunk["updated_at"]
    )


def test_rotation_invalidates_the_old_ha1_at_once(server: LiveServer, api_key: str) -> None:
    trunk = _create(server, api_key, "rotator")
    realm = trunk["sip_realm"]

    def stored() -> dict[str, Any]:
        row = fetch_one(
            server.database_url, "SELECT ha1_md5, ha1_sha256 FROM trunks WHERE id = $1", trunk["id"]
        )
        assert row is not None
        return row

    assert stored()["ha1_md5"] == ha1("rotator", realm, "s3cur3P@ssw0rd!", Algorithm.MD5)
    r = requests.post(
        f"{server.url}/v1/trunks/{trunk['id']}/rotate-sip-password",
        headers=_auth(api_key),
        timeout=10,
    )
    assert r.status_code == 200
    new_password = r.json()["sip_password"]
    assert new_password != "s3cur3P@ssw0rd!" and len(new_password) >= 20
    row = stored()
    assert row["ha1_md5"] == ha1("rotator", realm, new_password, Algorithm.MD5)
    assert row["ha1_sha256"] == ha1("rotator", realm, new_password, Algorithm.SHA256)
    assert row["ha1_md5"] != ha1("rotator", realm, "s3cur3P@ssw0rd!", Algorithm.MD5)
    assert (
        requests.get(
            f"{server.url}/v1/trunks/{trunk['id']}", headers=_auth(api_key), timeout=10
        ).json()["sip_password"]
        == "********"
    )


def test_username_change_needs_a_password(server: LiveServer, api_key: str) -> None:
    trunk = _create(server, api_key, "renamer")
    url = f"{server.url}/v1/trunks/{trunk['id']}"
    r = requests.patch(url, json={"sip_username": "renamed"}, headers=_auth(api_key), timeout=10)
    assert r.status_code == 400 and "sip_password" in r.json()["error"]["message"]
    r = requests.patch(
        url,
        json={"sip_username": "renamed", "sip_password": "An0ther-g00d-one"},
        headers=_auth(api_key),
        timeout=10,
    )
    assert r.status_code == 200 and r.json()["origination_uri"] == "sip:renamed@sip.telepath.local"


def test_delete_and_generate_credentials(server: LiveServer, api_key: str) -> None:
    trunk = _create(server, api_key, "deleteme")
    r = requests.delete(f"{server.url}/v1/trunks/{trunk['id']}", headers=_auth(api_key), timeout=10)
    assert r.json() == {"id": trunk["id"], "object": "trunk", "deleted": True}
    assert (
        requests.get(
            f"{server.url}/v1/trunks/{trunk['id']}", headers=_auth(api_key), timeout=10
        ).status_code
        == 404
    )
    pairs = [
        requests.post(
            f"{server.url}/v1/credentials/generate", headers=_auth(api_key), timeout=10
        ).json()
        for _ in range(3)
    ]
    assert len({p["sip_username"] for p in pairs}) == 3
    for pair in pairs:
        # A generated pair is always accepted by create.
        _create(server, api_key, pair["sip_username"], sip_password=pair["sip_password"])


def test_rate_limit_headers_on_every_response(server: LiveServer, api_key: str) -> None:
    ok = requests.get(f"{server.url}/v1/trunks", headers=_auth(api_key), timeout=10)
    bad = requests.get(f"{server.url}/v1/trunks/trunk_nope", headers=_auth(api_key), timeout=10)
    for response in (ok, bad):
        assert response.headers["X-RateLimit-Limit"] == "6000"
        assert int(response.headers["X-RateLimit-Remaining"]) < 6000
        assert int(response.headers["X-RateLimit-Reset"]) % 60 == 0


def test_every_documented_provider_option_is_accepted(server: LiveServer, api_key: str) -> None:
    """The options docs/agent-protocol.md and the adapters read can be set through the API."""
    custom = _create(
        server,
        api_key,
        "opts-custom",
        ai_provider="custom",
        custom_endpoint="wss://agent.example.com/voice",
        custom_headers={"Authorization": "Bearer agent-token-1234"},
        provider_config={
            "dialect": "twilio",
            "accept_timeout": 1.5,
            "binary_audio": False,
            "vad_events": True,
            "send_queue_frames": 50,
            "max_payload_bytes": 524288,
            "max_pending_marks": 1024,
            "max_protocol_errors": 100,
            "account_sid": "AC" + "0" * 32,
            "codecs": ["g722", "pcmu"],
        },
    )
    assert custom["provider_config"]["dialect"] == "twilio"
    assert custom["custom_headers"] == {"Authorization": "****1234"}
    openai = _create(
        server,
        api_key,
        "opts-openai",
        ai_provider="openai",
        openai_api_key="sk-test-opts-0001",
        provider_config={
            "model": "gpt-realtime",
            "voice": "marin",
            "greeting": "Hello!",
            "turn_detection": "semantic_vad",
            "eagerness": "low",
            "interrupt_response": True,
            "idle_timeout_ms": 6000,
            "create_response": True,
            "transcription_model": "gpt-4o-mini-transcribe",
            "dtmf_response": False,
            "noise_reduction": "far_field",
            "enable_end_call": True,
            "enable_transfer": True,
            "transfer_target": "+14155550100",
        },
    )
    assert openai["provider_config"]["idle_timeout_ms"] == 6000
