"""TELEPATH_VALIDATE_PROVIDER_CREDENTIALS against a fake OpenAI/ElevenLabs REST API on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.support.live_server import free_port, live_server

GOOD_KEYS = {"sk-good-openai-0001", "el-good-key-0002"}


class FakeProviderApi(BaseHTTPRequestHandler):
    """GET /v1/models (OpenAI, Bearer) and GET /v1/user (ElevenLabs, xi-api-key)."""

    seen: list[tuple[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/v1/models":
            key = self.headers.get("Authorization", "").removeprefix("Bearer ")
        elif self.path == "/v1/user":
            key = self.headers.get("xi-api-key", "")
        else:
            self.send_error(404)
            return
        self.seen.append((self.path, key))
        status = 200 if key in GOOD_KEYS else 401
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def fake_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeProviderApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_keys_are_checked_against_the_provider(tmp_path: Path, fake_api: str) -> None:
    env = {
        "TELEPATH_VALIDATE_PROVIDER_CREDENTIALS": "true",
        "TELEPATH_OPENAI_API_URL": fake_api,
        "TELEPATH_ELEVENLABS_API_URL": fake_api,
    }
    with live_server(f"sqlite://{tmp_path / 't.db'}", env=env) as server:
        auth = {"Authorization": f"Bearer {server.api_key()}"}
        base = {"sip_password": "s3cur3P@ssw0rd!"}
        bad = requests.post(
            server.url + "/v1/trunks",
            json={
                **base,
                "ai_provider": "openai",
                "sip_username": "oai-bad",
                "openai_api_key": "sk-wrong-9999",
            },
            headers=auth,
            timeout=10,
        )
        assert bad.status_code == 401
        assert bad.json()["error"]["code"] == "invalid_provider_credentials"
        assert "openai_api_key" in bad.json()["error"]["message"]
        good = requests.post(
            server.url + "/v1/trunks",
            json={
                **base,
                "ai_provider": "openai",
                "sip_username": "oai-good",
                "openai_api_key": "sk-good-openai-0001",
            },
            headers=auth,
            timeout=10,
        )
        assert good.status_code == 201 and good.json()["credentials_verified"] is True
        el = requests.post(
            server.url + "/v1/trunks",
            json={
                **base,
                "ai_provider": "elevenlabs",
                "sip_username": "el-bad",
                "elevenlabs_api_key": "nope-nope",
                "elevenlabs_agent_id": "agent_1",
            },
            headers=auth,
            timeout=10,
        )
        assert el.status_code == 401
        assert ("/v1/models", "sk-wrong-9999") in FakeProviderApi.seen
        assert ("/v1/user", "nope-nope") in FakeProviderApi.seen


def test_an_unreachable_provider_does_not_block_creation(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    env = {"TELEPATH_VALIDATE_PROVIDER_CREDENTIALS": "1", "TELEPATH_OPENAI_API_URL": dead}
    with live_server(f"sqlite://{tmp_path / 't.db'}", env=env) as server:
        auth = {"Authorization": f"Bearer {server.api_key()}"}
        r = requests.post(
            server.url + "/v1/trunks",
            json={
                "sip_password": "s3cur3P@ssw0rd!",
                "ai_provider": "openai",
                "sip_username": "oai-x",
                "openai_api_key": "sk-any-1234",
            },
            headers=auth,
            timeout=20,
        )
        assert r.status_code == 201
        assert r.json()["credentials_verified"] is False
