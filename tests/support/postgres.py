"""Throwaway PostgreSQL databases on the local server (127.0.0.1:5432, trust auth).

Outside CI a missing PostgreSQL skips the tests that need it, with a reason; in CI (the
``CI`` environment variable set) it fails them, because every test must run there.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import pytest

ADMIN_URL = os.environ.get("TELEPATH_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test")


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def throwaway_database(prefix: str = "telepath_test") -> Iterator[str]:
    """Create a fresh database, yield its URL, drop it afterwards."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL at {ADMIN_URL} is not available: {exc}")
    base = ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
