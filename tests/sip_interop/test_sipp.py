"""sipp (Debian sip-tester 3.6) scenarios against a live gateway over UDP.

Each scenario in ``scenarios/`` is a real SIP exchange with digest authentication (MD5,
the first challenge, as sipp requires); the call records written through the REST API
are checked afterwards.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ingress.sip.digest import Algorithm, ha1
from tests.sip_interop.support import (
    SCENARIOS,
    SIPP,
    Gateway,
    RecordingAgent,
    free_udp_port,
    gateway,
    rtp_range,
    run_sipp,
    sip_call_id,
    sipp_logs,
    sipp_messages,
)

pytestmark = pytest.mark.slow


def run_sipp_builtin(
    name: str, gw: Gateway, *, service: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    """One call of sipp's built-in scenario ``name`` (no authentication)."""
    args = [
        SIPP,
        "-sn",
        name,
        f"127.0.0.1:{gw.sip_port}",
        "-s",
        service,
        "-i",
        "127.0.0.1",
        "-p",
        str(free_udp_port()),
        "-m",
        "1",
        "-d",
        "500",
        "-timeout",
        "20",
        "-timeout_error",
        "-trace_err",
        "-trace_msg",
        "-nostdin",
    ]
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=40)


def sipp_ok(result: object, cwd: Path) -> None:
    assert getattr(result, "returncode", None) == 0, sipp_logs(cwd)


def call_ok(
    gw: Gateway,
    scenario: str | Path,
    cwd: Path,
    *,
    service: str,
    username: str | None = None,
    password: str | None = None,
    extra: Sequence[str] = (),
) -> None:
    """Run one call of ``scenario`` and require sipp to finish it as scripted."""
    result = run_sipp(
        scenario, gw, service=service, username=username, password=password, cwd=cwd, extra=extra
    )
    sipp_ok(result, cwd)


def trunk_call_ok(
    gw: Gateway,
    trunk: dict[str, Any],
    scenario: str | Path,
    cwd: Path,
    *,
    password: str | None = None,
    extra: Sequence[str] = (),
) -> None:
    """``call_ok`` as the trunk's SIP user, with its password unless ``password`` is given."""
    user = trunk["sip_username"]
    secret = trunk["sip_password"] if password is None else password
    call_ok(gw, scenario, cwd, service=user, username=user, password=secret, extra=extra)


def start_long_call(
    pool: ThreadPoolExecutor, gw: Gateway, trunk: dict[str, Any], cwd: Path, **calls: str
) -> Future[subprocess.CompletedProcess[str]]:
    """A 4 s call as ``trunk``'s user in ``pool``, once ``gw.calls(**calls)`` shows it up."""
    user = trunk["sip_username"]
    first = pool.submit(
        run_sipp,
        "uac_auth_call.xml",
        gw,
        service=user,
        username=user,
        password=trunk["sip_password"],
        cwd=cwd,
        extra=["-d", "4000"],
    )
    deadline = time.monotonic() + 10
    while not [c for c in gw.calls(**calls) if c["status"] == "in-progress"]:
        assert time.monotonic() < deadline, "the first call never went up"
        time.sleep(0.2)
    return first


def subdirs(tmp: Path, *names: str) -> list[Path]:
    folders = [tmp / name for name in names]
    for folder in folders:
        folder.mkdir()
    return folders


def messages_with(cwd: Path, marker: str) -> list[str]:
    """The SIP messages in sipp's log that contain ``marker``."""
    return [m for m in sipp_messages(cwd).split("-----") if marker in m]


def record_of(gw: Gateway, cwd: Path) -> dict[str, Any]:
    """The call record of the call sipp logged in ``cwd``."""
    return gw.call_by_sip_id(sip_call_id(cwd))


def status_scenario(tmp: Path, template: str, status: int) -> Path:
    text = (SCENARIOS / f"{template}.xml.in").read_text().replace("__STATUS__", str(status))
    path = tmp / f"{template}_{status}.xml"
    path.write_text(text)
    return path


def refused_scenario(tmp: Path, status: int) -> Path:
    return status_scenario(tmp, "uac_auth_refused", status)


def invite_refused_scenario(tmp: Path, status: int) -> Path:
    return status_scenario(tmp, "uac_invite_refused", status)


