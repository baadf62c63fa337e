"""CSRF and session cookie over plain HTTP against a live ``telepath serve``."""

from __future__ import annotations

import re

import requests

from tests.dashboard.conftest import api
from tests.support.live_server import LiveServer

_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def _signed_in(server: LiveServer, key: str) -> tuple[requests.Session, str]:
    browser = requests.Session()
    form = browser.get(f"{server.url}/dashboard/sign-in", timeout=10)
    token = _CSRF_FIELD.search(form.text)
    assert token is not None
    done = browser.post(
        f"{server.url}/dashboard/sign-in",
        data={"csrf_token": token.group(1), "api_key": key},
        timeout=10,
    )
    assert done.url.endswith("/dashboard/connections"), done.url
    fresh = _CSRF_FIELD.search(done.text)
    assert fresh is not None
    # A new token at sign-in: the one from before it is worthless.
    assert fresh.group(1) != token.group(1)
    return browser, fresh.group(1)


def _trunk_count(server: LiveServer, key: str) -> int:
    response = api(server, key).get(f"{server.url}/v1/trunks?limit=100", timeout=10)
    return len(response.json()["data"])


def test_posts_without_the_token_are_refused(server: LiveServer, write_key: str) -> None:
    browser, token = _signed_in(server, write_key)
    before = _trunk_count(server, write_key)
    body = {"ai_provider": "echo", "sip_username": "csrf-bot"}
    url = f"{server.url}/dashboard/connections/new"

    missing = browser.post(url, data=body, timeout=10)
    assert missing.status_code == 403
    assert "did not come from the dashboard" in missing.text
    wrong = browser.post(url, data={**body, "csrf_token": token[:-2] + "xx"}, timeout=10)
    assert wrong.status_code == 403
    # Another session's valid token does not work here either.
    _, other_token = _signed_in(server, write_key)
    crossed = browser.post(url, data={**body, "csrf_token": other_token}, timeout=10)
    assert crossed.status_code == 403
    assert _trunk_count(server, write_key) == before

    accepted = browser.post(url, data={**body, "csrf_token": token}, timeout=10)
    assert accepted.status_code == 200
    assert "Connection created" in accepted.text
    assert _trunk_count(server, write_key) == before + 1


def test_fetches_need_the_token_header(server: LiveServer, write_key: str) -> None:
    browser, token = _signed_in(server, write_key)
    url = f"{server.url}/dashboard/credentials/generate"
    refused = browser.post(url, timeout=10)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "csrf_failed"
    allowed = browser.post(url, headers={"X-CSRF-Token": token}, timeout=10)
    assert allowed.status_code == 200
    pair = allowed.json()
    assert set(pair) == {"sip_username", "sip_password"}


def test_sign_in_and_sign_out_need_the_token_too(server: LiveServer, write_key: str) -> None:
    anonymous = requests.Session()
    response = anonymous.post(
        f"{server.url}/dashboard/sign-in", data={"api_key": write_key}, timeout=10
    )
    assert response.status_code == 403
    assert "did not come from the dashboard" in response.text
    assert (
        anonymous.get(
            f"{server.url}/dashboard/connections", timeout=10, allow_redirects=False
        ).status_code
        == 302
    )
    browser, _ = _signed_in(server, write_key)
    out = browser.post(f"{server.url}/dashboard/sign-out", timeout=10, allow_redirects=False)
    assert out.status_code == 403
    # Still signed in: a forged sign-out did nothing.
    still = browser.get(f"{server.url}/dashboard/connections", timeout=10, allow_redirects=False)
    assert still.status_code == 200


def test_session_cookie_attributes(server: LiveServer, write_key: str) -> None:
    browser = requests.Session()
    form = browser.get(f"{server.url}/dashboard/sign-in", timeout=10)
    token = _CSRF_FIELD.search(form.text)
    assert token is not None
    done = browser.post(
        f"{server.url}/dashboard/sign-in",
        data={"csrf_token": token.group(1), "api_key": write_key},
        timeout=10,
        allow_redirects=False,
    )
    assert done.status_code == 302
    cookie = done.headers["Set-Cookie"]
    assert cookie.startswith("telepath_dashboard=")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/dashboard" in cookie
    # Plain HTTP from a browser on loopback: not Secure (it would never be sent back).
    assert "Secure" not in cookie
    assert write_key not in cookie
    # The pages are never cached and never framed, and load nothing from elsewhere.
    page = browser.get(f"{server.url}/dashboard/connections", timeout=10)
    assert page.headers["Cache-Control"] == "no-store"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
