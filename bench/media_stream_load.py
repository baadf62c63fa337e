"""Media-stream load generator: N concurrent Twilio-protocol streams against the gateway.

One process plays Twilio for ``--calls`` calls, each: the signed voice webhook
(``POST /v1/carriers/twilio/voice/{trunk_id}``, ``X-Twilio-Signature`` computed with the
``twilio`` package's ``RequestValidator``, as Twilio computes it), then the ``<Stream>``
WebSocket of the TwiML answer with ``connected``, ``start`` (``customParameters`` carry
the benchmark's call id, which the agent sees as ``custom_parameters``), one 20 ms
``media`` message per call on one shared grid (µ-law carrying bench/marker.py's index),
marks echoed at once (a carrier that plays instantly), and ``stop`` at the end.

Same output as bench/sip_load.py (``READY``/``DONE`` lines, one JSON file); ``setup`` is
webhook sent → first ``media`` from the gateway, and the "RTP" statistics are those of
the gateway's ``media`` messages, numbered in arrival order (they carry no timestamp).

The sockets are picows' (as bench/fake_agent.py's), driven from its frame callbacks with
orjson: at 50 streams websockets' asyncio client, one task per message sent, took more of
the machine's two cores than the gateway's streams did (docs/performance.md).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import contextlib
import html
import json
import os
import re
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import orjson
import uvloop
from picows import WSCloseCode, WSError, WSListener, WSMsgType, WSTransport, ws_connect
from twilio.request_validator import RequestValidator

from bench.marker import FRAME_MS, pcmu_payload
from bench.sip_load import SAMPLES_PER_FRAME, RtpReceived

ACCOUNT_SID = "AC" + "0" * 31 + "9"


@dataclass
class Stream:
    number: int
    bench_id: str
    call_sid: str
    stream_sid: str
    status: int = 0
    setup_start: int = 0
    setup_end: int = 0
    ws: WSTransport | None = None
    sent: array.array[int] = field(default_factory=lambda: array.array("q"))
    received: RtpReceived = field(default_factory=RtpReceived)
    sequence: int = 1
    ended_by_gateway: bool = False


async def open_stream(stream: Stream, args: argparse.Namespace, http: httpx.AsyncClient) -> None:
    """Webhook, then the WebSocket with ``connected`` and ``start``."""
    path = f"/v1/carriers/twilio/voice/{args.trunk}"
    url = args.public_url + path  # what Twilio signs: the URL it was told to call
    form = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": stream.call_sid,
        "CallStatus": "ringing",
        "Called": "+15550100002",
        "Caller": f"+1555{stream.number:07d}",
        "Direction": "inbound",
        "From": f"+1555{stream.number:07d}",
        "To": "+15550100002",
    }
    signature = RequestValidator(args.token).compute_signature(url, form)
    stream.setup_start = time.monotonic_ns()
    response = await http.post(
        args.http + path,
        content=urlencode(form),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )
    stream.status = response.status_code
    found = re.search(r'<Stream[^>]*\surl="([^"]+)"', response.text)
    if response.status_code != 200 or found is None:
        stream.status = response.status_code if response.status_code != 200 else 502
        return
    # The TwiML names the public wss:// URL; connect to the same path on the listener.
    stream_url = urlsplit(html.unescape(found.group(1)))
    target = f"ws://{args.stream_to or urlsplit(args.http).netloc}{stream_url.path}" + (
        f"?{stream_url.query}" if stream_url.query else ""
    )
    ws, _ = await ws_connect(lambda: CarrierEnd(stream), target, use_aiofastnet=False)
    stream.ws = ws
    send(ws, {"event": "connected", "protocol": "Call", "version": "1.0.0"})
    start = {
        "accountSid": ACCOUNT_SID,
        "streamSid": stream.stream_sid,
        "callSid": stream.call_sid,
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {"bench_id": stream.bench_id},
    }
    send(
        ws,
        {"event": "start", "sequenceNumber": "1", "start": start, "streamSid": stream.stream_sid},
    )


def send(ws: WSTransport, message: dict[str, Any]) -> None:
    ws.send(WSMsgType.TEXT, orjson.dumps(message))


class CarrierEnd(WSListener):
    """The gateway's messages, in picows' frame callback: time the media, echo the marks."""

    def __init__(self, stream: Stream) -> None:
        super().__init__()
        self.stream = stream
        self.count = 0

    def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
        stream = self.stream
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()
            return
        if frame.msg_type != WSMsgType.TEXT:
            return
        now = time.monotonic_ns()
        event = orjson.loads(frame.get_payload_as_bytes())
        kind = event.get("event")
        if kind == "media":
            if not stream.setup_end:
                stream.setup_end = now
            stream.received.update(self.count * SAMPLES_PER_FRAME, now)
            self.count += 1
        elif kind == "mark":
            # A carrier that plays at once: the mark is reached now (Twilio echoes it
            # when the audio before it has played).
            stream.sequence += 1
            mark = {
                "event": "mark",
                "sequenceNumber": str(stream.sequence),
                "streamSid": stream.stream_sid,
                "mark": event.get("mark", {}),
            }
            send(transport, mark)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.stream.ended_by_gateway = True


async def run(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    streams = [
        Stream(
            number=args.first + n,
            bench_id=f"bench-ms-{args.first + n}-{secrets.token_hex(6)}",
            call_sid="CA" + secrets.token_hex(16),
            stream_sid="MZ" + secrets.token_hex(16),
        )
        for n in range(args.calls)
    ]
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def on_stdin() -> None:
        sys.stdin.readline()  # any line, or end of file: stop
        stop.set()

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    loop.call_later(args.max_seconds, stop.set)
    active: list[Stream] = []

    t0 = loop.time()
    ticks = 0

    def tick() -> None:
        nonlocal ticks
        for stream in active:
            ws = stream.ws
            if ws is None or stream.ended_by_gateway:
                continue
            index = len(stream.sent)
            stream.sequence += 1
            message = orjson.dumps(
                {
                    "event": "media",
                    "sequenceNumber": str(stream.sequence),
                    "media": {
                        "track": "inbound",
                        "chunk": str(index + 1),
                        "timestamp": str(index * FRAME_MS),
                        "payload": base64.b64encode(pcmu_payload(index)).decode(),
                    },
                    "streamSid": stream.stream_sid,
                }
            )
            stream.sent.append(time.monotonic_ns())
            ws.send(WSMsgType.TEXT, message)
        ticks += 1
        if not stop.is_set():
            loop.call_at(t0 + ticks * FRAME_MS / 1000, tick)

    loop.call_at(t0, tick)
    gate = asyncio.Semaphore(args.setup_concurrency)
    async with httpx.AsyncClient(timeout=30) as http:

        async def one(stream: Stream) -> None:
            async with gate:
                try:
                    await open_stream(stream, args, http)
                except (OSError, httpx.HTTPError, WSError, TimeoutError):
                    stream.status = 599
                    return
            if stream.ws is not None:
                active.append(stream)

        await asyncio.gather(*(one(s) for s in streams))
    ok = sum(1 for s in streams if s.ws is not None)
    print(f"READY {ok} {len(streams) - ok}", flush=True)
    await stop.wait()
    active.clear()
    for stream in streams:
        if stream.ws is not None and not stream.ended_by_gateway:
            stream.sequence += 1
            stop_message = {
                "event": "stop",
                "sequenceNumber": str(stream.sequence),
                "stop": {"accountSid": ACCOUNT_SID, "callSid": stream.call_sid},
                "streamSid": stream.stream_sid,
            }
            send(stream.ws, stop_message)
            stream.ws.send_close(WSCloseCode.OK)
    for stream in streams:
        if stream.ws is not None:
            # Raises what picows failed the connection with, if it did: not ours to report.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await stream.ws.wait_disconnected()
    return {
        "pid": os.getpid(),
        "calls": [
            {
                "sip_call_id": s.bench_id,
                "status": 200 if s.ws is not None else s.status,
                "setup_start": s.setup_start,
                "setup_end": s.setup_end or s.setup_start,
                "sent": s.sent.tolist(),
                "rtp": s.received.as_dict(),
                "ended_by_gateway": s.ended_by_gateway,
                "bye_status": 0,
            }
            for s in streams
        ],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Twilio media-stream load generator.")
    parser.add_argument("--http", required=True, help="gateway base URL http://HOST:PORT")
    parser.add_argument("--trunk", required=True, help="trunk id")
    parser.add_argument("--token", required=True, help="the trunk's Twilio auth token")
    parser.add_argument("--public-url", required=True, help="the gateway's --public-url")
    parser.add_argument(
        "--stream-to", default="", help="HOST:PORT of the gateway's --media-listen (else --http)"
    )
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--setup-concurrency", type=int, default=20)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    # uvloop, as bench/sip_load.py: the generator shares the machine's cores with the
    # gateway it measures.
    result = uvloop.run(run(args))
    with open(args.out, "w", encoding="utf-8") as out:
        json.dump(result, out)
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
