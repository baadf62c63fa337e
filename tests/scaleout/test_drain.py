"""Graceful drain (gateway/drain.py): the state, the drain over a real ``CallRunner`` with
the echo agent and the in-memory reference leg, ``/readyz``, the settings, and a live node
that is drained and hurried by signals over real SIP sockets."""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import time
from pathlib import Path

import pytest

from gateway.app import create_app
from gateway.drain import DrainState, drain_calls
from gateway.services import Services
from gateway.settings import SettingsError, add_serve_arguments, load_settings
from media import PCMU, DisconnectReason
from models import Call
from tests.calls.conftest import services as services  # noqa: F401 - the fixture
from tests.calls.conftest import wait_for
from tests.calls.test_runner import context, make_trunk, start_call
from tests.scaleout.support import SipClient
from tests.sip_interop.support import free_udp_port, rtp_range
from tests.support.live_server import live_server
from tests.support.memory_leg import MemoryLeg

# --- the state (pure, time passed in) ---


def test_state_before_and_during_a_drain() -> None:
    state = DrainState()
    assert not state.draining
    assert state.remaining(100.0) == math.inf
    assert state.retry_after(100.0) == 5
    state.begin(100.0, 30.0)
    assert state.draining
    assert state.remaining(110.0) == 20.0
    assert state.retry_after(110.2) == 20  # ceil(19.8)
    assert state.remaining(200.0) == 0.0
    assert state.retry_after(200.0) == 1  # never 0 (RFC 3261 §20.33)
    state.begin(150.0, 300.0)  # a second signal never lengthens the drain
    assert state.remaining(110.0) == 20.0


def test_negative_timeout_means_now() -> None:
    state = DrainState()
    state.begin(5.0, -3.0)
    assert state.remaining(5.0) == 0.0


# --- drain_calls over the real call runner ---


async def test_calls_that_end_by_themselves_keep_their_reason(services: Services) -> None:
    trunk = await make_trunk(services)
    leg = MemoryLeg(PCMU, context())
    task = await start_call(services, trunk, leg)
    await wait_for(lambda: leg.answered_at is not None)
    drain = asyncio.create_task(drain_calls(services.drain, services.runner, deadline_s=10))
    await asyncio.sleep(0.2)
    assert services.drain.draining and not drain.done()  # the call still runs
    leg.hang_up()
    outcome = await asyncio.wait_for(drain, 5)
    await task
    assert (outcome.ended_by_themselves, outcome.ended_by_us, outcome.unfinished) == (1, 0, 0)
    call = await Call.get()
    assert (call.disconnect_reason, call.blame) == ("hangup", "caller")


async def test_the_deadline_ends_calls_with_shutdown(services: Services) -> None:
    trunk = await make_trunk(services)
    legs = [MemoryLeg(PCMU, context(sip_call_id=f"c{i}@192.0.2.10")) for i in range(2)]
    tasks = [await start_call(services, trunk, leg) for leg in legs]
    await wait_for(lambda: all(leg.answered_at is not None for leg in legs))
    loop = asyncio.get_running_loop()
    started = loop.time()
    outcome = await drain_calls(services.drain, services.runner, deadline_s=0.3)
    assert loop.time() - started >= 0.3
    assert (outcome.ended_by_themselves, outcome.ended_by_us, outcome.unfinished) == (0, 2, 0)
    for task in tasks:
        assert (await task).end.reason is DisconnectReason.SHUTDOWN
    assert all(leg.hung_up is not None for leg in legs)
    calls = await Call.all()
    assert len(calls) == 2
    for call in calls:  # finalised before drain_calls returned
        assert call.end_time is not None
        assert (call.status, call.disconnect_reason, call.blame) == (
            "completed",
            "shutdown",
            "system",
        )


