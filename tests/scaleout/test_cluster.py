"""Two Telepath nodes on one PostgreSQL and one Redis, over real sockets on loopback.

* Behind Kamailio (deploy/kamailio/kamailio.cfg, as documented): calls placed with sipp
  through the proxy spread over both nodes; one node is drained (SIGTERM) while calls run:
  it answers new INVITEs 503 so Kamailio moves them to the other node, ``/readyz`` turns
  503 "draining" while its API still serves, its running calls end with reason
  ``shutdown`` (blame system) at the drain deadline, and every call has a final record.
* A trunk's concurrency cap holds across nodes (the counts live in Redis).
* A digest challenge issued by node A is accepted by node B (nonces are HMACs under a key
  derived from the shared TELEPATH_SECRET_KEY).

API keys' rate limits across nodes: tests/api/test_rate_limits.py
(``test_redis_limit_holds_across_two_nodes``).
"""

from __future__ import annotations

import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.scaleout.support import (
    SCENARIOS,
    SipClient,
    calls_by_node,
    kamailio,
    kamailio_binary,
    node_args,
    require_redis,
    sipp_calls,
    sipp_done,
    wait_for,
)
from tests.sip_interop.support import free_udp_port
from tests.support.live_server import LiveServer, live_server, new_secret_key
from tests.support.postgres import throwaway_database

pytestmark = pytest.mark.slow

HOST = socket.gethostname()


@dataclass
class Cluster:
    database_url: str
    nodes: list[LiveServer]
    sip_ports: list[int]
    api: requests.Session

    def node_name(self, index: int) -> str:
        return f"{HOST}:{self.sip_ports[index]}"[:64]

    def create_trunk(self, **fields: object) -> tuple[str, str]:
        """A trunk to the echo agent, made through node 0's API: (username, password)."""
        username, password = f"s{secrets.token_hex(5)}", "Scaleout-" + secrets.token_hex(8)
        body: dict[str, Any] = {
            "name": f"scaleout {username}",
            "ai_provider": "echo",
            "sip_username": username,
            "sip_password": password,
            **fields,
        }
        response = self.api.post(self.nodes[0].url + "/v1/trunks", json=body, timeout=10)
        assert response.status_code == 201, response.text
        return username, password


def start_cluster(
    stack: ExitStack, database_url: str, logs: Path, *, drain_timeout: float
) -> Cluster:
    """Two nodes sharing the database, Redis and the master key (started one after the
    other: the first one creates the schema). Each logs at INFO to ``logs/node-N.log``,
    which a failing assertion shows."""
    env = {"TELEPATH_SECRET_KEY": new_secret_key(), "TELEPATH_LOG_LEVEL": "INFO"}
    ports = [free_udp_port(), free_udp_port()]
    logs.mkdir(parents=True, exist_ok=True)
    nodes = [
        stack.enter_context(
            live_server(
                database_url,
                args=node_args(port, drain_timeout=drain_timeout),
                env=env,
                log_path=logs / f"node-{index}.log",
            )
        )
        for index, port in enumerate(ports)
    ]
    api = nodes[0].session(nodes[0].api_key())
    return Cluster(database_url, nodes, ports, api)


@pytest.fixture
def cluster_db() -> Iterator[str]:
    require_redis()
    with throwaway_database("telepath_scaleout") as url:
        yield url


def scenario(tmp: Path, hold_ms: int) -> Path:
    text = (SCENARIOS / "uac_auth_call_or_bye.xml.in").read_text()
    path = tmp / f"uac_auth_call_or_bye_{hold_ms}.xml"
    path.write_text(text.replace("@HOLD_MS@", str(hold_ms)))
    return path


