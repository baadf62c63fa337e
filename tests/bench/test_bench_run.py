"""The benchmark itself, end to end and small: ``python -m bench.run`` for N=2 on every path.

A real gateway process, the fake agent and the load generators (SIP PCMU, SIP G.722 ↔ L16,
Twilio media streams) on loopback, 1.5 s of steady state per path; the report must
carry every figure with sane values.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.report import percentile
from gateway import native

ROOT = Path(__file__).resolve().parents[2]
FRAMES_PER_SECOND = 50


def _run(tmp_path: Path) -> tuple[dict[str, Any], str]:
    report = tmp_path / "report.json"
    done = subprocess.run(
        [
            sys.executable, "-m", "bench.run",
            "--ns", "2", "--paths", "pcmu,g722,twilio",
            "--duration", "1.5", "--settle", "0.6", "--max-n", "0",
            "--json", str(report),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(report.read_text()), done.stdout


def test_report_has_every_figure_with_sane_values(tmp_path: Path) -> None:
    report, table = _run(tmp_path)

    machine = report["machine"]
    assert machine["nproc"] >= 1 and machine["python"].startswith("3.")
    runs = {run["path"]: run for run in report["runs"]}
    assert set(runs) == {"pcmu", "g722", "twilio"}
    # The media streams went to the gateway's --media-listen, the default.
    assert runs["twilio"]["carrier_socket"] == "listener"
    assert "carrier_socket" not in runs["pcmu"]

    for path, run in runs.items():
        assert (run["calls"], run["answered"], run["failed"]) == (2, 2, 0), path
        assert 1.4 <= run["window_seconds"] <= 5, path
        # The gateway's own runtime (--loop auto): uvloop, start-up heap frozen.
        assert run["event_loop"] == "uvloop" and run["gc_frozen_objects"] > 10_000, path
        # CPU: the gateway did real work, less than the whole machine.
        assert 0 < run["gateway_cores"] < 2, path
        assert run["cores_per_call"] == run["gateway_cores"] / 2
        assert 0 < run["generator_cores"] < 2 and 0 < run["agent_cores"] < 2, path
        assert 50 < run["gateway_rss_mb"] < 2000, path
        assert -100_000 < run["rss_per_call_kb"] < 100_000, path
        # Every frame sent in the window was accounted for, and nearly all arrived.
        sent_in_window = run["c2a_frames"]
        assert sent_in_window >= 2 * FRAMES_PER_SECOND * (run["window_seconds"] - 0.3), path
        assert run["c2a_lost"] <= sent_in_window // 20, path
        assert run["caller_to_agent_ms"]["samples"] == sent_in_window - run["c2a_lost"]
        for figure in ("caller_to_agent_ms", "agent_to_caller_ms"):
            dist = run[figure]
            assert dist["samples"] > 0, (path, figure)
            # Latency is positive (the agent cannot see a frame before it was sent) and
            # bounded on an idle loopback. No lower bound beyond that: without a jitter
            # buffer a caller frame crosses the gateway in well under a millisecond.
            assert 0 < dist["p50"] <= dist["p99"] <= dist["max"] < 2000, (path, figure, dist)
        # SIP: the pacer sends every 20 ms; media streams: the echoed frames only.
        share = 1.0 if path != "twilio" else 0.8
        assert run["rtp_out_packets"] >= share * 2 * FRAMES_PER_SECOND * run["window_seconds"]
        assert 0 <= run["rtp_out_lost"] <= run["rtp_out_packets"] // 20, path
        assert 0 <= run["rtp_out_jitter_ms_mean"] < 20, path
        assert run["setup_ms"]["samples"] == 2 and 0 < run["setup_ms"]["p95"] < 15_000, path
        assert run["setup_rate_per_s"] > 0, path
        # What else the machine did in the window, and the gateway's own pauses.
        assert 0 < run["machine_busy_cores"] <= machine["nproc"] + 0.2, path
        assert 0 <= run["gateway_system_share"] <= 1, path
        assert run["gc_pauses_over_5ms"] == sum(run["gc_pauses_by_generation"].values())
        assert run["gc_pause_max_ms"] >= 0, path
        # The checkout as it is: compiled in CI (scripts/test.sh), maybe not elsewhere.
        assert run["compiled_modules"] == len(native.compiled()), path

    # The table names both paths and each figure's column.
    for needle in ("pcmu", "g722", "twilio", "c/call", "KB/call", "c2a p50/p99/max", "cps"):
        assert needle in table


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("valgrind") is None and not os.environ.get("CI"),
    reason="valgrind is not installed (scripts/test.sh installs it in CI)",
)
def test_callgrind_counts_the_gateways_instructions_per_frame_pair(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    done = subprocess.run(
        [
            sys.executable, "-m", "bench.run",
            "--ns", "1", "--paths", "pcmu", "--duration", "3", "--settle", "1",
            "--max-n", "0", "--json", str(report), "--callgrind", str(tmp_path / "cg"),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = json.loads(report.read_text())["runs"]
    assert run["answered"] == 1, run.get("error")
    # Counted in the window only (start-up under valgrind runs uncounted): one frame
    # pair takes a few hundred thousand instructions; a count that included start-up or
    # missed the window would be orders of magnitude off.
    assert 50_000 < run["instructions_per_frame_pair"] < 3_000_000, run
    assert list((tmp_path / "cg").glob("callgrind-pcmu-1.out.*")), "no window dump"


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