async def test_a_second_signal_hurries_the_drain(services: Services) -> None:
    trunk = await make_trunk(services)
    leg = MemoryLeg(PCMU, context())
    task = await start_call(services, trunk, leg)
    await wait_for(lambda: leg.answered_at is not None)
    hurry = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_later(0.2, hurry.set)
    started = loop.time()
    outcome = await drain_calls(services.drain, services.runner, deadline_s=600, hurry=hurry)
    assert loop.time() - started < 5
    assert outcome.ended_by_us == 1
    assert (await task).end.reason is DisconnectReason.SHUTDOWN
    call = await Call.get()
    assert call.disconnect_reason == "shutdown" and call.end_time is not None


async def test_readyz_turns_unready_while_draining(services: Services) -> None:
    client = create_app(services).test_client()
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    services.drain.begin(0.0, 30.0)
    draining = await client.get("/readyz")
    assert draining.status_code == 503
    assert await draining.get_json() == {"status": "unready", "reason": "draining"}
    assert (await client.get("/healthz")).status_code == 200  # alive all the same


# --- settings ---


def test_drain_timeout_from_flag_and_environment() -> None:
    assert load_settings(environ={}).drain_timeout == 30.0
    assert load_settings(environ={"TELEPATH_DRAIN_TIMEOUT": "12.5"}).drain_timeout == 12.5
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args(["--drain-timeout", "0"])
    assert load_settings(args, environ={"TELEPATH_DRAIN_TIMEOUT": "9"}).drain_timeout == 0.0


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf", "86401"])
def test_bad_drain_timeouts_are_clear_errors(value: str) -> None:
    with pytest.raises(SettingsError, match="TELEPATH_DRAIN_TIMEOUT"):
        load_settings(environ={"TELEPATH_DRAIN_TIMEOUT": value})


# --- a live node: SIGTERM drains, new INVITEs get 503, a second SIGTERM ends at once ---


@pytest.mark.slow
def test_live_node_drains_and_hurries_on_signals(tmp_path: Path) -> None:
    sip_port = free_udp_port()
    low, high = rtp_range(40)
    args = [
        "--sip",
        f"127.0.0.1:{sip_port}",
        "--rtp-ports",
        f"{low}-{high}",
        "--public-address",
        "127.0.0.1",
        "--drain-timeout",
        "600",
    ]
    with live_server(f"sqlite://{tmp_path / 'telepath.db'}", args=args) as server:
        api = server.session(server.api_key())
        body = {
            "name": "drain",
            "ai_provider": "echo",
            "sip_username": "drain-me",
            "sip_password": "Drain-pass-0123456789",
        }
        assert api.post(server.url + "/v1/trunks", json=body, timeout=10).status_code == 201
        caller = SipClient(sip_port)
        assert caller.invite_status("drain-me", body["sip_password"]) == 200

        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        refused = SipClient(sip_port).invite_without_credentials("drain-me")
        assert refused.startswith("SIP/2.0 503"), refused
        retry = SipClient._header(refused, "Retry-After")
        assert retry.isdigit() and 500 <= int(retry) <= 600
        assert server.process.poll() is None  # the call keeps the node up

        hurried_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        bye = caller.answer_bye()
        assert "BYE " in bye.split("\r\n", 1)[0]
        assert server.process.wait(timeout=20) == 0
        assert time.monotonic() - hurried_at < 10
    rows = _calls(tmp_path / "telepath.db")
    assert rows == [("completed", "shutdown", "system", True)]


def _calls(path: Path) -> list[tuple[str, str, str, bool]]:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        found = conn.execute(
            "SELECT status, disconnect_reason, blame, end_time IS NOT NULL FROM calls"
        ).fetchall()
    finally:
        conn.close()
    return [(a, b, c, bool(d)) for a, b, c, d in found]


def test_retry_after_is_the_whole_drain_at_its_start_whatever_the_clock() -> None:
    """(now + 600) - now is 600.0000000001 for some ``now``: the header must still say 600."""
    for now in (0.1, 426.717, 449.648, 12345.678):  # 426.717 and 449.648 hit the error
        state = DrainState()
        state.begin(now, 600)
        assert state.retry_after(now) == 600
