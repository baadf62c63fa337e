"""Run the benchmark: ``python -m bench.run [--ns 1,50,100,200] [--duration 10] ...``.

For each path (``pcmu``: PCMU leg → agent PCMU, zero transcode; ``g722``: G.722 leg ↔ agent
L16 16 kHz, chosen by the agent's ``accept``) and each N, it starts a fresh gateway
(``python -m gateway.cli serve`` on loopback, SQLite in a temporary folder), one fake agent
process (bench/fake_agent.py) and one trunk per generator process (bench/sip_load.py, at
most ``--calls-per-generator`` calls each), places the N calls, waits ``--settle`` seconds,
measures a steady-state window of ``--duration`` seconds (CPU from /proc/<pid>/stat,
RSS from /proc/<pid>/status), hangs up and computes the figures (bench/report.py).

After the listed Ns it keeps adding ``--step`` calls while the last run met the loss
target and ``--budget`` seconds allow, up to ``--max-n``. Prints a table; writes JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import requests

from bench.report import (
    ProcessSample,
    format_table,
    load_average,
    machine_busy_seconds,
    machine_info,
    sample_process,
    summarise,
)

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_URL = "https://telepath.bench.invalid"
# What carriers are told to stream to with --carrier-socket listener (never contacted
# either: the generator connects to the listener's loopback address).
MEDIA_URL = "wss://media.telepath.bench.invalid"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_sip_port() -> int:
    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free SIP port")


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    url: str
    sip: str
    database: str
    log: IO[bytes]
    runtime: dict[str, Any]  # /healthz's event_loop, gc_frozen_objects, compiled_modules
    media: str | None = None  # --media-listen's HOST:PORT, if the gateway has one

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def start_gateway(
    workdir: Path,
    calls: int,
    *,
    loop: str = "auto",
    gc_threshold: str = "",
    wrapper: tuple[str, ...] = (),
    cprofile: str = "",
    media_listener: bool = False,
) -> Gateway:
    http, sip = free_port(), free_sip_port()
    media = f"127.0.0.1:{free_port()}" if media_listener else None
    low = 20000 + 2 * secrets.randbelow(5000)
    high = low + max(400, 8 * calls) - 1
    database = f"sqlite://{workdir / 'telepath.db'}"
    log = open(workdir / "gateway.log", "wb")  # noqa: SIM115 - closed in Gateway.stop
    process = subprocess.Popen(
        [
            *wrapper,
            sys.executable,
            "-m",
            "bench.gateway_shim",
            "serve",
            "--http",
            f"127.0.0.1:{http}",
            "--sip",
            f"127.0.0.1:{sip}",
            "--rtp-ports",
            f"{low}-{high}",
            "--public-address",
            "127.0.0.1",
            # What the gateway tells carriers (media streams need https); never contacted:
            # the media-stream generator signs with it and connects to the listener.
            "--public-url",
            PUBLIC_URL,
            "--database",
            database,
            "--event-loop",
            loop,
            *(("--media-listen", media, "--media-url", MEDIA_URL) if media else ()),
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "TELEPATH_LOG_LEVEL": "WARNING",
            "BENCH_GC_THRESHOLD": gc_threshold,
            "BENCH_GC_LOG": str(workdir / "gc-pauses.txt"),
            "BENCH_CPROFILE": cprofile,
        },
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{http}"
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited ({process.returncode}); see {workdir}/gateway.log")
        try:
            health = requests.get(url + "/healthz", timeout=1)
            if health.ok:
                break
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("gateway did not come up")
        time.sleep(0.1)
    runtime = {
        k: v
        for k, v in health.json().items()
        if k in ("event_loop", "gc_frozen_objects", "compiled_modules")
    }
    return Gateway(process, url, f"127.0.0.1:{sip}", database, log, runtime, media)


FRAMES_PER_SECOND = 50  # 20 ms packets each way: one frame pair per 20 ms per call


def callgrind_wrapper(folder: str, path: str, calls: int) -> tuple[str, ...]:
    """``--callgrind``: the gateway under valgrind's callgrind, counting nothing until
    the steady window (``callgrind_control --instr=on``). Instructions executed are a
    figure this virtual machine cannot blur: its speed drifts by ±15 % between runs, a
    count of instructions does not (system calls' kernel time is not in it)."""
    out = Path(folder).resolve() / f"callgrind-{path}-{calls}.out"
    return ("valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}")


def callgrind_control(pid: int, *options: str) -> None:
    for option in options:
        subprocess.run(
            ["callgrind_control", option, str(pid)], capture_output=True, timeout=60, check=True
        )


def callgrind_total(folder: str, path: str, calls: int) -> int:
    """Instructions in the window: the dump ``--dump`` wrote (its ``totals:`` line)."""
    dumps = sorted(Path(folder).glob(f"callgrind-{path}-{calls}.out.*"))
    for line in dumps[0].read_text(errors="replace").splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dumps[0]}")