def test_authenticated_call_caller_hangs_up(gw: Gateway, tmp_path: Path) -> None:
    with RecordingAgent() as agent:
        trunk = gw.create_trunk(ai_provider="custom", custom_endpoint=agent.url)
        trunk_call_ok(gw, trunk, "uac_auth_call.xml", tmp_path, extra=["-d", "1500"])
        record = record_of(gw, tmp_path)
    assert record["status"] == "completed"
    assert record["disconnect_reason"] == "hangup" and record["blame"] == "caller"
    assert record["from_number"] == "+15551230001"
    assert record["sip_status"] == 200
    # The challenged first INVITE (same Call-ID) opens the timeline (issue 7's event list).
    names = [e["event"] for e in record["timeline"]]
    assert names[:3] == ["invite", "challenge", "authenticated"], names
    assert names.index("ringing") < names.index("answered")
    [start] = agent.starts
    assert start["headers"]["X-Customer-Id"] == "cust-42"  # X- headers reach the agent as sent
    assert start["headers"]["X-SIP-Call-ID"] == record["sip_call_id"]
    assert start["from"] == "+15551230001"
    # The 200 OK carried our Contact (public address) and the SDP answer.
    log = sipp_messages(tmp_path)
    assert "Contact: <sip:telepath@127.0.0.1:" in log


def test_agent_hangs_up_and_we_send_bye(gw: Gateway, tmp_path: Path) -> None:
    with RecordingAgent(hangup_after=1.0) as agent:
        trunk = gw.create_trunk(ai_provider="custom", custom_endpoint=agent.url)
        trunk_call_ok(gw, trunk, "uac_auth_wait_bye.xml", tmp_path)
        record = record_of(gw, tmp_path)
    assert record["status"] == "completed"
    assert record["disconnect_reason"] == "agent_hangup", record
    assert record["blame"] == "ai_agent"
    bye = messages_with(tmp_path, "BYE sip:")
    assert bye and "CSeq:" in bye[0]


def test_cancel_while_ringing(gw: Gateway, tmp_path: Path) -> None:
    with RecordingAgent(connect_delay=3.0) as agent:
        trunk = gw.create_trunk(ai_provider="custom", custom_endpoint=agent.url)
        trunk_call_ok(gw, trunk, "uac_auth_cancel.xml", tmp_path)
        record = record_of(gw, tmp_path)
    assert record["status"] == "canceled", record
    assert record["disconnect_reason"] == "cancel" and record["blame"] == "caller"
    assert record["sip_status"] == 487
    assert record["answer_time"] is None


def test_wrong_password_is_challenged_again(gw: Gateway, tmp_path: Path) -> None:
    trunk = gw.create_trunk()
    trunk_call_ok(gw, trunk, refused_scenario(tmp_path, 401), tmp_path, password="not-the-password")
    # The challenge itself is no failure; the wrong password is, and the operator sees it.
    [record] = gw.calls(trunk_id=trunk["id"])
    assert record["status"] == "failed" and record["disconnect_reason"] == "auth_failed"
    assert record["blame"] == "carrier" and record["sip_status"] == 401
    assert "wrong password" in record["disconnect_explanation"]


def test_unknown_user_reads_like_a_wrong_password(gw: Gateway, tmp_path: Path) -> None:
    known = gw.create_trunk()
    call_ok(
        gw,
        refused_scenario(tmp_path, 401),
        tmp_path,
        service="nobody-here",
        username="nobody-here",
        password="whatever",
    )
    unknown_log = sipp_messages(tmp_path)
    [other] = subdirs(tmp_path, "known")
    trunk_call_ok(gw, known, refused_scenario(other, 401), other, password="wrong")

    # The same challenges (realm, algorithms, qop) in the same order for both.
    def challenges(log: str) -> list[str]:
        return [
            line.split("nonce=")[0] + line.split("algorithm=")[1]
            for line in log.splitlines()
            if line.startswith("WWW-Authenticate:")
        ]

    assert challenges(unknown_log) == challenges(sipp_messages(other))


