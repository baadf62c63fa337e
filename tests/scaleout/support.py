"""A small cluster on loopback: Telepath nodes on one PostgreSQL and one Redis, behind Kamailio.

* :func:`node_args` builds a node's ``telepath serve`` flags (SIP port, RTP range,
  ``--public-address``, ``--redis``, ``--drain-timeout``).
* :func:`kamailio` runs ``deploy/kamailio/kamailio.cfg`` (the documented configuration,
  unchanged) with a dispatcher list naming the nodes.
* :func:`calls_by_node` reads the call records straight from PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis

from ingress.sip.digest import authorization
from tests.sip_interop.support import SIPP, free_udp_port, rtp_range

ROOT = Path(__file__).resolve().parents[2]
KAMAILIO_CFG = ROOT / "deploy" / "kamailio" / "kamailio.cfg"
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
REDIS_URL = os.environ.get("TELEPATH_TEST_REDIS", "redis://127.0.0.1:6379/0")


def require(what: str, found: bool, reason: str) -> None:
    """Fail in CI (every test must run there), skip elsewhere, when ``what`` is missing."""
    if found:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI: {reason}")
    pytest.skip(f"{what} not available: {reason}")


def kamailio_binary() -> str:
    path = shutil.which("kamailio") or "/usr/sbin/kamailio"
    require("kamailio", Path(path).exists(), "apt-get install kamailio")
    return path


def require_redis() -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except (redis.RedisError, OSError) as exc:
        require("Redis", False, f"{REDIS_URL}: {exc}")


def node_args(sip_port: int, *, drain_timeout: float, extra: Sequence[str] = ()) -> list[str]:
    low, high = rtp_range(100)
    return [
        "--sip",
        f"127.0.0.1:{sip_port}",
        "--rtp-ports",
        f"{low}-{high}",
        "--public-address",
        "127.0.0.1",
        "--sip-domain",
        "sip.scaleout.test",
        "--redis",
        REDIS_URL,
        "--drain-timeout",
        str(drain_timeout),
        # The documented deployment: Kamailio (on loopback here) is a trusted SIP proxy.
        "--sip-trusted-proxies",
        "127.0.0.1/32",
        *extra,
    ]


@contextmanager
def kamailio(tmp: Path, nodes: Sequence[int], *, ping_interval: int = 1) -> Iterator[int]:
    """Kamailio on a free UDP port in front of the nodes' SIP ports; yields its port."""
    binary = kamailio_binary()
    port = free_udp_port()
    tmp.mkdir(parents=True, exist_ok=True)
    dispatcher = tmp / "dispatcher.list"
    dispatcher.write_text("".join(f"1 sip:127.0.0.1:{p} 0 0\n" for p in nodes))
    log = (tmp / "kamailio.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            "-f",
            str(KAMAILIO_CFG),
            "-DD",  # stay in the foreground
            "-E",  # log to stderr
            "-m",
            "64",
            "-M",
            "8",
            "-w",
            str(tmp),
            "-A",
            f"LISTEN=udp:127.0.0.1:{port}",
            "-A",
            f'DISPATCHER_LIST="{dispatcher}"',
            "-A",
            f"DS_PING_INTERVAL={ping_interval}",
            "-A",
            "LOG_LEVEL=2",
        ],
        cwd=tmp,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(0.5)
        if process.poll() is not None:
            raise RuntimeError("kamailio exited:\n" + (tmp / "kamailio.log").read_text())
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def sipp_calls(
    scenario: Path,
    proxy_port: int,
    *,
    service: str,
    username: str,
    password: str,
    calls: int,
    cwd: Path,
    timeout: float = 60.0,
) -> subprocess.Popen[str]:
    """Start sipp placing ``calls`` concurrent calls through the proxy (not waited for)."""
    cwd.mkdir(parents=True, exist_ok=True)
    args = [
        SIPP,
        "-sf",
        str(scenario),
        f"127.0.0.1:{proxy_port}",
        "-s",
        service,
        "-i",
        "127.0.0.1",
        "-p",
        str(free_udp_port()),
        "-m",
        str(calls),
        "-l",
        str(calls),
        "-r",
        "20",
        "-t",
        "u1",
        "-au",
        username,
        "-ap",
        password,
        "-timeout",
        f"{int(timeout)}",
        "-timeout_error",
        "-trace_err",
        "-trace_msg",
        "-nostdin",
    ]
    return subprocess.Popen(
        args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def sipp_done(process: subprocess.Popen[str], cwd: Path, timeout: float = 90.0) -> str:
    """Wait for sipp; fail with its logs unless every call succeeded."""
    out, err = process.communicate(timeout=timeout)
    logs = "\n".join(p.read_text(errors="replace")[-4000:] for p in sorted(cwd.glob("*.log")))
    assert process.returncode == 0, f"sipp exit {process.returncode}\n{out[-2000:]}\n{err}\n{logs}"
    return out


def calls_by_node(database_url: str) -> list[dict[str, Any]]:
    """Every call record: node, SIP Call-ID, status, reason, blame, end time."""

    async def fetch() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                "SELECT node, sip_call_id, status, disconnect_reason, blame, end_time"
                " FROM calls ORDER BY start_time"
            )
        finally:
            await conn.close()
        return [dict(r) for r in rows]

    return asyncio.run(fetch())


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


