"""Services over a real database for the call-record tests.

``services``: a fresh SQLite file per test (the embedded default). ``db_url``: SQLite and
PostgreSQL (a throwaway database per session on 127.0.0.1:5432, ``tests.support.postgres``),
for the tests whose answers must not depend on the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from tortoise.backends.base.executor import EXECUTOR_CACHE

from gateway.database import close_database, open_database
from gateway.secret_box import generate_key
from gateway.services import Services
from gateway.settings import Settings
from models import Account, ApiKey, Call, CallEvent, Trunk, WebhookDelivery
from tests.support.postgres import throwaway_database


async def open_fresh(url: str) -> None:
    """Open ``url``. Tortoise caches each table's INSERT/DELETE SQL per connection *name*
    for the whole process; these tests switch between SQLite and PostgreSQL under the
    same name, so the cache is emptied first (a server process only ever has one)."""
    EXECUTOR_CACHE.clear()
    await open_database(url)


def make_services(url: str, secret_key: str | None = None) -> Services:
    """Services as ``telepath serve`` builds them, with test-sized webhook retries."""
    settings = Settings(
        database_url=url, secret_key=secret_key or generate_key(), agent_ready_timeout=2.0
    )
    services = Services.build(settings)
    services.webhooks.backoff = 0.05
    services.webhooks.timeout = 1.0
    return services


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    """Services over a fresh, migrated SQLite file."""
    url = f"sqlite://{tmp_path / 'calls.db'}"
    await open_fresh(url)
    built = make_services(url)
    try:
        yield built
    finally:
        await built.close()
        await close_database()


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database URL of each supported kind (one database per test session)."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path_factory.mktemp('calls-db') / 'telepath.db'}"
    else:
        with throwaway_database("telepath_calls") as url:
            yield url


@pytest.fixture
async def db_services(db_url: str) -> AsyncIterator[Services]:
    """Services over ``db_url``, emptied first (the database is shared by the session)."""
    await open_fresh(db_url)
    for model in (WebhookDelivery, CallEvent, Call, Trunk, ApiKey, Account):
        await model.all().delete()
    built = make_services(db_url)
    try:
        yield built
    finally:
        await built.close()
        await close_database()


async def wait_for(condition: Callable[[], object], within: float = 3.0) -> None:
    """Poll ``condition`` on the event loop until it holds (fails after ``within`` s)."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - the state belongs to objects with no event
            await asyncio.sleep(0.01)
