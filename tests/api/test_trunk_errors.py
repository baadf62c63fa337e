"""Every error code of the trunk API, in the seed's error format, on a live server."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.support.live_server import LiveServer, telepath

GOOD = {
    "name": "Err test",
    "ai_provider": "openai",
    "sip_password": "s3cur3P@ssw0rd!",
    "openai_api_key": "sk-openai-abcd1234",
}


def _post(
    server: LiveServer, key: str, body: Any, path: str = "/v1/trunks", raw: bytes | None = None
) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if raw is not None:
        return requests.post(server.url + path, data=raw, headers=headers, timeout=10)
    return requests.post(server.url + path, json=body, headers=headers, timeout=10)


def _error(response: requests.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code, body
    assert body["error"]["status"] == status
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return str(body["error"]["message"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({k: v for k, v in GOOD.items() if k != "ai_provider"}, "ai_provider"),
        ({**GOOD, "openai_api_key": None}, "openai_api_key"),
        (
            {**GOOD, "ai_provider": "elevenlabs", "elevenlabs_api_key": "el-key-123456"},
            "elevenlabs_agent_id",
        ),
        (
            {**GOOD, "ai_provider": "elevenlabs", "elevenlabs_agent_id": "agent_1"},
            "elevenlabs_api_key",
        ),
        ({**GOOD, "ai_provider": "custom"}, "custom_endpoint"),
    ],
)
def test_missing_required_field_names_the_field(
    server: LiveServer, api_key: str, body: dict[str, Any], field: str
) -> None:
    body = {k: v for k, v in body.items() if v is not None}
    body["sip_username"] = f"miss-{field.replace('_', '-')}"
    message = _error(_post(server, api_key, body), 400, "missing_required_field")
    assert field in message


def test_missing_sip_username(server: LiveServer, api_key: str) -> None:
    assert "sip_username" in _error(_post(server, api_key, GOOD), 400, "missing_required_field")


@pytest.mark.parametrize(
    "username", ["ab", "a" * 31, "bad_name", "bad name", "-leading", "trailing-", "ünïcode"]
)
def test_invalid_sip_username(server: LiveServer, api_key: str, username: str) -> None:
    _error(_post(server, api_key, {**GOOD, "sip_username": username}), 400, "invalid_sip_username")


@pytest.mark.parametrize(
    "password", ["short1!", "password123", "12345678", "aaaaaaaaaa", "abcdefgh", "abcabcabcabc"]
)
def test_invalid_sip_password(server: LiveServer, api_key: str, password: str) -> None:
    message = _error(
        _post(server, api_key, {**GOOD, "sip_username": "weakpw", "sip_password": password}),
        400,
        "invalid_sip_password",
    )
    assert "sip_password" in message


@pytest.mark.parametrize(
    "number",
    ["14155550100", "+0123456789", "+1 415 555", "tel:+14155550100", "+1415555010012345678"],
)
def test_invalid_phone_number(server: LiveServer, api_key: str, number: str) -> None:
    _error(
        _post(server, api_key, {**GOOD, "sip_username": "badnum", "inbound_numbers": [number]}),
        400,
        "invalid_phone_number",
    )


@pytest.mark.parametrize(
    "extra",
    [
        {"ai_provider": "custom", "custom_endpoint": "https://agent.example.com/ws"},
        {"ai_provider": "custom", "custom_endpoint": "not a url"},
        {"webhook_url": "ftp://example.com/hook"},
        {"webhook_url": "wss://example.com/hook"},
    ],
)
def test_invalid_url(server: LiveServer, api_key: str, extra: dict[str, str]) -> None:
    _error(_post(server, api_key, {**GOOD, "sip_username": "badurl", **extra}), 400, "invalid_url")


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"", b"\xff\xfe"])
def test_invalid_json(server: LiveServer, api_key: str, raw: bytes) -> None:
    _error(_post(server, api_key, None, raw=raw), 400, "invalid_json")


def test_unknown_field(server: LiveServer, api_key: str) -> None:
    message = _error(
        _post(server, api_key, {**GOOD, "sip_username": "unk", "colour": "blue"}),
        400,
        "unknown_field",
    )
    assert "colour" in message
    _error(
        _post(
            server, api_key, {**GOOD, "sip_username": "unk2", "provider_config": {"temperature": 2}}
        ),
        400,
        "unknown_field",
    )


def test_conflict_is_global_and_case_insensitive(server: LiveServer, api_key: str) -> None:
    assert _post(server, api_key, {**GOOD, "sip_username": "Taken-Name"}).status_code == 201
    _error(_post(server, api_key, {**GOOD, "sip_username": "taken-name"}), 409, "conflict")
    other = server.api_key(account="conflict-other-account")
    # Usernames route calls, so they are unique across the whole deployment.
    _error(_post(server, other, {**GOOD, "sip_username": "TAKEN-NAME"}), 409, "conflict")


def test_trunk_not_found_also_for_other_accounts(server: LiveServer, api_key: str) -> None:
    created = _post(server, api_key, {**GOOD, "sip_username": "mine-only"}).json()
    stranger = server.api_key(account="nf-stranger")
    auth = {"Authorization": f"Bearer {stranger}"}
    for method, path in [
        ("GET", f"/v1/trunks/{created['id']}"),
        ("PATCH", f"/v1/trunks/{created['id']}"),
        ("DELETE", f"/v1/trunks/{created['id']}"),
        ("POST", f"/v1/trunks/{created['id']}/rotate-sip-password"),
        ("POST", f"/v1/trunks/{created['id']}/activate"),
        ("GET", "/v1/trunks/trunk_doesnotexist"),
    ]:
        response = requests.request(
            method, server.url + path, headers=auth, json={"name": "x"}, timeout=10
        )
        _error(response, 404, "trunk_not_found")


@pytest.mark.parametrize(
    "header", [None, "Bearer", "Bearer sk_live_wrong", "Basic abc", "Bearer " + "x" * 500]
)
def test_unauthorized(server: LiveServer, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    _error(
        requests.get(server.url + "/v1/trunks", headers=headers, timeout=10), 401, "unauthorized"
    )


def test_revoked_key_is_unauthorized_at_once(server: LiveServer) -> None:
    key = server.api_key(account="revoker")
    auth = {"Authorization": f"Bearer {key}"}
    assert requests.get(server.url + "/v1/trunks", headers=auth, timeout=10).status_code == 200
    listing = telepath("apikey", "list", "--database", server.database_url, env=server.env).stdout
    key_id = next(line.split()[0] for line in listing.splitlines() if key[:12] in line)
    telepath("apikey", "revoke", key_id, "--database", server.database_url, env=server.env)
    _error(requests.get(server.url + "/v1/trunks", headers=auth, timeout=10), 401, "unauthorized")


def test_read_only_key_gets_insufficient_scope_on_writes(server: LiveServer) -> None:
    key = server.api_key(account="reader", scopes="read")
    auth = {"Authorization": f"Bearer {key}"}
    assert requests.get(server.url + "/v1/trunks", headers=auth, timeout=10).status_code == 200
    _error(_post(server, key, {**GOOD, "sip_username": "ro-try"}), 403, "insufficient_scope")
    _error(
        requests.post(server.url + "/v1/credentials/generate", headers=auth, timeout=10),
        403,
        "insufficient_scope",
    )


def test_unknown_route_and_method_use_the_error_format(server: LiveServer, api_key: str) -> None:
    auth = {"Authorization": f"Bearer {api_key}"}
    _error(
        requests.get(server.url + "/v1/nothing-here", headers=auth, timeout=10), 404, "not_found"
    )
    _error(
        requests.put(server.url + "/v1/trunks", headers=auth, timeout=10), 405, "method_not_allowed"
    )


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=101", "limit=abc", "status=weird", "sort=name", "cursor=garbage"]
)
def test_bad_list_parameters(server: LiveServer, api_key: str, query: str) -> None:
    response = requests.get(
        f"{server.url}/v1/trunks?{query}",
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] in ("invalid_parameter", "invalid_cursor")