# --- a minimal UDP user agent client (RFC 3261 §8.1) for the two tests above ---

_SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


class SipClient:
    """One dialog's worth of a UAC over UDP: INVITE, the 401 dance, ACK, BYE."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.local = self.sock.getsockname()[1]
        self.call_id = f"{secrets.token_hex(8)}@127.0.0.1"
        self.tag = secrets.token_hex(4)
        self.cseq = 0
        self.to_tag = ""
        self.user = ""
        self.contact = ""

    def _request(self, method: str, user: str, port: int, extra: str = "", body: str = "") -> str:
        self.cseq += 1 if method != "ACK" else 0
        branch = "z9hG4bK" + secrets.token_hex(8)
        uri = self.contact if method in ("BYE",) or (method == "ACK" and self.contact) else None
        target = uri or f"sip:{user}@127.0.0.1:{port}"
        to_tag = f";tag={self.to_tag}" if self.to_tag else ""
        text = (
            f"{method} {target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.local};branch={branch};rport\r\n"
            f"From: <sip:+15551230001@127.0.0.1>;tag={self.tag}\r\n"
            f"To: <sip:{user}@127.0.0.1:{port}>{to_tag}\r\n"
            f"Call-ID: {self.call_id}\r\nCSeq: {self.cseq} {method}\r\n"
            f"Contact: <sip:uac@127.0.0.1:{self.local}>\r\nMax-Forwards: 70\r\n{extra}"
        )
        if body:
            text += f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        else:
            text += "Content-Length: 0\r\n\r\n"
        self.sock.sendto(text.encode(), ("127.0.0.1", port))
        return target

    def _final(self, method: str) -> str:
        while True:
            data = self.sock.recv(65535).decode(errors="replace")
            status_line = data.split("\r\n", 1)[0]
            if not status_line.startswith("SIP/2.0 ") or f" {method}\r\n" not in data:
                continue
            if int(status_line.split()[1]) >= 200:
                return data

    @staticmethod
    def _header(message: str, name: str) -> str:
        for line in message.split("\r\n"):
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return ""

    def _ack_failure(self, user: str, port: int, response: str) -> None:
        # RFC 3261 §17.1.1.3: the ACK of a non-2xx final response (same CSeq number).
        to = self._header(response, "To")
        self.to_tag = to.split("tag=", 1)[1].split(";")[0] if "tag=" in to else ""
        self._request("ACK", user, port)
        self.to_tag = ""

    def challenge(self, user: str) -> str:
        """INVITE without credentials: the 401's MD5 challenge (the call then ACKs it)."""
        self.user = user
        self._request("INVITE", user, self.port, body=_SDP.format(port=40000))
        response = self._final("INVITE")
        assert response.startswith("SIP/2.0 401"), response
        self._ack_failure(user, self.port, response)
        challenges = [
            line.split(":", 1)[1].strip()
            for line in response.split("\r\n")
            if line.lower().startswith("www-authenticate:")
        ]
        return next(c for c in challenges if "algorithm=MD5" in c)

    def send_invite(self, user: str, *, port: int, challenge: tuple[str, str]) -> int:
        """An authenticated INVITE to ``port``; returns the final status (ACKs it)."""
        value = authorization(
            challenge[0],
            username=user,
            password=challenge[1],
            method="INVITE",
            uri=f"sip:{user}@127.0.0.1:{port}",
            cnonce=secrets.token_hex(8),
        )
        self._request(
            "INVITE", user, port, extra=f"Authorization: {value}\r\n", body=_SDP.format(port=40002)
        )
        response = self._final("INVITE")
        status = int(response.split()[1])
        if status == 200:
            to = self._header(response, "To")
            self.to_tag = to.split("tag=", 1)[1].split(";")[0]
            self.contact = self._header(response, "Contact").strip("<>").split(">")[0]
            self._request("ACK", user, port)
        else:
            self._ack_failure(user, port, response)
        return status

    def invite_status(self, user: str, password: str) -> int:
        """Challenge, then the authenticated INVITE, both to this client's node."""
        return self.send_invite(user, port=self.port, challenge=(self.challenge(user), password))

    def invite_without_credentials(self, user: str) -> str:
        """An INVITE with no Authorization: the final response (ACKed)."""
        self.user = user
        self._request("INVITE", user, self.port, body=_SDP.format(port=40004))
        response = self._final("INVITE")
        self._ack_failure(user, self.port, response)
        return response

    def answer_bye(self) -> str:
        """Wait for the gateway's BYE and answer it 200 (RFC 3261 §15.1.2)."""
        while True:
            data = self.sock.recv(65535).decode(errors="replace")
            if data.startswith("BYE "):
                break
        head = [
            line
            for line in data.split("\r\n")
            if line.split(":", 1)[0].strip().lower() in ("via", "from", "to", "call-id", "cseq")
        ]
        reply = "SIP/2.0 200 OK\r\n" + "\r\n".join(head) + "\r\nContent-Length: 0\r\n\r\n"
        self.sock.sendto(reply.encode(), ("127.0.0.1", self.port))
        return data

    def hang_up(self, port: int) -> None:
        self._request("BYE", self.user, port)
        response = self._final("BYE")
        assert response.startswith("SIP/2.0 200"), response