def test_inactive_trunk_gets_480(gw: Gateway, tmp_path: Path) -> None:
    trunk = gw.create_trunk(status="inactive")
    trunk_call_ok(gw, trunk, refused_scenario(tmp_path, 480), tmp_path)
    record = record_of(gw, tmp_path)
    assert record["status"] == "failed" and record["sip_status"] == 480


def test_number_not_allowed_gets_403(gw: Gateway, tmp_path: Path) -> None:
    trunk = gw.create_trunk(inbound_numbers=["+15550009999"])
    trunk_call_ok(gw, trunk, refused_scenario(tmp_path, 403), tmp_path)
    record = record_of(gw, tmp_path)
    assert record["sip_status"] == 403
    assert "number not allowed" in record["disconnect_explanation"]


def test_allowed_number_gets_through(gw: Gateway, tmp_path: Path) -> None:
    trunk = gw.create_trunk(inbound_numbers=["+15551230001"])  # sipp's From number
    trunk_call_ok(gw, trunk, "uac_auth_call.xml", tmp_path, extra=["-d", "500"])


def test_reinvite_hold_and_resume(gw: Gateway, tmp_path: Path) -> None:
    trunk = gw.create_trunk()
    trunk_call_ok(gw, trunk, "uac_auth_hold_resume.xml", tmp_path)
    record = record_of(gw, tmp_path)
    # The call survived both re-INVITEs: the caller's final BYE ended it.
    assert record["status"] == "completed" and record["blame"] == "caller"
    assert record["duration"] >= 1.4
    answers = [
        m
        for m in sipp_messages(tmp_path).split("-----")
        if "SIP/2.0 200 OK" in m
        and "CSeq: 3 INVITE" in m
        or "CSeq: 4 INVITE" in m
        and "SIP/2.0 200 OK" in m
    ]
    bodies = "\n".join(answers)
    assert "a=recvonly" in bodies and "a=sendrecv" in bodies  # hold mirrored, then resumed
    # The SIP leg's own events reach the record's timeline, in order, after the answer.
    events = [(e["event"], e.get("detail") or {}) for e in record["timeline"]]
    names = [name for name, _ in events]
    assert names.index("invite") < names.index("ringing") < names.index("answered")
    reinvites = [detail for name, detail in events if name == "reinvite"]
    assert [d["hold"] for d in reinvites] == [True, False], events
    assert names.index("answered") < names.index("reinvite")
    assert names.index("bye_received") > max(i for i, n in enumerate(names) if n == "reinvite")
    assert "hangup" in names  # the bridge's end of the call
    offsets = [e["offset_ms"] for e in record["timeline"]]
    assert offsets == sorted(offsets)
    # The RTP stream's figures arrive under the record's names.
    assert {"packets_sent", "jitter_buffer_ms"} <= set(record["metrics"]["media"])


def test_options_keepalive(gw: Gateway, tmp_path: Path) -> None:
    call_ok(gw, "options.xml", tmp_path, service="anyone")


def test_calls_keep_working_one_after_another(gw: Gateway, tmp_path: Path) -> None:
    trunk = gw.create_trunk()
    for cwd in subdirs(tmp_path, "0", "1", "2"):
        trunk_call_ok(gw, trunk, "uac_auth_call.xml", cwd, extra=["-d", "300"])
    time.sleep(0.5)
    assert [c["status"] for c in gw.calls(trunk_id=trunk["id"])] == ["completed"] * 3


def test_unreachable_agent_gets_503_with_reason(gw: Gateway, tmp_path: Path) -> None:
    trunk = gw.create_trunk(ai_provider="custom", custom_endpoint="ws://127.0.0.1:9/agent")
    trunk_call_ok(gw, trunk, refused_scenario(tmp_path, 503), tmp_path)
    refusal = messages_with(tmp_path, "SIP/2.0 503")[0]
    assert "Reason: SIP;cause=503;text=" in refusal
    assert "Retry-After:" in refusal
    record = record_of(gw, tmp_path)
    assert record["status"] == "failed" and record["blame"] == "ai_agent", record
    assert record["sip_status"] == 503


