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

The agent is a peer of the gateway, not part of it, and on this 2-core machine it shares
the cores with the gateway: it must cost far less than the gateway per call, or the rig
measures itself (the issue: "the generator must not be the bottleneck"). So it answers
from picows' frame callbacks (WebSocket parsing and framing in C, no task or queue per
message), parses with orjson and runs on uvloop. With websockets' asyncio server it
cost 0.0073 cores per call at 100 calls, more than the gateway it measured.
"""

from __future__ import annotations

import argparse
import asyncio
import binascii
import signal
import sys
import time
from typing import IO, Any

import orjson
import uvloop
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)

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
        return orjson.dumps(
            {
                "sip_call_id": self.sip_call_id,
                "encoding": self.encoding,
                "recv": self.recv,
                "a2c": self.a2c,
                "concealed": self.concealed,
            }
        ).decode()


class EchoCall(WSListener):
    """One call from ``start`` to ``stop`` or disconnect: echo, timestamp, write the record."""

    def __init__(self, *, accept: str | None, mark_every: int, out: IO[str]) -> None:
        super().__init__()
        self.accept = accept
        self.mark_every = mark_every
        self.out = out
        self.record: CallRecord | None = None
        self.binary = False
        self.frames = 0
        self.written = False

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        now = time.monotonic_ns()
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if not frame.fin or kind == WSMsgType.CONTINUATION:
            # The gateway sends every message whole (docs/agent-protocol.md).
            transport.send_close(WSCloseCode.UNSUPPORTED_DATA, b"fragmented message")
            transport.disconnect()
            return
        record = self.record
        if kind == WSMsgType.BINARY:
            if record is None:
                return
            payload = frame.get_payload_as_bytes()
            self.echo(transport, record, payload, None, self.frames * FRAME_MS, now)
            return
        if kind != WSMsgType.TEXT:
            return
        event = orjson.loads(frame.get_payload_as_memoryview())
        kind_name = event.get("type")
        if record is None:
            self.started(transport, event)
            return
        if kind_name == "media":
            text = event["payload"]
            payload = binascii.a2b_base64(text)
            timestamp = int(event.get("timestamp", self.frames * FRAME_MS))
            self.echo(transport, record, payload, text, timestamp, now)
        elif kind_name == "mark":
            sent = record.pending.pop(str(event.get("name")), None)
            if sent is not None:
                record.a2c.append((sent, now - sent))
        elif kind_name == "stop":
            self.finish()
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()

    def started(self, transport: WSTransport, start: dict[str, Any]) -> None:
        if start.get("type") != "start":
            transport.send_close(WSCloseCode.PROTOCOL_ERROR, b"expected start")
            transport.disconnect()
            return
        # Always answer ``accept`` at once: without it the gateway waits its whole
        # ``accept_timeout`` (1 s by default) before it answers the call.
        if self.accept:
            encoding, _, rate = self.accept.partition("/")
            media_format = {
                "encoding": f"audio/{encoding}",
                "sample_rate": int(rate),
                "channels": 1,
            }
            reply: dict[str, Any] = {"type": "accept", "media_format": media_format}
            start = {**start, "media_format": media_format}
        else:
            reply = {"type": "accept"}  # take the offered format
        transport.send(WSMsgType.TEXT, orjson.dumps(reply))
        self.record = CallRecord(start)
        self.binary = bool(start.get("binary_audio"))

    def echo(
        self,
        transport: WSTransport,
        record: CallRecord,
        payload: bytes,
        text: str | None,
        timestamp: int,
        now: int,
    ) -> None:
        self.frames += 1
        index = record.index_of(payload, timestamp)
        if index is not None:
            record.recv.append((index, now))
        # Echo at once: the same bytes (PCMU keeps the marker) in the same framing.
        if self.binary or text is None:
            transport.send(WSMsgType.BINARY, payload)
        else:
            transport.send(WSMsgType.TEXT, orjson.dumps({"type": "media", "payload": text}))
        if index is not None and index % self.mark_every == 0:
            name = str(index)
            record.pending[name] = time.monotonic_ns()
            transport.send(WSMsgType.TEXT, orjson.dumps({"type": "mark", "name": name}))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.finish()

    def finish(self) -> None:
        if self.written or self.record is None:
            return
        self.written = True
        self.out.write(self.record.as_json() + "\n")
        self.out.flush()


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

        def listener(_request: WSUpgradeRequest) -> EchoCall:
            return EchoCall(accept=args.accept, mark_every=args.mark_every, out=out)

        server = await ws_create_server(
            listener, args.host, args.port, enable_auto_pong=True, max_frame_size=1 << 20
        )
        async with server:
            port = server.sockets[0].getsockname()[1] if server.sockets else args.port
            print(f"PORT {port}", flush=True)
            await stop.wait()


if __name__ == "__main__":
    uvloop.run(main())
