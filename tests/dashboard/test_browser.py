"""The dashboard in headless Chromium against a real ``telepath serve`` on loopback.

Each test drives the pages as an operator would (labels, buttons, dialogs), checks what
the server then holds (through the API or the database), and saves a screenshot of each
page under ``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Dialog, Locator, Page, expect

from gateway.api.schemas import TrunkUpdate, parse_model
from gateway.services.errors import ServiceError
from gateway.services.sip_credentials import digest_secrets
from models import Trunk
from tests.dashboard.calls_seed import account_of, gateway_database, record_call
from tests.dashboard.conftest import api, create_trunk, screenshot, sign_in
from tests.sip_interop.support import run_sipp, sipp_messages, sipp_ok_or_logs
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.slow

SIP_DOMAIN = "sip.telepath.local"  # the default --sip-domain


async def _stored_ha1(username: str, database_url: str) -> str:
    async with gateway_database(database_url):
        trunk = await Trunk.get(sip_username_key=username.lower())
        return trunk.ha1_md5


def nav(tab: Page, name: str) -> Locator:
    """A link of the main navigation."""
    return tab.get_by_role("navigation", name="Main").get_by_role("link", name=name)


def _accept_dialogs(tab: Page) -> list[str]:
    seen: list[str] = []

    async def accept(dialog: Dialog) -> None:
        seen.append(dialog.message)
        await dialog.accept()

    tab.on("dialog", accept)
    return seen


async def test_sign_in_rejects_a_bad_key_and_signs_out(
    page: Page, server: LiveServer, write_key: str
) -> None:
    await page.goto("/dashboard/calls")
    await expect(page).to_have_url(re.compile(r"/dashboard/sign-in\?next=/dashboard/calls"))
    await page.get_by_label("API key").fill("sk_live_not-a-real-key")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("not valid")
    await screenshot(page, "sign_in_error")

    await page.get_by_label("API key").fill(write_key)
    await page.get_by_role("button", name="Sign in").click()
    # Back to where the sign-in started.
    await expect(page).to_have_url(re.compile(r"/dashboard/calls$"))
    cookies = await page.context.cookies()
    session = next(c for c in cookies if c["name"] == "telepath_dashboard")
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert session["path"] == "/dashboard"
    assert write_key not in session["value"]

    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(re.compile(r"/dashboard/sign-in"))
    await page.goto("/dashboard/connections")
    await expect(page).to_have_url(re.compile(r"/dashboard/sign-in"))
    await screenshot(page, "sign_in")


async def test_create_openai_connection_with_generated_credentials(
    page: Page, server: LiveServer, write_key: str
) -> None:
    await sign_in(page, write_key)
    await page.get_by_role("link", name="Create connection").first.click()
    await page.get_by_label("AI provider").select_option("openai")
    # Only the chosen provider's fields are shown.
    await expect(page.get_by_label("Agent ID")).to_be_hidden()
    await page.get_by_label("OpenAI API key").fill("sk-proj-test-0123456789abcdef")
    await page.get_by_label("Model", exact=True).fill("gpt-realtime")
    await page.get_by_label("Voice", exact=True).fill("alloy")
    await page.locator("#f-system_prompt-openai").fill("You are the front desk of a dental clinic.")
    await page.get_by_label("Name", exact=True).fill("Front desk")
    await page.get_by_label("Inbound numbers").fill("+14155550100, +14155550101")
    await page.get_by_role("button", name="Generate credentials").click()
    username_box = page.get_by_label("SIP username")
    await expect(username_box).not_to_have_value("")
    username = await username_box.input_value()
    generated = await page.get_by_label("SIP password", exact=True).input_value()
    assert len(generated) >= 16
    await screenshot(page, "connection_form")

    await page.get_by_role("button", name="Create connection").click()
    await expect(page.get_by_role("heading", name="Connection created")).to_be_visible()
    await expect(page.get_by_role("alert")).to_contain_text("will not be shown again")
    shown = await page.locator("#sip-password").input_value()
    assert shown == generated
    await expect(page.locator("#origination-uri")).to_have_value(f"sip:{username}@{SIP_DOMAIN}")
    await page.get_by_role("button", name="Copy SIP password").click()
    assert await page.evaluate("navigator.clipboard.readText()") == generated
    await screenshot(page, "connection_created")

    # The server keeps only the digest of exactly that password.
    ha1 = await _stored_ha1(username, server.database_url)
    assert ha1 == digest_secrets(username, SIP_DOMAIN, generated).ha1_md5

    listed = api(server, write_key).get(f"{server.url}/v1/trunks", timeout=10).json()["data"]
    mine = next(t for t in listed if t["sip_username"] == username)
    assert mine["ai_provider"] == "openai"
    assert mine["provider_config"]["model"] == "gpt-realtime"
    assert mine["inbound_numbers"] == ["+14155550100", "+14155550101"]
    assert mine["openai_api_key"] == "****cdef"

    await page.get_by_role("link", name="I have saved it").click()
    await expect(page.get_by_role("heading", name="Front desk")).to_be_visible()
    # Leaving the page, the password is gone for good.
    assert generated not in await page.content()
    await nav(page, "Agents").click()
    card = page.locator(f"#card-{mine['id']}")
    await expect(card.locator(".badge")).to_have_text("Active")
    await expect(card).to_contain_text("OpenAI Realtime")
    await expect(card).to_contain_text("gpt-realtime")
    assert generated not in await page.content()
    await screenshot(page, "connections")


async def test_a_call_appears_in_the_logs_live_and_its_page_shows_the_timeline(
    page: Page, server: LiveServer, write_key: str
) -> None:
    trunk = create_trunk(server, write_key, "logs-bot")
    async with gateway_database(server.database_url):
        account = await account_of(write_key)
        first = await record_call(account_id=account, trunk_id=str(trunk["id"]))
    await sign_in(page, write_key)
    await nav(page, "Call logs").click()
    row = page.locator("#call-rows tr", has_text=first.call_id)
    await expect(row).to_contain_text("+14155550100")
    await expect(row).to_contain_text("+12125550199")
    await expect(row).to_contain_text("Caller")
    await expect(row).to_contain_text("User hung up")
    await expect(row).to_contain_text("470 ms")  # mean of 420, 610.5, 380
    await expect(row).to_contain_text("42s")

    # A call that ends while the page is open shows up without a reload.
    async with gateway_database(server.database_url):
        second = await record_call(
            account_id=account,
            trunk_id=str(trunk["id"]),
            from_number="+447700900123",
            status="failed",
            blame="ai_agent",
            reason="agent_error",
            explanation="The AI provider refused the API key",
            turns_ms=(),
        )
    live_row = page.locator("#call-rows tr", has_text=second.call_id)
    await expect(live_row).to_contain_text("AI agent", timeout=10_000)
    await expect(live_row).to_contain_text("The AI provider refused the API key")
    await expect(page.locator("#live-status")).to_contain_text("Updated")
    await screenshot(page, "call_logs")

    # Filters: status, and a date range that excludes today.
    await page.get_by_label("Status").select_option("failed")
    await page.get_by_role("button", name="Apply filters").click()
    await expect(page.locator("#call-rows tr", has_text=second.call_id)).to_be_visible()
    await expect(page.locator("#call-rows tr", has_text=first.call_id)).to_have_count(0)
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    await page.goto(f"/dashboard/calls?to={yesterday}")
    await expect(page.locator("#call-rows")).to_contain_text("No calls match")

    await page.goto("/dashboard/calls")
    await page.get_by_role("link", name=first.call_id).click()
    await expect(page.get_by_role("heading", name=re.compile("Call call_"))).to_be_visible()
    timeline = page.locator("ol.timeline li")
    await expect(timeline).to_have_count(6)  # invite, answered, 3 turns, ended
    await expect(timeline.first).to_contain_text("invite")
    await expect(timeline.last).to_contain_text("hangup/caller")
    bars = page.locator("svg.chart rect.bar")
    await expect(bars).to_have_count(3)
    await expect(page.locator("svg.chart title").first).to_have_text("AI latency per turn")
    await screenshot(page, "call")


@dataclass(frozen=True)
class _DashboardSip:
    sip_port: int


def _sip_call_id(cwd: Path) -> str:
    for line in sipp_messages(cwd).splitlines():
        if line.startswith("Call-ID:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no Call-ID in sipp's log")


async def test_a_sipp_call_appears_in_the_logs_and_its_page_shows_the_timeline(
    page: Page, server: LiveServer, write_key: str, sip_port: int, tmp_path: Path
) -> None:
    """A real call: sipp dials the gateway (digest, 180, 200, hold and resume re-INVITEs,
    BYE) while the call logs are open; the row appears without a reload and the call's
    page shows the timeline the gateway recorded."""
    password = "Dash-sipp-" + secrets.token_hex(6)
    trunk = create_trunk(server, write_key, "sipp-dash-bot", sip_password=password)
    await sign_in(page, write_key)
    await nav(page, "Call logs").click()
    await expect(page.locator("#live-status")).to_contain_text("Updated", timeout=10_000)
    result = await asyncio.to_thread(
        run_sipp,
        "uac_auth_hold_resume.xml",
        _DashboardSip(sip_port),
        service="sipp-dash-bot",
        username="sipp-dash-bot",
        password=password,
        cwd=tmp_path,
    )
    sipp_ok_or_logs(result, tmp_path)
    sip_call_id = _sip_call_id(tmp_path)
    session = api(server, write_key)
    for _ in range(50):
        listed = session.get(
            f"{server.url}/v1/calls", params={"trunk_id": str(trunk["id"])}, timeout=10
        ).json()["data"]
        if listed and listed[0]["end_time"] is not None:
            break
        await asyncio.sleep(0.2)
    [call] = listed
    assert call["sip_call_id"] == sip_call_id and call["status"] == "completed"

    row = page.locator("#call-rows tr", has_text=call["id"])
    await expect(row).to_contain_text("+15551230001", timeout=10_000)  # sipp's From
    await expect(row).to_contain_text("Caller")
    await screenshot(page, "call_logs_sipp")

    await page.get_by_role("link", name=call["id"]).click()
    await expect(page.get_by_role("heading", name=re.compile("Call call_"))).to_be_visible()
    await expect(page.locator("main")).to_contain_text(sip_call_id)
    events = page.locator("ol.timeline li .event")
    names = await events.all_inner_texts()
    for expected in ("invite", "authenticated", "ringing", "answered", "bye_received"):
        assert expected in names, names
    assert names.count("reinvite") == 2, names  # hold, then resume
    assert names.index("invite") < names.index("answered") < names.index("reinvite")
    reinvites = page.locator("ol.timeline li", has_text="reinvite")
    await expect(reinvites.first).to_contain_text("hold=True")
    await expect(reinvites.last).to_contain_text("hold=False")
    await screenshot(page, "call_sipp")


async def test_analytics_render_with_data(page: Page, server: LiveServer) -> None:
    key = server.api_key(account="analytics-dash", name="analytics")
    trunk = create_trunk(server, key, "stats-bot")
    now = datetime.now(UTC)
    latencies = [300.0, 350.0, 400.0, 500.0, 900.0]
    async with gateway_database(server.database_url):
        account = await account_of(key)
        for index, latency in enumerate(latencies):
            await record_call(
                account_id=account,
                trunk_id=str(trunk["id"]),
                start=now - timedelta(hours=index * 5, minutes=10),
                turns_ms=(latency,),
                blame="caller" if index % 2 else "ai_agent",
            )
        # A second call at the same moment as the latest: concurrency 2.
        await record_call(
            account_id=account, trunk_id=str(trunk["id"]), start=now - timedelta(minutes=10)
        )
        # Older than 48 hours: only in the 72-hour view.
        await record_call(
            account_id=account,
            trunk_id=str(trunk["id"]),
            start=now - timedelta(hours=60),
            turns_ms=(1000.0,),
        )
    await sign_in(page, key)
    await nav(page, "Analytics").click()
    # Six calls in 24 hours, with the two latest overlapping.
    await expect(page.locator("#kpi-total")).to_have_text("6")
    await expect(page.locator("#kpi-peak")).to_have_text("2")
    # Per-call means 300, 350, 400, 500, 900 and 470 (the default turns): nearest rank.
    await expect(page.locator("#kpi-p50")).to_have_text("400 ms")
    await expect(page.locator("#kpi-p95")).to_have_text("900 ms")
    await expect(page.locator("#kpi-avg")).to_have_text("487 ms")
    volume_bars = page.locator("#vol ~ figure svg rect.bar")
    assert await volume_bars.count() >= 24
    heights = [float(await b.get_attribute("height") or 0) for b in await volume_bars.all()]
    assert sum(1 for h in heights if h > 0) == 5  # five distinct hours hold calls
    assert await page.locator("#lat ~ figure svg polyline, #lat ~ figure svg circle").count() >= 3
    blame = page.locator("#blame ~ ul.legend")
    await expect(blame).to_contain_text("AI agent: 3")
    await expect(blame).to_contain_text("Caller: 3")
    await screenshot(page, "analytics")

    await page.get_by_role("link", name="72 hours").click()
    await expect(page.locator("#kpi-total")).to_have_text("7")
    await expect(page.get_by_role("link", name="72 hours")).to_have_attribute(
        "aria-current", "page"
    )


async def test_rotate_password_and_delete(page: Page, server: LiveServer, write_key: str) -> None:
    trunk = create_trunk(server, write_key, "rotate-bot", sip_password="Old-pass-1234-xyz")
    old_ha1 = await _stored_ha1("rotate-bot", server.database_url)
    asked = _accept_dialogs(page)
    await sign_in(page, write_key)
    await page.goto(f"/dashboard/connections/{trunk['id']}")
    await expect(page.locator("#origination-uri")).to_have_value(f"sip:rotate-bot@{SIP_DOMAIN}")
    await screenshot(page, "connection")
    await page.get_by_role("button", name="Rotate password").click()
    await expect(page.get_by_role("heading", name="New SIP password")).to_be_visible()
    assert asked and "stops working" in asked[0]
    new_password = await page.locator("#sip-password").input_value()
    assert new_password and new_password != "Old-pass-1234-xyz"
    new_ha1 = await _stored_ha1("rotate-bot", server.database_url)
    assert new_ha1 != old_ha1
    assert new_ha1 == digest_secrets("rotate-bot", SIP_DOMAIN, new_password).ha1_md5
    await screenshot(page, "password_rotated")

    # Deactivate, then activate again, from the connection page.
    await page.goto(f"/dashboard/connections/{trunk['id']}")
    await page.get_by_role("button", name="Deactivate").click()
    await expect(page.locator(".page-head .badge")).to_have_text("Inactive")
    got = api(server, write_key).get(f"{server.url}/v1/trunks/{trunk['id']}", timeout=10).json()
    assert got["status"] == "inactive"
    await page.get_by_role("button", name="Activate").click()
    await expect(page.locator(".page-head .badge")).to_have_text("Active")

    # Delete: the <dialog> asks first; Cancel keeps the trunk.
    dialog = page.locator(f"#delete-{trunk['id']}")
    await page.get_by_role("link", name="Delete").click()
    await expect(dialog).to_be_visible()
    await screenshot(page, "delete_dialog")
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_be_hidden()
    await page.get_by_role("link", name="Delete").click()
    await dialog.get_by_role("button", name="Delete connection").click()
    await expect(page).to_have_url(re.compile(r"/dashboard/connections$"))
    await expect(page.locator(".flash")).to_contain_text("deleted")
    response = api(server, write_key).get(f"{server.url}/v1/trunks/{trunk['id']}", timeout=10)
    assert response.status_code == 404


async def test_edit_connection_shows_the_api_error_and_saves(
    page: Page, server: LiveServer, write_key: str
) -> None:
    trunk = create_trunk(server, write_key, "edit-bot")
    await sign_in(page, write_key)
    await page.goto(f"/dashboard/connections/{trunk['id']}/edit")
    await page.get_by_label("Inbound numbers").fill("555-0100")
    await page.get_by_role("button", name="Save changes").click()
    # Exactly the API's own validation message.
    with pytest.raises(ServiceError) as refused:
        parse_model(TrunkUpdate, {"inbound_numbers": ["555-0100"]})
    await expect(page.get_by_role("alert")).to_have_text(refused.value.message)
    await screenshot(page, "connection_edit_error")
    await page.get_by_label("Inbound numbers").fill("+14155550123")
    await page.get_by_label("Name", exact=True).fill("Edited echo")
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.get_by_role("heading", name="Edited echo")).to_be_visible()
    got = api(server, write_key).get(f"{server.url}/v1/trunks/{trunk['id']}", timeout=10).json()
    assert got["name"] == "Edited echo"
    assert got["inbound_numbers"] == ["+14155550123"]


async def test_api_keys_create_once_and_revoke(page: Page, server: LiveServer) -> None:
    key = server.api_key(account="keys-dash", name="owner")
    await sign_in(page, key)
    await nav(page, "API keys").click()
    await page.get_by_label("Name").fill("CI read-only")
    await page.get_by_label("read (list and read)").check()
    await page.get_by_label("write (create, change, delete)").uncheck()
    await page.get_by_role("button", name="Create key").click()
    secret = await page.locator("#new-api-key").input_value()
    assert secret.startswith("sk_live_")
    await expect(page.get_by_role("alert")).to_contain_text("will not be shown again")
    # The new key works against the API, with only the read scope.
    session = server.session(secret)
    assert session.get(f"{server.url}/v1/trunks", timeout=10).status_code == 200
    refused = session.post(f"{server.url}/v1/trunks", json={}, timeout=10)
    assert refused.status_code == 403
    href = await page.get_by_role("link", name="Download the OpenAPI document").get_attribute(
        "href"
    )
    assert href == "/v1/openapi.json"
    await screenshot(page, "api_keys")

    _accept_dialogs(page)
    row = page.locator("tr", has_text="CI read-only")
    await expect(row).to_contain_text("read")
    await row.get_by_role("button", name="Revoke").click()
    await expect(page.locator("tr", has_text="CI read-only")).to_contain_text("revoked")
    assert session.get(f"{server.url}/v1/trunks", timeout=10).status_code == 401


async def test_read_only_key_sees_no_forms_and_cannot_post(
    page: Page, server: LiveServer, write_key: str, read_key: str
) -> None:
    trunk = create_trunk(server, write_key, "ro-bot")
    await sign_in(page, read_key)
    await expect(page.locator(".who .badge")).to_have_text("read-only")
    await expect(page.get_by_role("link", name="Create connection")).to_have_count(0)
    await expect(page.locator(f"#card-{trunk['id']} form")).to_have_count(0)
    # Even a well-formed post with the session's token is refused, with a clear message.
    token = await page.locator('meta[name="csrf-token"]').get_attribute("content")
    response = await page.request.post(
        f"/dashboard/connections/{trunk['id']}/deactivate", form={"csrf_token": token or ""}
    )
    assert response.status == 403
    assert "read-only" in await response.text()
    got = api(server, write_key).get(f"{server.url}/v1/trunks/{trunk['id']}", timeout=10).json()
    assert got["status"] == "active"
    await page.goto("/dashboard/connections/new")
    await expect(page.get_by_role("alert")).to_contain_text("read-only")
    await screenshot(page, "read_only_refused")


async def test_phone_width_keyboard_and_labels(
    page: Page, server: LiveServer, write_key: str
) -> None:
    create_trunk(server, write_key, "phone-bot")
    await page.set_viewport_size({"width": 390, "height": 844})
    await sign_in(page, write_key)
    for path, name in (
        ("/dashboard/connections", "phone_connections"),
        ("/dashboard/connections/new", "phone_connection_form"),
        ("/dashboard/calls", "phone_call_logs"),
        ("/dashboard/analytics", "phone_analytics"),
    ):
        await page.goto(path)
        # Nothing wider than the phone, except the scrollable call table's own region.
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px"
        unlabelled = await page.evaluate(
            """[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                 .filter(el => !el.labels || el.labels.length === 0)
                 .filter(el => !el.closest('[hidden]'))
                 .map(el => el.name || el.id)"""
        )
        assert unlabelled == [], f"{path}: inputs without a label: {unlabelled}"
        await screenshot(page, name)
    # The first Tab stop is the skip link, and it moves focus to the content.
    await page.goto("/dashboard/connections")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"