def api_key(gateway: Gateway) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "apikey",
            "create",
            "--name",
            "bench",
            "--account",
            "default",
            "--scopes",
            "read,write",
            "--database",
            gateway.database,
        ],
        cwd=ROOT,
        env={**os.environ, "TELEPATH_LOG_LEVEL": "WARNING"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def create_trunk(
    gateway: Gateway,
    key: str,
    endpoint: str,
    calls: int,
    *,
    binary_audio: bool = False,
    twilio_token: str = "",
) -> tuple[str, str, str]:
    """A custom-agent trunk; returns its SIP username, password and id."""
    username = f"bench{secrets.token_hex(4)}"
    password = "Bench-pass-" + secrets.token_hex(8)
    body: dict[str, Any] = {
        "name": f"bench {username}",
        "ai_provider": "custom",
        "custom_endpoint": endpoint,
        "sip_username": username,
        "sip_password": password,
        "max_concurrent_calls": calls + 10,
    }
    if binary_audio:  # docs/agent-protocol.md "Binary audio": no JSON, no base64
        body["provider_config"] = {"binary_audio": True}
    if twilio_token:  # media streams: the trunk checks X-Twilio-Signature with it
        body["twilio_account_sid"] = "AC" + "0" * 31 + "9"
        body["twilio_auth_token"] = twilio_token
    response = requests.post(
        gateway.url + "/v1/trunks",
        json=body,
        timeout=30,
        headers={"Authorization": f"Bearer {key}"},
    )
    if response.status_code != 201:
        raise RuntimeError(f"trunk creation failed: {response.status_code} {response.text}")
    return username, password, str(response.json()["id"])


_LINES: dict[int, queue.Queue[str]] = {}


def read_line(process: subprocess.Popen[str], prefix: str, timeout: float) -> str:
    """The next stdout line of ``process`` starting with ``prefix`` (others are skipped).

    A daemon thread per process moves its stdout lines into a queue (portable, no
    non-blocking pipes)."""
    lines = _LINES.get(process.pid)
    if lines is None:
        lines = _LINES[process.pid] = queue.Queue()
        stdout = process.stdout
        assert stdout is not None

        def pump() -> None:
            for line in stdout:
                lines.put(line.strip())

        threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=min(left, 0.5))
        except queue.Empty:
            if process.poll() is not None and lines.empty():
                break
            continue
        if line.startswith(prefix):
            return line
    raise RuntimeError(f"no {prefix!r} line from pid {process.pid} within {timeout:.0f} s")


def run_one(args: argparse.Namespace, path: str, calls: int) -> dict[str, Any]:
    """One gateway, N calls on ``path``; returns the summary (bench/report.py)."""
    workdir = Path(tempfile.mkdtemp(prefix="telepath-bench-"))
    try:
        try:
            result = _run_in(args, path, calls, workdir)
        except RuntimeError as exc:
            # A gateway that cannot set the calls up in time is a result too (the
            # overloaded end of the curve), not a reason to lose the runs before it.
            print(f"{path} N={calls}: {exc}", file=sys.stderr, flush=True)
            return {"path": path, "calls": calls, "error": str(exc), "meets_loss_target": False}
        # Written by bench/gateway_shim.py when the gateway exits (its whole life).
        gc_log = workdir / "gc-pauses.txt"
        lines = gc_log.read_text().splitlines() if gc_log.exists() else []
        entries = [(line.split()[0], float(line.split()[1])) for line in lines if line]
        result["gc_pauses_over_5ms"] = len(entries)
        result["gc_pauses_by_generation"] = {
            gen: sum(1 for g, _ in entries if g == gen) for gen in ("0", "1", "2")
        }
        result["gc_pause_max_ms"] = max((ms for _, ms in entries), default=0.0)
        return result
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}", file=sys.stderr)


