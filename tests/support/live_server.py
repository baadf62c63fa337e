"""A real ``telepath serve`` process on loopback, for tests that talk to it over sockets."""

from __future__ import annotations

import base64
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def telepath(
    *args: str, env: Mapping[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the ``telepath`` CLI (as ``python -m gateway.cli``) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


@dataclass
class LiveServer:
    """A running gateway: its base URL, database and environment."""

    url: str
    database_url: str
    env: dict[str, str]
    process: subprocess.Popen[str]
    log_path: Path | None = None

    def log_tail(self, chars: int = 6000) -> str:
        """The end of the node's output (when it writes to ``log_path``)."""
        if self.log_path is None or not self.log_path.exists():
            return "(output piped, not on file)"
        return self.log_path.read_text(errors="replace")[-chars:]

    def api_key(
        self, account: str = "default", name: str = "test", scopes: str = "read,write"
    ) -> str:
        """A new API key made with the CLI against the server's database (last stdout line)."""
        done = telepath(
            "apikey",
            "create",
            "--name",
            name,
            "--account",
            account,
            "--scopes",
            scopes,
            "--database",
            self.database_url,
            env=self.env,
        )
        return done.stdout.strip().splitlines()[-1]

    def session(self, key: str) -> requests.Session:
        """A requests session sending ``key`` as bearer token."""
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        return session


def new_secret_key() -> str:
    """A random master key as TELEPATH_SECRET_KEY takes it."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


@contextmanager
def live_server(
    database_url: str,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    log_path: Path | None = None,
) -> Iterator[LiveServer]:
    """Start ``telepath serve`` on a free loopback port; stop it (SIGTERM) afterwards.

    Its output is piped (``process.communicate()`` reads it once it exits) unless
    ``log_path`` is given: then stdout and stderr go to that file, which a long-running
    node cannot fill up the way an unread pipe blocks it."""
    port = free_port()
    # A short drain: a test that leaves a call up should not wait the default 30 s at exit.
    full_env = {"TELEPATH_LOG_LEVEL": "WARNING", "TELEPATH_DRAIN_TIMEOUT": "1", **(env or {})}
    if not database_url.startswith("sqlite"):
        full_env.setdefault("TELEPATH_SECRET_KEY", new_secret_key())
    log = None if log_path is None else log_path.open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--http",
            f"127.0.0.1:{port}",
            "--database",
            database_url,
            *args,
        ],
        cwd=ROOT,
        env={**os.environ, **full_env},
        stdout=subprocess.PIPE if log is None else log,
        stderr=subprocess.PIPE if log is None else subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process.poll() is not None:
                out, err = process.communicate()
                if log_path is not None:
                    out, err = log_path.read_text(errors="replace"), ""
                raise RuntimeError(
                    f"telepath serve exited with {process.returncode}:\n{out}\n{err}"
                )
            try:
                if requests.get(url + "/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("telepath serve did not come up in time")
            time.sleep(0.1)
        yield LiveServer(url, database_url, full_env, process, log_path)
    finally:
        process.terminate()
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
        if log is not None:
            log.close()
