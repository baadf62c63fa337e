"""Read rows straight from a live server's database (SQLite file or PostgreSQL)."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import asyncpg


def fetch_one(database_url: str, sql: str, *args: Any) -> dict[str, Any] | None:
    """One row as a dict; ``sql`` uses ``$1``-style placeholders."""
    if database_url.startswith("sqlite://"):
        path = database_url[len("sqlite://") :]
        conn = sqlite3.connect(path)
        conn.row_factory = sqlite3.Row
        try:
            row = conn.execute(sql.replace("$1", "?").replace("$2", "?"), args).fetchone()
        finally:
            conn.close()
        return dict(row) if row else None

    async def _pg() -> dict[str, Any] | None:
        conn = await asyncpg.connect(database_url)
        try:
            row = await conn.fetchrow(sql, *args)
        finally:
            await conn.close()
        return dict(row) if row else None

    return asyncio.run(_pg())
