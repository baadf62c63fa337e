"""Failed-attempt rate limiting against a live gateway over UDP (issue 4: "default 20
failures a minute, then 403 and silent drops for a cool-off").

A raw UDP client plays a password-guessing peer: INVITEs carrying digest credentials with
a nonce the gateway never issued (each one a failure). The 20th failure gets 403; from then
on new INVITEs from that address get nothing at all, not even 100 Trying, while OPTIONS
keep being answered. Its own gateway: the block covers 127.0.0.1 for five minutes.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.sip_interop.support import Gateway, gateway

pytestmark = pytest.mark.slow

REALM = "sip.interop.test"


def _request(gw: Gateway, sock: socket.socket, method: str, user: str, n: int, extra: str) -> str:
    port = sock.getsockname()[1]
    call_id = f"guess-{n}-{port}"
    message = (
        f"{method} sip:{user}@127.0.0.1:{gw.sip_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKguess{n}x{port};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:+15551230001@127.0.0.1>;tag=g{n}\r\n"
        f"To: <sip:{user}@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\n"
        f"Contact: <sip:guess@127.0.0.1:{port}>\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    )
    sock.sendto(message.encode(), ("127.0.0.1", gw.sip_port))
    return call_id


def _guess(gw: Gateway, sock: socket.socket, user: str, n: int) -> str:
    credentials = (
        f'Authorization: Digest username="{user}", realm="{REALM}", nonce="bm90LW91cnM{n}",'
        f' uri="sip:{user}@127.0.0.1", response="{n:032x}", algorithm=MD5, qop=auth,'
        ' nc=00000001, cnonce="c0ffee"\r\n'
    )
    return _request(gw, sock, "INVITE", user, n, credentials)


def _statuses(sock: socket.socket, call_id: str, *, until_final: bool, wait: float) -> list[int]:
    """Status codes received for ``call_id`` (stopping at the first final one if told)."""
    seen: list[int] = []
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(65535).decode(errors="replace")
        except TimeoutError:
            break
        if f"Call-ID: {call_id}\r\n" not in data:
            continue  # a retransmitted 401 of an earlier guess
        seen.append(int(data.split(" ", 2)[1]))
        if until_final and seen[-1] >= 200:
            break
    return seen


def test_twenty_failures_get_403_once_then_silence(tmp_path: Path) -> None:
    with gateway(tmp_path / "gw") as own:
        user = own.create_trunk()["sip_username"]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            for n in range(1, 20):
                call_id = _guess(own, sock, user, n)
                assert _statuses(sock, call_id, until_final=True, wait=5)[-1] == 401, n
            call_id = _guess(own, sock, user, 20)
            assert _statuses(sock, call_id, until_final=True, wait=5)[-1] == 403
            # Blocked: the next INVITEs (with or without credentials) get no answer at all.
            for call_id in (
                _guess(own, sock, user, 21),
                _request(own, sock, "INVITE", user, 22, ""),
            ):
                assert _statuses(sock, call_id, until_final=False, wait=1.5) == []
            # Keep-alives from the address are still answered.
            call_id = _request(own, sock, "OPTIONS", user, 23, "")
            assert _statuses(sock, call_id, until_final=True, wait=5) == [200]
        own.process.terminate()
        _, logs = own.process.communicate(timeout=20)
    refusals = [line for line in logs.splitlines() if "too many failed authentications" in line]
    assert len(refusals) == 1, refusals  # the 403, logged once; the drops are not


def _challenges(sock: socket.socket, call_id: str) -> list[str]:
    deadline = time.monotonic() + 5
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        data = sock.recv(65535).decode(errors="replace")
        if f"Call-ID: {call_id}\r\n" in data and data.startswith("SIP/2.0 401"):
            return [
                line for line in data.split("\r\n") if line.lower().startswith("www-authenticate:")
            ]
    raise AssertionError("no 401")


def test_challenge_order_and_failure_limit_are_configurable(tmp_path: Path) -> None:
    """RFC 8760 lets the server order its challenges; operators may put SHA-256 first or alone."""
    args = ["--digest-algorithms", "SHA-256,MD5", "--auth-failure-limit", "3"]
    with gateway(tmp_path / "gw", extra_args=args) as own:
        user = own.create_trunk()["sip_username"]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            offered = _challenges(sock, _request(own, sock, "INVITE", user, 1, ""))
            assert len(offered) == 2
            assert "algorithm=SHA-256" in offered[0] and "algorithm=MD5" in offered[1]
            assert all('qop="auth"' in c and f'realm="{REALM}"' in c for c in offered)
            for n in (2, 3):
                assert (
                    _statuses(sock, _guess(own, sock, user, n), until_final=True, wait=5)[-1] == 401
                )
            # The third failure reaches the configured limit of 3.
            assert _statuses(sock, _guess(own, sock, user, 4), until_final=True, wait=5)[-1] == 403
    with gateway(tmp_path / "gw2", extra_args=["--digest-algorithms", "SHA-256"]) as own:
        user = own.create_trunk()["sip_username"]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            offered = _challenges(sock, _request(own, sock, "INVITE", user, 1, ""))
            assert len(offered) == 1 and "algorithm=SHA-256" in offered[0]