def test_drained_node_hands_new_calls_to_the_other(cluster_db: str, tmp_path: Path) -> None:
    kamailio_binary()
    with ExitStack() as stack:
        cluster = start_cluster(stack, cluster_db, tmp_path / "nodes", drain_timeout=3)
        user, password = cluster.create_trunk()
        proxy = stack.enter_context(kamailio(tmp_path / "kamailio", cluster.sip_ports))
        node_a, node_b = cluster.node_name(0), cluster.node_name(1)

        # Twelve long calls through Kamailio: the Call-ID hash puts them on both nodes.
        first = sipp_calls(
            scenario(tmp_path, 15000),
            proxy,
            service=user,
            username=user,
            password=password,
            calls=12,
            cwd=tmp_path / "first",
        )

        def running() -> list[dict[str, object]]:
            return [r for r in calls_by_node(cluster_db) if r["end_time"] is None]

        wait_for(lambda: len(running()) == 12, 20, "twelve running calls")
        on_a = [r for r in running() if r["node"] == node_a]
        on_b = [r for r in running() if r["node"] == node_b]
        assert on_a and on_b, f"calls not spread: {running()}"

        # Drain node A while its calls run.
        drained_at = time.monotonic()
        cluster.nodes[0].process.send_signal(signal.SIGTERM)
        ready = cluster.nodes[0].url + "/readyz"
        wait_for(lambda: requests.get(ready, timeout=5).status_code == 503, 5, "node A unready")
        assert requests.get(ready, timeout=5).json() == {"status": "unready", "reason": "draining"}
        # Its API keeps serving during the drain.
        listed = cluster.api.get(cluster.nodes[0].url + "/v1/calls", timeout=10)
        assert listed.status_code == 200, listed.text
        assert requests.get(cluster.nodes[1].url + "/readyz", timeout=5).status_code == 200

        # New calls through Kamailio all land on node B (A answers 503, Kamailio moves on).
        second_cwd = tmp_path / "second"
        second = sipp_calls(
            scenario(tmp_path, 500),
            proxy,
            service=user,
            username=user,
            password=password,
            calls=10,
            cwd=second_cwd,
        )
        # Node A exits after its drain deadline (3 s): not at once, not at the callers' BYE (15 s).
        try:
            exit_code = cluster.nodes[0].process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("node A still runs 30 s after SIGTERM:\n" + cluster.nodes[0].log_tail())
        assert exit_code == 0, cluster.nodes[0].log_tail()
        assert 2.5 <= time.monotonic() - drained_at < 12
        sipp_done(second, second_cwd)
        sipp_done(first, tmp_path / "first")
        # Some of them hashed to node A first: Kamailio logged the 503 and failed over
        # (10 calls: all hashing to B by chance is a 1 in 1024 event).
        log = (tmp_path / "kamailio" / "kamailio.log").read_text(errors="replace")
        assert f"node sip:127.0.0.1:{cluster.sip_ports[0]} answered 503" in log, log[-3000:]
        # ... and node A said why in its own log.
        assert "reason=draining status=503" in cluster.nodes[0].log_tail(1_000_000)

        # sipp is done once its BYEs are answered; node B finalises those records right
        # after (a moment later on a loaded machine).
        wait_for(
            lambda: all(r["end_time"] is not None for r in calls_by_node(cluster_db)),
            15,
            "every call record finalised",
        )
        records = calls_by_node(cluster_db)
        assert len(records) == 22, records  # no call record lost
        unfinished = [r for r in records if r["end_time"] is None or r["status"] != "completed"]
        assert not unfinished, unfinished
        first_ids = {r["sip_call_id"] for r in on_a + on_b}
        later = [r for r in records if r["sip_call_id"] not in first_ids]
        assert len(later) == 10
        assert {r["node"] for r in later} == {node_b}
        by_id = {r["sip_call_id"]: r for r in records}
        for row in on_a:  # ended by the drain
            final = by_id[row["sip_call_id"]]
            assert (final["disconnect_reason"], final["blame"]) == ("shutdown", "system"), final
        for row in on_b:  # untouched: the caller hung up after 15 s
            final = by_id[row["sip_call_id"]]
            assert (final["disconnect_reason"], final["blame"]) == ("hangup", "caller"), final


def test_trunk_cap_holds_across_nodes(cluster_db: str, tmp_path: Path) -> None:
    with ExitStack() as stack:
        cluster = start_cluster(stack, cluster_db, tmp_path / "nodes", drain_timeout=1)
        user, password = cluster.create_trunk(max_concurrent_calls=1)
        # One call on node A …
        long_call = sipp_calls(
            scenario(tmp_path, 6000),
            cluster.sip_ports[0],
            service=user,
            username=user,
            password=password,
            calls=1,
            cwd=tmp_path / "a",
        )
        wait_for(
            lambda: any(r["end_time"] is None for r in calls_by_node(cluster_db)), 15, "a call"
        )
        # … so node B refuses the trunk's second call: busy.
        status = SipClient(cluster.sip_ports[1]).invite_status(user, password)
        assert status == 486
        sipp_done(long_call, tmp_path / "a")
        refused = [r for r in calls_by_node(cluster_db) if r["status"] == "busy"]
        assert [r["node"] for r in refused] == [cluster.node_name(1)]


def test_challenge_from_one_node_verifies_on_the_other(cluster_db: str, tmp_path: Path) -> None:
    with ExitStack() as stack:
        cluster = start_cluster(stack, cluster_db, tmp_path / "nodes", drain_timeout=1)
        user, password = cluster.create_trunk()
        client = SipClient(cluster.sip_ports[0])
        challenge = client.challenge(user)
        # The authenticated INVITE goes to node B, which never saw the challenge.
        answer = client.send_invite(
            user, port=cluster.sip_ports[1], challenge=(challenge, password)
        )
        assert answer == 200
        client.hang_up(cluster.sip_ports[1])
        wait_for(
            lambda: [r["status"] for r in calls_by_node(cluster_db)] == ["completed"],
            10,
            "the call's final record",
        )
        assert [r["node"] for r in calls_by_node(cluster_db)] == [cluster.node_name(1)]
