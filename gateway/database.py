"""Opening the database (SQLite or PostgreSQL) and applying migrations."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tortoise import Tortoise
from tortoise.migrations.api import migrate as tortoise_migrate

from models import MODELS_MODULE

logger = logging.getLogger(__name__)


class DatabaseUrlError(ValueError):
    """The database URL is not one Telepath can use."""


def normalise_url(url: str) -> str:
    """Accept ``sqlite://…``, ``postgres://…`` and ``postgresql://…`` URLs."""
    scheme = urlsplit(url).scheme
    if scheme == "postgresql":
        return "postgres" + url[len("postgresql") :]
    if scheme not in ("sqlite", "postgres"):
        raise DatabaseUrlError(
            f"unsupported database URL scheme {scheme!r} (use sqlite:// or postgres://)"
        )
    return url


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite://`` URL (``sqlite://./telepath.db``, ``sqlite:///srv/t.db``)."""
    if not url.startswith("sqlite://"):
        return None
    path = url[len("sqlite://") :]
    if path in ("", ":memory:"):
        return None
    return Path(path)


def tortoise_config(url: str) -> dict[str, Any]:
    """The Tortoise configuration for one database URL."""
    return {
        "connections": {"default": normalise_url(url)},
        "apps": {
            "models": {
                "models": [MODELS_MODULE],
                "migrations": "models.migrations",
                "default_connection": "default",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


async def migrate(url: str) -> None:
    """Apply every pending migration to the database at ``url``."""
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    await tortoise_migrate(config=tortoise_config(url))
    await Tortoise.close_connections()


async def open_database(url: str, *, apply_migrations: bool = True) -> None:
    """Migrate (by default) and open the ORM's connections for this process."""
    if apply_migrations:
        await migrate(url)
    await Tortoise.init(config=tortoise_config(url))
    if url.startswith("sqlite"):
        # WAL lets the CLI (apikey create) write while a server holds the file open.
        conn = Tortoise.get_connection("default")
        await conn.execute_script("PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;")


async def close_database() -> None:
    """Close the ORM's connections."""
    await Tortoise.close_connections()