def test_trunk_at_its_cap_gets_486(gw: Gateway, tmp_path: Path) -> None:
    trunk = gw.create_trunk(max_concurrent_calls=1)
    first_dir, second_dir = subdirs(tmp_path, "first", "second")
    with ThreadPoolExecutor(1) as pool:
        first = start_long_call(pool, gw, trunk, first_dir, trunk_id=trunk["id"])
        trunk_call_ok(gw, trunk, refused_scenario(second_dir, 486), second_dir)
        sipp_ok(first.result(), first_dir)
    busy = record_of(gw, second_dir)
    assert busy["status"] == "busy" and busy["sip_status"] == 486


def test_address_authenticated_trunk_needs_no_challenge(gw: Gateway, tmp_path: Path) -> None:
    """auth_mode ip (Twilio Elastic SIP Trunking style): sipp's built-in UAC, which does no
    digest at all, gets through from an allowed address and 403 from any other."""
    allowed = gw.create_trunk(auth_mode="ip", allowed_ips=["127.0.0.0/8"])
    result = run_sipp_builtin("uac", gw, service=allowed["sip_username"], cwd=tmp_path)
    sipp_ok(result, tmp_path)
    assert "401 Unauthorized" not in sipp_messages(tmp_path)
    [call] = gw.calls(trunk_id=allowed["id"])
    assert call["sip_status"] == 200
    [other] = subdirs(tmp_path, "other")
    denied = gw.create_trunk(auth_mode="ip", allowed_ips=["10.0.0.0/8"])
    result = run_sipp_builtin("uac", gw, service=denied["sip_username"], cwd=other)
    assert result.returncode != 0
    assert "SIP/2.0 403 Forbidden" in sipp_messages(other)


def test_no_free_rtp_port_gets_503(tmp_path: Path) -> None:
    """A gateway whose --rtp-ports hold one port pair: a second simultaneous call is
    refused with 503 and Retry-After (the first one keeps its media)."""
    low = rtp_range(4)[0] + 1  # odd LO, LO+3: exactly one even/odd pair (LO+1, LO+2)
    with gateway(tmp_path / "gw", rtp_ports=(low, low + 3)) as small:
        trunk = small.create_trunk()
        first_dir, second_dir = subdirs(tmp_path, "first", "second")
        with ThreadPoolExecutor(1) as pool:
            first = start_long_call(pool, small, trunk, first_dir)
            trunk_call_ok(small, trunk, refused_scenario(second_dir, 503), second_dir)
            sipp_ok(first.result(), first_dir)
        refused = record_of(small, second_dir)
        assert refused["sip_status"] == 503 and refused["blame"] == "system"
        assert "RTP port" in refused["disconnect_explanation"]


def test_rejections_are_logged_once_without_secrets(tmp_path: Path) -> None:
    """Each refusal: one INFO line with user, source, reason and status; no password, HA1
    or Authorization value anywhere in the logs."""
    with gateway(tmp_path / "gw") as own:
        trunk = own.create_trunk(inbound_numbers=["+15550009999"])
        user, password = trunk["sip_username"], trunk["sip_password"]
        wrong, number = subdirs(tmp_path, "wrong", "number")
        trunk_call_ok(own, trunk, refused_scenario(wrong, 401), wrong, password="Wrong-" + password)
        trunk_call_ok(own, trunk, refused_scenario(number, 403), number)
        time.sleep(0.5)
        own_failed = next(c for c in own.calls() if c["disconnect_reason"] == "auth_failed")
        own.process.terminate()
        _, logs = own.process.communicate(timeout=20)
    refusals = [line for line in logs.splitlines() if "SIP INVITE refused" in line]
    assert len(refusals) == 2, logs[-3000:]
    # The wrong password left a failed record for the operator (reason auth_failed).
    failed = own_failed
    assert failed["status"] == "failed" and failed["disconnect_reason"] == "auth_failed"
    assert failed["blame"] == "carrier" and failed["sip_status"] == 401
    assert f"user='{user}'" in refusals[0] and "reason=wrong credentials status=401" in refusals[0]
    assert "source=127.0.0.1:" in refusals[0] and "transport=UDP" in refusals[0]
    # Structured logs: every call-related line carries the call's id.
    assert all(json.loads(line)["call_id"].startswith("call_") for line in refusals)
    assert "reason=number not allowed status=403" in refusals[1]
    authorization = [
        line for line in sipp_messages(wrong).splitlines() if line.startswith("Authorization:")
    ]
    response = authorization[0].split('response="')[1].split('"')[0]
    ha1_md5 = ha1(user, "sip.interop.test", password, Algorithm.MD5)
    ha1_sha256 = ha1(user, "sip.interop.test", password, Algorithm.SHA256)
    for secret in (password, "Wrong-" + password, response, ha1_md5, ha1_sha256):
        assert secret not in logs
    assert "Authorization" not in logs


