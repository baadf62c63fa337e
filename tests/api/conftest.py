"""Live gateways for the API tests: one on SQLite and one on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.live_server import LiveServer, live_server
from tests.support.postgres import throwaway_database


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A running gateway on each supported database."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("api") / "telepath.db"
        with live_server(f"sqlite://{path}") as running:
            yield running
    else:
        with throwaway_database() as url, live_server(url) as running:
            yield running


@pytest.fixture(scope="session")
def shared_keys() -> dict[str, str]:
    """Keys already made, by server URL (the CLI costs a process start per key)."""
    return {}


@pytest.fixture
def api_key(server: LiveServer, shared_keys: dict[str, str]) -> str:
    """A read/write key of one account shared by tests that don't count what they see."""
    if server.url not in shared_keys:
        shared_keys[server.url] = server.api_key(account="api-tests")
    return shared_keys[server.url]


@pytest.fixture
def fresh_key(server: LiveServer, request: pytest.FixtureRequest) -> str:
    """A key of a new account of its own (for tests that count or list)."""
    return server.api_key(account="acct-" + request.node.name[:60])
