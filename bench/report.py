"""The benchmark's figures: process samples from /proc, the per-run summary, the table.

Definitions (docs/performance.md explains them):

* CPU: Δ(utime + stime) of the process over the steady window ÷ the window's wall time
  (cores); per call ÷ N.
* RSS per call: (RSS at the end of the window − RSS before the first INVITE) ÷ N.
* caller→agent latency of frame k: agent receive time − generator send time of k
  (both CLOCK_MONOTONIC), for frames sent inside the window.
* agent→caller latency: agent send time of a frame → the gateway's echo of the mark sent
  right after it (echoed when that audio left as RTP), sampled on every 5th frame.
* lost (caller→agent): frames sent inside the window that never reached the agent
  (counted up to 200 ms before the window's end, the rest may still be in flight);
  late: frames that took more than ``LATE_MS``.
* RTP out: packets the generator received versus the count the RTP timestamps say were
  sent (lost), packets more than 20 ms after their slot (late), RFC 3550 jitter.
"""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass
from typing import Any

from bench.marker import ONSET_FRAME

LATE_MS = 60.0  # caller→agent: three frame times


@dataclass(frozen=True)
class ProcessSample:
    """CPU seconds (user + system) and RSS bytes of one process at one moment."""

    cpu_seconds: float
    rss_bytes: int
    system_seconds: float = 0.0  # the kernel's share of cpu_seconds (stime)


def sample_process(pid: int) -> ProcessSample:
    """Read /proc/<pid>/stat (utime, stime: fields 14, 15) and /proc/<pid>/status (VmRSS)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5), after the name
    rss = 0
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    hz = os.sysconf("SC_CLK_TCK")
    return ProcessSample(ticks / hz, rss, int(fields[12]) / hz)


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat ``cpu`` line:
    everything but idle and iowait), to tell how much of the window others used."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def load_average() -> float:
    with open("/proc/loadavg", encoding="ascii") as loadavg:
        return float(loadavg.read().split()[0])


def machine_info() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def _dist_ms(values_ns: list[int]) -> dict[str, float | None]:
    ms = [v / 1e6 for v in values_ns]
    return {
        "p50": percentile(ms, 50),
        "p95": percentile(ms, 95),
        "p99": percentile(ms, 99),
        "max": max(ms) if ms else None,
        "samples": len(ms),
    }


def _cores(before: list[ProcessSample], after: list[ProcessSample], seconds: float) -> float:
    used = sum(a.cpu_seconds - b.cpu_seconds for b, a in zip(before, after, strict=True))
    return used / seconds


def summarise(
    *,
    path: str,
    calls: int,
    generated: list[dict[str, Any]],
    agent_calls: list[dict[str, Any]],
    window: tuple[int, int],
    baseline: ProcessSample,
    before: dict[str, list[ProcessSample]],
    after: dict[str, list[ProcessSample]],
    ready: list[str],
    setup_seconds: float,
    machine_busy: float = 0.0,
    load: float = 0.0,
) -> dict[str, Any]:
    """Join what the generators and the agents recorded into one run's figures."""
    start, end = window
    seconds = (end - start) / 1e9
    by_id = {c["sip_call_id"]: c for c in agent_calls}
    gen_calls = [c for g in generated for c in g["calls"]]
    answered = [c for c in gen_calls if 200 <= c["status"] < 300]
    c2a: list[int] = []
    lost = late = counted = 0
    a2c: list[int] = []
    concealed = 0
    missing_records = 0
    for call in answered:
        agent = by_id.get(call["sip_call_id"])
        if agent is None:
            missing_records += 1
            continue
        concealed += agent["concealed"]
        received = {k: ns for k, ns in agent["recv"]}
        sent = call["sent"]
        # G.722: the frames before the tone carry no index the agent can read (marker.py).
        first = ONSET_FRAME if path == "g722" else 0
        for k, sent_ns in enumerate(sent):
            if k < first or not start <= sent_ns <= end - 200_000_000:
                continue
            counted += 1
            got = received.get(k)
            if got is None:
                lost += 1
                continue
            c2a.append(got - sent_ns)
            if got - sent_ns > LATE_MS * 1e6:
                late += 1
        a2c += [lat for sent_ns, lat in agent["a2c"] if start <= sent_ns <= end]
    rtp = [c["rtp"] for c in answered]
    out_packets = sum(r["packets"] for r in rtp)
    out_expected = sum(r["expected"] for r in rtp)
    setups = [(c["setup_end"] - c["setup_start"]) for c in answered]
    span = (
        (max(c["setup_end"] for c in answered) - min(c["setup_start"] for c in gen_calls)) / 1e9
        if answered
        else 0.0
    )
    gateway_cores = _cores(before["gateway"], after["gateway"], seconds)
    rss_delta = after["gateway"][0].rss_bytes - baseline.rss_bytes
    jitters = [r["jitter_ms"] for r in rtp if r["judged"]]
    summary: dict[str, Any] = {
        "path": path,
        "calls": calls,
        "answered": len(answered),
        "failed": len(gen_calls) - len(answered),
        "failed_statuses": sorted({c["status"] for c in gen_calls if not 200 <= c["status"] < 300}),
        "window_seconds": seconds,
        "gateway_cores": gateway_cores,
        "cores_per_call": gateway_cores / calls,
        "gateway_system_share": (
            (after["gateway"][0].system_seconds - before["gateway"][0].system_seconds)
            / (after["gateway"][0].cpu_seconds - before["gateway"][0].cpu_seconds)
            if after["gateway"][0].cpu_seconds > before["gateway"][0].cpu_seconds
            else 0.0
        ),
        "gateway_rss_mb": after["gateway"][0].rss_bytes / 2**20,
        "rss_per_call_kb": rss_delta / calls / 1024,
        "generator_cores": _cores(before["generator"], after["generator"], seconds),
        "agent_cores": _cores(before["agent"], after["agent"], seconds),
        "caller_to_agent_ms": _dist_ms(c2a),
        "agent_to_caller_ms": _dist_ms(a2c),
        "c2a_frames": counted,
        "c2a_lost": lost,
        "c2a_late": late,
        "c2a_concealed": concealed,
        "agent_records_missing": missing_records,
        "rtp_out_packets": out_packets,
        "rtp_out_lost": max(0, out_expected - out_packets),
        "rtp_out_late": sum(r["late"] for r in rtp),
        "rtp_out_jitter_ms_mean": sum(jitters) / len(jitters) if jitters else None,
        "rtp_out_jitter_ms_max": max((r["max_jitter_ms"] for r in rtp), default=None),
        "setup_ms": _dist_ms(setups),
        "setup_rate_per_s": len(answered) / span if span > 0 else None,
        "setup_phase_seconds": setup_seconds,
        "machine_busy_cores": machine_busy / seconds,
        "other_processes_cores": machine_busy / seconds
        - gateway_cores
        - _cores(before["generator"], after["generator"], seconds)
        - _cores(before["agent"], after["agent"], seconds),
        "load_average_1m": load,
        "ready": ready,
    }
    summary["meets_loss_target"] = (
        summary["failed"] == 0
        and lost == 0
        and late == 0
        and summary["rtp_out_lost"] == 0
        and summary["rtp_out_late"] == 0
        and missing_records == 0
    )
    return summary


