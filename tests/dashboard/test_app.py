"""The dashboard through Quart's test client: scoping, sessions and hostile input.

The app is the real ``create_app`` over real services and a SQLite database in a temporary
directory; only the HTTP transport is Quart's in-process one (the browser tests cover the
real server).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from gateway.app import create_app
from gateway.database import close_database, open_database
from gateway.secret_box import Keyring
from gateway.services import Services
from gateway.settings import Settings
from tests.dashboard.calls_seed import record_call

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Gateway:
    app: Quart
    services: Services


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    url = f"sqlite://{tmp_path / 'telepath.db'}"
    await open_database(url)
    settings = Settings(database_url=url, trusted_proxies=("127.0.0.0/8",))
    services = Services.build(settings, Keyring(b"k" * 32))
    try:
        yield Gateway(create_app(services), services)
    finally:
        await services.close()
        await close_database()


async def _token(client: Client, path: str = "/dashboard/sign-in") -> str:
    page = await client.get(path)
    found = _CSRF.search(await page.get_data(as_text=True))
    assert found is not None
    return found.group(1)


async def _sign_in(client: Client, key: str) -> str:
    token = await _token(client)
    response = await client.post(
        "/dashboard/sign-in", form={"csrf_token": token, "api_key": key, "next": ""}
    )
    assert response.status_code == 302, await response.get_data(as_text=True)
    return await _token(client, "/dashboard/connections")


async def test_accounts_see_only_their_own_trunks_and_calls(gateway: Gateway) -> None:
    services = gateway.services
    mine = await services.api_keys.create("alpha", "a")
    theirs = await services.api_keys.create("beta", "b")
    their_account = theirs.key.account_id  # type: ignore[attr-defined]
    their_trunk = await services.trunks.create(
        their_account, {"ai_provider": "echo", "sip_username": "beta-bot"}
    )
    their_call = await record_call(account_id=their_account, trunk_id=their_trunk.trunk.id)
    client = gateway.app.test_client()
    token = await _sign_in(client, mine.secret)

    listing = await (await client.get("/dashboard/connections")).get_data(as_text=True)
    assert "beta-bot" not in listing
    assert "No connections yet" in listing
    assert (await client.get(f"/dashboard/connections/{their_trunk.trunk.id}")).status_code == 404
    assert (await client.get(f"/dashboard/calls/{their_call.call_id}")).status_code == 404
    feed = await (await client.get("/dashboard/calls/feed")).get_json()
    assert feed["total"] == 0
    refused = await client.post(
        f"/dashboard/connections/{their_trunk.trunk.id}/delete", form={"csrf_token": token}
    )
    assert refused.status_code == 404
    assert await services.trunks.find_by_id(their_trunk.trunk.id) is not None
    revoke = await client.post(
        f"/dashboard/developers/keys/{theirs.key.id}/revoke", form={"csrf_token": token}
    )
    assert revoke.status_code == 404
    assert (await services.api_keys.authenticate(theirs.secret)).key_id == theirs.key.id


async def test_a_revoked_key_ends_its_sessions(gateway: Gateway) -> None:
    created = await gateway.services.api_keys.create("alpha", "a")
    client = gateway.app.test_client()
    await _sign_in(client, created.secret)
    assert (await client.get("/dashboard/connections")).status_code == 200
    await gateway.services.api_keys.revoke(created.key.id)
    after = await client.get("/dashboard/connections")
    assert after.status_code == 302
    assert after.headers["Location"].startswith("/dashboard/sign-in")
    feed = await client.get("/dashboard/calls/feed")
    assert feed.status_code == 401


async def test_a_tampered_cookie_is_no_session(gateway: Gateway) -> None:
    created = await gateway.services.api_keys.create("alpha", "a")
    client = gateway.app.test_client()
    await _sign_in(client, created.secret)
    assert client.cookie_jar is not None
    cookies = [c for c in client.cookie_jar if c.name == "telepath_dashboard"]
    assert len(cookies) == 1 and cookies[0].value
    # Change the payload (a different key id) but keep the old signature.
    payload, _, signature = cookies[0].value.partition(".")
    cookies[0].value = (
        payload[:-2] + ("AA" if not payload.endswith("AA") else "BB") + "." + signature
    )
    response = await client.get("/dashboard/connections")
    assert response.status_code == 302


async def test_secure_cookie_behind_a_trusted_https_proxy(gateway: Gateway) -> None:
    async def cookie_for(source: str, scheme: str = "http") -> str:
        client = gateway.app.test_client()
        response = await client.get(
            "/dashboard/sign-in",
            headers={"X-Forwarded-Proto": "https"},
            scope_base={"client": (source, 50000)},
            scheme=scheme,
        )
        return str(response.headers["Set-Cookie"])

    trusted = await cookie_for("127.0.0.1")
    assert "; Secure" in trusted
    assert "HttpOnly" in trusted
    assert "SameSite=Strict" in trusted
    # Anyone else's X-Forwarded-Proto is not believed.
    assert "Secure" not in await cookie_for("203.0.113.9")
    # Straight HTTPS.
    assert "; Secure" in await cookie_for("203.0.113.9", scheme="https")


async def test_sign_in_redirects_only_inside_the_dashboard(gateway: Gateway) -> None:
    created = await gateway.services.api_keys.create("alpha", "a")
    client = gateway.app.test_client()
    for target, expected in (
        ("//evil.example/phish", "/dashboard/connections"),
        ("https://evil.example/", "/dashboard/connections"),
        ("/dashboard/analytics?hours=48", "/dashboard/analytics?hours=48"),
    ):
        token = await _token(client)
        response = await client.post(
            "/dashboard/sign-in",
            form={"csrf_token": token, "api_key": created.secret, "next": target},
        )
        assert response.headers["Location"] == expected


async def test_hostile_input_gets_clear_errors(gateway: Gateway) -> None:
    created = await gateway.services.api_keys.create("alpha", "a")
    client = gateway.app.test_client()
    token = await _sign_in(client, created.secret)

    bad_headers = await client.post(
        "/dashboard/connections/new",
        form={
            "csrf_token": token,
            "ai_provider": "custom",
            "sip_username": "hdr-bot",
            "custom_endpoint": "wss://agent.example/voice",
            "custom_headers": "no colon here",
        },
    )
    assert bad_headers.status_code == 400
    assert "one &#39;Name: value&#39; per line" in await bad_headers.get_data(as_text=True)

    bad_provider = await client.post(
        "/dashboard/connections/new",
        form={"csrf_token": token, "ai_provider": "<script>", "sip_username": "x-bot"},
    )
    assert bad_provider.status_code == 400
    assert "<script>" not in await bad_provider.get_data(as_text=True)

    bad_date = await client.get("/dashboard/calls?from=yesterday")
    assert bad_date.status_code == 400
    assert "from must be a date" in await bad_date.get_data(as_text=True)
    bad_status = await client.get("/dashboard/calls?status=exploded")
    assert bad_status.status_code == 400
    odd_hours = await client.get("/dashboard/analytics?hours=9999999")
    assert odd_hours.status_code == 200
    assert "last 24 hours" in await odd_hours.get_data(as_text=True)
    missing = await client.get("/dashboard/calls/call_nope")
    assert missing.status_code == 404
    assert "No call with id" in await missing.get_data(as_text=True)
    # Nothing was created by any of it.
    assert (await gateway.services.trunks.list(created.key.account_id)).items == []  # type: ignore[attr-defined]


async def test_read_only_key_cannot_create_keys(gateway: Gateway) -> None:
    viewer = await gateway.services.api_keys.create("alpha", "ro", ["read"])
    client = gateway.app.test_client()
    token = await _sign_in(client, viewer.secret)
    page = await (await client.get("/dashboard/developers")).get_data(as_text=True)
    assert "Create a key" not in page
    response = await client.post(
        "/dashboard/developers/keys", form={"csrf_token": token, "name": "x", "scopes": "write"}
    )
    assert response.status_code == 403
    assert "read-only" in await response.get_data(as_text=True)
    assert len(await gateway.services.api_keys.list(viewer.key.account_id)) == 1  # type: ignore[attr-defined]


async def test_error_status_shows_red_with_its_reason(gateway: Gateway) -> None:
    created = await gateway.services.api_keys.create("alpha", "a")
    account = created.key.account_id  # type: ignore[attr-defined]
    state = await gateway.services.trunks.create(
        account, {"ai_provider": "openai", "sip_username": "err-bot", "openai_api_key": "sk-x"}
    )
    await gateway.services.trunks.mark_error(state.trunk.id, "OpenAI refused the API key (401)")
    client = gateway.app.test_client()
    await _sign_in(client, created.secret)
    page = await (await client.get("/dashboard/connections")).get_data(as_text=True)
    card = page[page.index(f'id="card-{state.trunk.id}"') :]
    assert re.search(
        r'<span class="badge bad">Error</span>\s*<span class="reason">'
        r"OpenAI refused the API key \(401\)</span>",
        card,
    )
    assert "Activate" in card  # an errored trunk can be re-activated


async def test_elevenlabs_and_custom_connections_from_the_form(gateway: Gateway) -> None:
    created = await gateway.services.api_keys.create("alpha", "a")
    account = created.key.account_id  # type: ignore[attr-defined]
    client = gateway.app.test_client()
    token = await _sign_in(client, created.secret)
    eleven = await client.post(
        "/dashboard/connections/new",
        form={
            "csrf_token": token,
            "ai_provider": "elevenlabs",
            "elevenlabs_api_key": "xi-secret-key-0001",
            "elevenlabs_agent_id": "agent_abc",
            "elevenlabs_voice_id": "voice_xyz",
            "sip_username": "eleven-bot",
            "sip_password": "Correct-Horse-42-battery",
        },
    )
    assert eleven.status_code == 200
    assert "Correct-Horse-42-battery" in await eleven.get_data(as_text=True)
    custom = await client.post(
        "/dashboard/connections/new",
        form={
            "csrf_token": token,
            "ai_provider": "custom",
            "custom_endpoint": "wss://agent.example/voice",
            "custom_headers": "Authorization: Bearer tok-123456789",
            "custom_dialect": "twilio",
            "custom_system_prompt": "Answer in French.",
            "sip_username": "custom-bot",
        },
    )
    assert custom.status_code == 200
    states = {s.trunk.sip_username: s for s in (await gateway.services.trunks.list(account)).items}
    assert states["eleven-bot"].trunk.provider_config == {
        "agent_id": "agent_abc",
        "voice_id": "voice_xyz",
    }
    assert states["eleven-bot"].secrets["elevenlabs_api_key"] == "xi-secret-key-0001"
    bot = states["custom-bot"]
    assert bot.custom_headers == {"Authorization": "Bearer tok-123456789"}
    assert bot.trunk.provider_config == {"dialect": "twilio"}
    assert bot.trunk.system_prompt == "Answer in French."
    # The connection page masks the header value.
    page = await (await client.get(f"/dashboard/connections/{bot.trunk.id}")).get_data(as_text=True)
    assert "tok-123456789" not in page
    assert "Twilio Media Streams" in page
