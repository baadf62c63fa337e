"""The seed documents' own Python examples, run against a live gateway.

Only the base URL is changed (and the placeholder keys filled in), as a user following the
docs against their own Telepath would do.
"""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import requests

from tests.support.live_server import LiveServer

SEED = Path(__file__).resolve().parents[1] / "data" / "seeds" / "create_trunk_examples.py.txt"
DOCS_BASE = "https://api.telepathvoice.com/v1"


def _run_seed(server: LiveServer, api_key: str, prefix: str) -> tuple[dict[str, object], str]:
    source = SEED.read_text().replace(DOCS_BASE, f"{server.url}/v1")
    # Unique usernames per backend run: the examples' names are global on one deployment.
    source = source.replace('"agent-', f'"{prefix}-agent-')
    namespace: dict[str, object] = {"OPENAI_KEY": "sk-openai-test-key-0001"}
    source = source.replace('API_KEY = "sk_live_abc123def456..."', f'API_KEY = "{api_key}"')
    output = io.StringIO()
    with redirect_stdout(output):
        exec(compile(source, str(SEED), "exec"), namespace)  # noqa: S102 - the seed's own code
    return namespace, output.getvalue()


def test_seed_create_and_batch_examples_run_unchanged(server: LiveServer, api_key: str) -> None:
    namespace, printed = _run_seed(server, api_key, "s1")
    trunk = namespace["trunk"]
    assert isinstance(trunk, dict)
    assert printed.startswith(f"Created trunk: {namespace['response'].json()['id']}")  # type: ignore[attr-defined]
    created = namespace["created"]
    assert isinstance(created, list) and [t["name"] for t in created] == [
        "Agent US-East",
        "Agent US-West",
        "Agent EU",
    ]
    for item in created:
        assert item["id"].startswith("trunk_")
        assert item["sip_endpoint"] == f"{item['sip_username']}@sip.telepath.local"
        assert item["status"] == "active" and item["ai_provider"] == "openai"
    assert "SIP endpoint: s1-agent-prod-01@sip.telepath.local" in printed


def test_seed_error_handling_example(server: LiveServer, api_key: str) -> None:
    namespace, _ = _run_seed(server, api_key, "s2")
    create_trunk = namespace["create_trunk"]
    # 409: the username is taken -> the example raises its own ValueError.
    with pytest.raises(ValueError, match="already exists"):
        create_trunk(  # type: ignore[operator]
            api_key=api_key,
            name="Dup",
            ai_provider="openai",
            sip_username="s2-agent-eu",
            sip_password="s3cur3P@ssw0rd!",
            openai_api_key="sk-x-1234",
        )
    # 400: the message of the seed's error format is what the example surfaces.
    with pytest.raises(ValueError, match="sip_password"):
        create_trunk(  # type: ignore[operator]
            api_key=api_key,
            name="Weak",
            ai_provider="openai",
            sip_username="s2-weak",
            sip_password="short",
            openai_api_key="sk-x-1234",
        )
    with pytest.raises(ValueError, match="openai_api_key is required"):
        create_trunk(  # type: ignore[operator]
            api_key=api_key,
            name="NoKey",
            ai_provider="openai",
            sip_username="s2-nokey",
            sip_password="s3cur3P@ssw0rd!",
        )


def test_seed_nested_shape_example(server: LiveServer, api_key: str) -> None:
    """The other seed page's request shape (provider / provider_config / provider_credential)."""
    body = {
        "sip_username": "nested-agent",
        "provider": "openai",
        "provider_config": {"model": "gpt-4o-realtime-preview"},
        "provider_credential": "sk-proj-nested-9876",
        "inbound_numbers": ["+14155550100"],
    }
    r = requests.post(
        f"{server.url}/v1/trunks",
        json=body,
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    trunk = r.json()
    assert trunk["provider"] == trunk["ai_provider"] == "openai"
    assert trunk["provider_config"] == {"model": "gpt-4o-realtime-preview"}
    assert trunk["provider_credential"] == trunk["openai_api_key"] == "****9876"
    assert trunk["inbound_numbers"] == ["+14155550100"]
    assert trunk["name"] == "nested-agent"
    # No password was sent: one was generated and is shown this once.
    assert len(trunk["sip_password"]) >= 20
    again = requests.get(
        f"{server.url}/v1/trunks/{trunk['id']}",
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=10,
    )
    assert again.json()["sip_password"] == "********"