def test_late_offer_answered_in_the_ack(gw: Gateway, tmp_path: Path) -> None:
    trunk = gw.create_trunk()
    trunk_call_ok(gw, trunk, "uac_auth_late_offer.xml", tmp_path, extra=["-d", "1000"])
    ok = messages_with(tmp_path, "SIP/2.0 200 OK")[0]
    assert "m=audio" in ok and "RTP/AVP 0 101" in ok  # our offer: the leg's one codec
    record = record_of(gw, tmp_path)
    assert record["status"] == "completed" and record["codec"] == "pcmu/8000"
    assert record["metrics"]["media"]["packets_sent"] > 10  # RTP started once the ACK answered


def test_global_call_cap_gets_503_with_retry_after(tmp_path: Path) -> None:
    """``--max-calls 1``: while one call runs, the next INVITE (another trunk, so not its
    own cap) gets 503 with Retry-After before any challenge; after it, calls go through."""
    with gateway(tmp_path / "gw", extra_args=["--max-calls", "1"]) as capped:
        first_trunk, other_trunk = capped.create_trunk(), capped.create_trunk()
        first_dir, second_dir, third_dir = subdirs(tmp_path, "first", "second", "3")
        with ThreadPoolExecutor(1) as pool:
            first = start_long_call(pool, capped, first_trunk, first_dir)
            call_ok(
                capped,
                invite_refused_scenario(second_dir, 503),
                second_dir,
                service=other_trunk["sip_username"],
            )
            sipp_ok(first.result(), first_dir)
        refusal = messages_with(second_dir, "SIP/2.0 503")
        assert refusal and "Retry-After:" in refusal[0]
        assert "401 Unauthorized" not in sipp_messages(second_dir)  # refused before any work
        # The cap frees up with the call: the other trunk now gets through.
        trunk_call_ok(capped, other_trunk, "uac_auth_call.xml", third_dir, extra=["-d", "300"])
        capped.process.terminate()
        _, logs = capped.process.communicate(timeout=20)
    assert "reason=gateway at capacity status=503" in logs


def test_overloaded_gateway_refuses_new_calls_with_503(tmp_path: Path) -> None:
    """gateway.overload: with a lag threshold no event loop can meet (0.01 ms; asyncio's
    timers run a fraction of a millisecond late at best), the process counts as overloaded
    from its first probes, and a new INVITE gets 503 with Retry-After before any challenge."""
    args = ["--event-loop", "asyncio", "--overload-lag-ms", "0.01"]
    with gateway(tmp_path / "gw", extra_args=args) as busy:
        trunk = busy.create_trunk()
        time.sleep(1.0)  # a few probes
        call_ok(
            busy,
            invite_refused_scenario(tmp_path, 503),
            tmp_path,
            service=trunk["sip_username"],
        )
        refusal = messages_with(tmp_path, "SIP/2.0 503")
        assert refusal and "Retry-After: 5" in refusal[0]
        assert "401 Unauthorized" not in sipp_messages(tmp_path)
        busy.process.terminate()
        _, logs = busy.process.communicate(timeout=20)
    assert "overloaded: the event loop runs" in logs
    assert "reason=overloaded status=503" in logs


def test_trunk_with_early_media_answers_183_with_sdp(gw: Gateway, tmp_path: Path) -> None:
    trunk = gw.create_trunk(provider_config={"early_media": True})
    assert trunk["provider_config"]["early_media"] is True  # accepted and kept by the API
    trunk_call_ok(gw, trunk, "uac_auth_early_media.xml", tmp_path, extra=["-d", "500"])
    log = sipp_messages(tmp_path)
    assert "SIP/2.0 180" not in log
    progress = [m for m in log.split("-----") if "SIP/2.0 183" in m][0]
    assert "Content-Type: application/sdp" in progress
    record = record_of(gw, tmp_path)
    assert record["status"] == "completed"
