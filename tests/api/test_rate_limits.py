"""Per-key rate limits: in-process by default, shared through Redis across nodes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
import requests

from tests.support.live_server import live_server
from tests.support.postgres import throwaway_database

REDIS_URL = "redis://127.0.0.1:6379/0"


def _wait_for_fresh_window(margin: float = 8.0) -> None:
    # Counters use one-minute windows; start a burst well inside one.
    if time.time() % 60 > 60 - margin:
        time.sleep(60 - time.time() % 60 + 0.2)


def _require_redis() -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        import os

        if os.environ.get("CI"):
            raise
        pytest.skip(f"Redis at {REDIS_URL} is not available: {exc}")


def test_in_process_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    with live_server(f"sqlite://{tmp_path / 't.db'}", args=["--rate-limit", "5"]) as server:
        key = server.api_key()
        other = server.api_key(name="other")
        _wait_for_fresh_window()
        auth = {"Authorization": f"Bearer {key}"}
        statuses = [
            requests.get(server.url + "/v1/trunks", headers=auth, timeout=10) for _ in range(7)
        ]
        assert [r.status_code for r in statuses] == [200] * 5 + [429] * 2
        assert [r.headers["X-RateLimit-Remaining"] for r in statuses[:5]] == [
            "4",
            "3",
            "2",
            "1",
            "0",
        ]
        limited = statuses[-1]
        assert limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert limited.headers["X-RateLimit-Limit"] == "5"
        # Limits are per key: another key of the same account is unaffected.
        assert (
            requests.get(
                server.url + "/v1/trunks", headers={"Authorization": f"Bearer {other}"}, timeout=10
            ).status_code
            == 200
        )


def test_redis_limit_holds_across_two_nodes() -> None:
    _require_redis()
    redis_url = REDIS_URL
    with throwaway_database() as db:
        args = ["--rate-limit", "6", "--redis", redis_url]
        with live_server(db, args=args) as node_a:
            env = {"TELEPATH_SECRET_KEY": node_a.env["TELEPATH_SECRET_KEY"]}
            with live_server(db, args=args, env=env) as node_b:
                key = node_a.api_key()
                _wait_for_fresh_window()
                auth = {"Authorization": f"Bearer {key}"}
                codes = []
                for i in range(8):
                    node = node_a if i % 2 == 0 else node_b
                    codes.append(
                        requests.get(node.url + "/v1/trunks", headers=auth, timeout=10).status_code
                    )
                # Six requests in the window, wherever they landed; then both nodes refuse.
                assert codes == [200] * 6 + [429, 429]