def _run_in(args: argparse.Namespace, path: str, calls: int, workdir: Path) -> dict[str, Any]:
    if True:
        gateway = start_gateway(
            workdir,
            calls,
            loop=args.loop,
            gc_threshold=args.gc_threshold,
            wrapper=callgrind_wrapper(args.callgrind, path, calls) if args.callgrind else (),
            cprofile=(
                str(Path(args.cprofile).resolve() / f"cprofile-{path}-{calls}.prof")
                if args.cprofile
                else ""
            ),
            media_listener=path == "twilio" and args.carrier_socket == "listener",
        )
        agents: list[subprocess.Popen[str]] = []
        workers: list[subprocess.Popen[str]] = []
        try:
            key = api_key(gateway)
            n_workers = max(1, math.ceil(calls / args.calls_per_generator))
            shares = [
                calls // n_workers + (1 if i < calls % n_workers else 0) for i in range(n_workers)
            ]
            trunks = []
            twilio_token = secrets.token_hex(16) if path == "twilio" else ""
            for i in range(n_workers):
                agent_cmd = [
                    sys.executable,
                    "-m",
                    "bench.fake_agent",
                    "--out",
                    str(workdir / f"agent{i}.jsonl"),
                    "--mark-every",
                    str(args.mark_every),
                    "--max-seconds",
                    str(args.duration * 4 + 300),
                ]
                if path == "g722":
                    agent_cmd += ["--accept", "l16/16000"]
                agent = subprocess.Popen(
                    agent_cmd,
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=open(workdir / f"agent{i}.log", "w"),  # noqa: SIM115 - the child owns it
                    text=True,
                )
                agents.append(agent)
                port = int(read_line(agent, "PORT", 30).split()[1])
                trunks.append(
                    create_trunk(
                        gateway,
                        key,
                        f"ws://127.0.0.1:{port}",
                        shares[i],
                        binary_audio=args.binary_audio,
                        twilio_token=twilio_token,
                    )
                )
            time.sleep(0.5)
            baseline = sample_process(gateway.process.pid)
            started = time.monotonic()
            first = 0
            for i, ((user, password, trunk_id), share) in enumerate(
                zip(trunks, shares, strict=True)
            ):
                common = [
                    "--calls",
                    str(share),
                    "--first",
                    str(first),
                    "--out",
                    str(workdir / f"gen{i}.json"),
                    "--setup-concurrency",
                    str(args.setup_concurrency),
                    "--max-seconds",
                    str(args.duration * 4 + 120),
                ]
                if path == "twilio":
                    command = [
                        *("-m", "bench.media_stream_load", "--http", gateway.url),
                        *("--public-url", PUBLIC_URL),
                        *("--trunk", trunk_id, "--token", twilio_token),
                        *(("--stream-to", gateway.media) if gateway.media else ()),
                    ]
                else:
                    command = [
                        *("-m", "bench.sip_load", "--sip", gateway.sip, "--codec", path),
                        *("--user", user, "--password", password),
                    ]
                workers.append(
                    subprocess.Popen(
                        [sys.executable, *command, *common],
                        cwd=ROOT,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=open(workdir / f"gen{i}.log", "w"),  # noqa: SIM115 - the child owns it
                        text=True,
                    )
                )
                first += share
            ready = [read_line(w, "READY", 60 + calls / 5) for w in workers]
            setup_seconds = time.monotonic() - started
            time.sleep(args.settle)
            window_start = time.monotonic_ns()
            busy_before = machine_busy_seconds()
            before = {
                "gateway": [sample_process(gateway.process.pid)],
                "generator": [sample_process(w.pid) for w in workers],
                "agent": [sample_process(a.pid) for a in agents],
            }
            profiler = None
            if args.profile:
                profiler = subprocess.Popen(
                    [
                        args.py_spy,
                        "record",
                        "--pid",
                        str(gateway.process.pid),
                        "--duration",
                        str(max(1, int(args.duration))),
                        "--rate",
                        "100",
                        "--format",
                        "raw",
                        "--nonblocking",
                        "--output",
                        str(Path(args.profile) / f"profile-{path}-{calls}.txt"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            if args.callgrind:
                callgrind_control(gateway.process.pid, "--zero", "--instr=on")
            if args.cprofile:
                gateway.process.send_signal(signal.SIGUSR1)
            time.sleep(args.duration)
            if args.cprofile:
                gateway.process.send_signal(signal.SIGUSR1)
            if args.callgrind:
                callgrind_control(gateway.process.pid, "--dump", "--instr=off")
            if profiler is not None:
                profiler.wait(timeout=60)
            after = {
                "gateway": [sample_process(gateway.process.pid)],
                "generator": [sample_process(w.pid) for w in workers],
                "agent": [sample_process(a.pid) for a in agents],
            }
            window_end = time.monotonic_ns()
            busy = machine_busy_seconds() - busy_before
            for w in workers:
                assert w.stdin is not None
                w.stdin.write("stop\n")
                w.stdin.flush()
            for w in workers:
                read_line(w, "DONE", 60)
            time.sleep(1.0)  # the gateway sends the agents "stop"; they write their records
            generated = [
                json.loads((workdir / f"gen{i}.json").read_text()) for i in range(len(workers))
            ]
            agent_calls = []
            for i in range(len(agents)):
                agent_file = workdir / f"agent{i}.jsonl"
                if agent_file.exists():
                    agent_calls += [
                        json.loads(line) for line in agent_file.read_text().splitlines() if line
                    ]
            result = summarise(
                path=path,
                calls=calls,
                generated=generated,
                agent_calls=agent_calls,
                window=(window_start, window_end),
                baseline=baseline,
                before=before,
                after=after,
                ready=ready,
                setup_seconds=setup_seconds,
                machine_busy=busy,
                load=load_average(),
            )
            if args.callgrind:
                result["instructions_per_frame_pair"] = round(
                    callgrind_total(args.callgrind, path, calls)
                    / (calls * (window_end - window_start) / 1e9 * FRAMES_PER_SECOND)
                )
            if path == "twilio":
                result["carrier_socket"] = "listener" if gateway.media else "http"
            return {**result, **gateway.runtime}
        finally:
            for process in (*workers, *agents):
                if process.poll() is None:
                    process.terminate()
                    try:
                        process.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
            gateway.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Telepath gateway benchmark (loopback only).")
    parser.add_argument("--ns", default="1,50,100,200", help="concurrent call counts")
    parser.add_argument(
        "--paths",
        default="pcmu,g722,twilio",
        help="pcmu (SIP, zero transcode), g722 (SIP, transcoding), twilio (media streams)",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="steady window, s")
    parser.add_argument("--settle", type=float, default=2.0, help="wait after setup, s")
    parser.add_argument("--step", type=int, default=100, help="escalation step after --ns")
    parser.add_argument("--max-n", type=int, default=500, help="escalation stops here")
    parser.add_argument("--budget", type=float, default=540.0, help="stop escalating after, s")
    parser.add_argument("--calls-per-generator", type=int, default=100)
    parser.add_argument("--setup-concurrency", type=int, default=20)
    parser.add_argument("--mark-every", type=int, default=5)
    parser.add_argument(
        "--loop",
        default="auto",
        choices=("auto", "uvloop", "asyncio"),
        help="the gateway's --event-loop (default auto: uvloop if installed)",
    )
    parser.add_argument(
        "--binary-audio", action="store_true", help="agent audio as binary WS frames"
    )
    parser.add_argument(
        "--carrier-socket",
        default="listener",
        choices=("listener", "http"),
        help="twilio path: stream to --media-listen (default) or the HTTP listener's route",
    )
    parser.add_argument(
        "--gc-threshold", default="", metavar="A,B,C", help="gc.set_threshold in the gateway"
    )
    parser.add_argument(
        "--profile", metavar="DIR", help="py-spy the gateway in each window; raw stacks to DIR"
    )
    parser.add_argument(
        "--callgrind",
        metavar="DIR",
        help="count the gateway's instructions per frame pair in the window (valgrind)",
    )
    parser.add_argument(
        "--cprofile", metavar="DIR", help="cProfile the gateway in each window (call counts)"
    )
    parser.add_argument("--py-spy", default=str(Path(sys.executable).parent / "py-spy"))
    parser.add_argument("--keep", action="store_true", help="keep the work folders (logs)")
    parser.add_argument("--json", default="bench-report.json", help="JSON report path")
    args = parser.parse_args(argv)
    # Stopped with SIGTERM (a timeout, a supervisor): unwind, so that run_one's cleanup
    # stops the gateway, the agent and the generators instead of leaving them running.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    began = time.monotonic()
    for folder in (args.profile, args.callgrind, args.cprofile):
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    ns = [int(n) for n in args.ns.split(",") if n]
    for path in [p for p in args.paths.split(",") if p]:
        for calls in ns:
            print(f"running {path} N={calls} ...", file=sys.stderr, flush=True)
            results.append(run_one(args, path, calls))
        # Escalate (the zero-transcode path only: the headline figure) until something breaks.
        calls = max(ns) + args.step
        while path == "pcmu" and calls <= args.max_n and results[-1]["meets_loss_target"]:
            if time.monotonic() - began > args.budget:
                break
            print(f"running {path} N={calls} ...", file=sys.stderr, flush=True)
            results.append(run_one(args, path, calls))
            calls += args.step
    report = {"machine": machine_info(), "args": vars(args), "runs": results}
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(format_table(results))
    print(f"JSON report: {args.json}")
    return 0


def _exit_on_signal(signum: int, frame: object) -> None:
    del frame
    raise SystemExit(128 + signum)


__all__ = ["ProcessSample", "main", "run_one"]

if __name__ == "__main__":
    raise SystemExit(main())