def _f(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(runs: list[dict[str, Any]]) -> str:
    """A fixed-width table of the runs, one line each."""
    head = (
        f"{'path':5} {'N':>4} {'ok':>4} {'cores':>6} {'c/call':>7} {'KB/call':>8} "
        f"{'c2a p50/p99/max ms':>20} {'a2c p50/p99/max ms':>20} {'lost':>9} {'late':>9} "
        f"{'jit ms':>6} {'cps':>6} {'setup p95':>9} {'gen':>5} {'agent':>5} {'others':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in runs:
        if "error" in r:
            lines.append(f"{r['path']:5} {r['calls']:>4}    - did not run to the end: {r['error']}")
            continue
        c2a, a2c = r["caller_to_agent_ms"], r["agent_to_caller_ms"]
        lines.append(
            f"{r['path']:5} {r['calls']:>4} {r['answered']:>4} {r['gateway_cores']:>6.3f} "
            f"{r['cores_per_call']:>7.4f} {r['rss_per_call_kb']:>8.1f} "
            f"{_f(c2a['p50'], '.1f'):>6}/{_f(c2a['p99'], '.1f'):>6}/{_f(c2a['max'], '.1f'):>6} "
            f"{_f(a2c['p50'], '.1f'):>6}/{_f(a2c['p99'], '.1f'):>6}/{_f(a2c['max'], '.1f'):>6} "
            f"{r['c2a_lost']:>4}/{r['rtp_out_lost']:<4} {r['c2a_late']:>4}/{r['rtp_out_late']:<4} "
            f"{_f(r['rtp_out_jitter_ms_mean'], '.2f'):>6} {_f(r['setup_rate_per_s'], '.1f'):>6} "
            f"{_f(r['setup_ms']['p95'], '.0f'):>9} {r['generator_cores']:>5.2f} "
            f"{r['agent_cores']:>5.2f} {r['other_processes_cores']:>6.2f}"
        )
    lines.append(
        "cores = gateway CPU (cores) in the steady window; lost/late = caller→agent / RTP out; "
        "jit = mean RFC 3550 jitter of the gateway's RTP; cps = call setups per second; "
        "gen/agent = CPU cores of the generator and agent processes; others = CPU cores used "
        "by every other process of the machine in the window."
    )
    return "\n".join(lines)
