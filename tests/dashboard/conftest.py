"""A live gateway and headless Chromium (Debian ``chromium``, driven by Playwright)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import requests
from playwright.async_api import Browser, Page, async_playwright

from tests.sip_interop.support import free_udp_port, rtp_range
from tests.support.live_server import ROOT, LiveServer, live_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"


@pytest.fixture(scope="module")
def sip_port() -> int:
    """The server's SIP port (UDP and TCP), for calls placed with sipp."""
    return free_udp_port()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sip_port: int) -> Iterator[LiveServer]:
    """``telepath serve`` on loopback with a SQLite database in a temporary directory."""
    path: Path = tmp_path_factory.mktemp("dashboard") / "telepath.db"
    low, high = rtp_range()
    args = ["--sip", f"127.0.0.1:{sip_port}", "--rtp-ports", f"{low}-{high}"]
    with live_server(f"sqlite://{path}", args=args) as running:
        yield running


@pytest.fixture(scope="module")
def write_key(server: LiveServer) -> str:
    """A read/write key of the ``dash`` account."""
    return server.api_key(account="dash", name="dashboard tests")


@pytest.fixture(scope="module")
def read_key(server: LiveServer) -> str:
    """A read-only key of the same account."""
    return server.api_key(account="dash", name="viewer", scopes="read")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Debian Chromium; nothing but loopback is reachable."""
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def page(browser: Browser, server: LiveServer) -> AsyncIterator[Page]:
    """A fresh browser context (no cookies) at desktop size, allowed to use the clipboard."""
    context = await browser.new_context(
        base_url=server.url, viewport={"width": 1280, "height": 900}
    )
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    tab = await context.new_page()
    failed: list[str] = []
    # No request may leave loopback (no CDN, no fonts): record any that tries.
    tab.on(
        "request",
        lambda r: (
            None
            if re.match(r"^(https?|wss?)://127\.0\.0\.1[:/]", r.url) or r.url.startswith("data:")
            else failed.append(r.url)
        ),
    )
    try:
        yield tab
    finally:
        await context.close()
    assert failed == [], f"requests left loopback: {failed}"


async def screenshot(tab: Page, name: str) -> Path:
    """Save a full-page screenshot as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await tab.screenshot(path=str(path), full_page=True)
    return path


async def sign_in(tab: Page, key: str) -> None:
    """Sign in through the form and land on the connections page."""
    await tab.goto("/dashboard/sign-in")
    await tab.get_by_label("API key").fill(key)
    await tab.get_by_role("button", name="Sign in").click()
    await tab.wait_for_url("**/dashboard/connections")


def api(server: LiveServer, key: str) -> requests.Session:
    """A bearer-token session against the live server's /v1 API."""
    return server.session(key)


def create_trunk(server: LiveServer, key: str, username: str, **fields: str) -> dict[str, object]:
    """A trunk made through the REST API (echo provider unless told otherwise)."""
    body: dict[str, str] = {"ai_provider": "echo", "sip_username": username, **fields}
    response = api(server, key).post(f"{server.url}/v1/trunks", json=body, timeout=10)
    assert response.status_code == 201, response.text
    data: dict[str, object] = response.json()
    return data
