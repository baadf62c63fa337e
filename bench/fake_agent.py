"""A separate-process agent for the benchmark, speaking the ``telepath`` dialect
(docs/agent-protocol.md): it echoes every caller frame at once and timestamps what it sees.

Per call it records, on ``time.monotonic_ns()`` (CLOCK_MONOTONIC: one clock for every
process of the machine):

* ``recv``: ``[index, ns]`` for each caller frame, the index read from the frame itself
  (bench/marker.py), to compare with the generator's send time of that index;
* ``a2c``: for every ``--mark-every``-th echoed frame, the time from sending that audio
  to the gateway's echo of the ``mark`` sent right after it (the gateway echoes a mark
  when the audio before it has gone out as RTP, so this is the agent→caller time inside
  the gateway plus one loopback WebSocket hop back);
* ``concealed``: frames that carried no index (the gateway's loss concealment).

Each call is written as one JSON line to ``--out`` when it ends. Usage::

    python -m bench.fake_agent --port 0 --out /tmp/agent.jsonl [--accept l16/16000]

The first line on stdout is ``PORT <n>``; the process exits on SIGTERM or stdin EOF.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import sys
import time
from typing import IO, Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from bench.marker import FRAME_MS, ONSET_FRAME, l16_loud, pcmu_index


class CallRecord:
    """What the agent saw of one call."""

    def __init__(self, start: dict[str, Any]) -> None:
        # The generator's id of the call: the SIP Call-ID, or for media streams the
        # ``bench_id`` stream parameter (bench/media_stream_load.py).
        params = start.get("custom_parameters") or {}
        self.sip_call_id = str(
            params.get("bench_id") or start.get("sip_call_id") or start.get("call_id")
        )
        fmt = start.get("media_format") or {}
        self.encoding = str(fmt.get("encoding", "audio/pcmu"))
        self.recv: list[tuple[int, int]] = []
        self.a2c: list[tuple[int, int]] = []  # [sent ns, latency ns]
        self.concealed = 0
        self.onset_ms: int | None = None
        self.pending: dict[str, int] = {}

    def index_of(self, payload: bytes, timestamp_ms: int) -> int | None:
        if self.encoding == "audio/pcmu":
            index = pcmu_index(payload)
            if index is None:
                self.concealed += 1
            return index
        if self.onset_ms is None:
            if not l16_loud(payload):
                return None
            self.onset_ms = timestamp_ms
        return ONSET_FRAME + (timestamp_ms - self.onset_ms) // FRAME_MS

    def as_json(self) -> str:
        return json.dumps(
            {
                "sip_call_id": self.sip_call_id,
                "encoding": self.encoding,
                "recv": self.recv,
                "a2c": self.a2c,
                "concealed": self.concealed,
            }
        )


async def serve_call(
    ws: ServerConnection, *, accept: str | None, mark_every: int, out: IO[str]
) -> None:
    """One call from ``start`` to ``stop``: echo, timestamp, write the record."""
    start = json.loads(await ws.recv())
    if start.get("type") != "start":
        await ws.close(1002, "expected start")
        return
    # Always answer ``accept`` at once: without it the gateway waits its whole
    # ``accept_timeout`` (1 s by default) before it answers the call.
    if accept:
        encoding, _, rate = accept.partition("/")
        media_format = {"encoding": f"audio/{encoding}", "sample_rate": int(rate), "channels": 1}
        await ws.send(json.dumps({"type": "accept", "media_format": media_format}))
        start = {**start, "media_format": media_format}
    else:
        await ws.send(json.dumps({"type": "accept"}))  # take the offered format
    record = CallRecord(start)
    binary = bool(start.get("binary_audio"))
    frames = 0
    try:
        async for message in ws:
            now = time.monotonic_ns()
            if isinstance(message, bytes):
                payload, timestamp = message, frames * FRAME_MS
            else:
                event = json.loads(message)
                kind = event.get("type")
                if kind == "mark":
                    sent = record.pending.pop(str(event.get("name")), None)
                    if sent is not None:
                        record.a2c.append((sent, now - sent))
                    continue
                if kind == "stop":
                    break
                if kind != "media":
                    continue
                payload = base64.b64decode(event["payload"])
                timestamp = int(event.get("timestamp", frames * FRAME_MS))
            frames += 1
            index = record.index_of(payload, timestamp)
            if index is not None:
                record.recv.append((index, now))
            # Echo at once: the same bytes (PCMU keeps the marker) in the same framing.
            if binary:
                await ws.send(payload)
            else:
                await ws.send(json.dumps({"type": "media", "payload": event["payload"]}))
            if index is not None and index % mark_every == 0:
                name = str(index)
                record.pending[name] = time.monotonic_ns()
                await ws.send(json.dumps({"type": "mark", "name": name}))
    except ConnectionClosed:
        pass
    finally:
        out.write(record.as_json() + "\n")
        out.flush()


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Benchmark echo agent (telepath dialect).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--out", required=True, help="JSON-lines file, one line per call")
    parser.add_argument("--accept", help="answer start with this format, e.g. l16/16000")
    parser.add_argument("--mark-every", type=int, default=5, help="mark every Nth frame")
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="hard stop")
    args = parser.parse_args(argv)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.call_later(args.max_seconds, stop.set)

    def on_stdin() -> None:
        if not sys.stdin.readline():  # end of file: the runner went away
            stop.set()

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    # Opened before serving starts (not in the event loop's hot path), closed at exit.
    with open(args.out, "a", encoding="utf-8") as out:  # noqa: ASYNC230

        async def handler(ws: ServerConnection) -> None:
            await serve_call(ws, accept=args.accept, mark_every=args.mark_every, out=out)

        async with serve(handler, args.host, args.port, compression=None, max_queue=None) as srv:
            port = srv.sockets[0].getsockname()[1] if srv.sockets else args.port
            print(f"PORT {port}", flush=True)
            await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
