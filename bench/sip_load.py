"""SIP load generator: N concurrent authenticated calls over UDP with real 20 ms RTP.

One process of the generator (``bench/run.py`` starts several so it is never the
bottleneck). It places ``--calls`` calls against the gateway, each:
INVITE → 401 → ACK → INVITE with digest credentials (RFC 3261 §22.2, answered with
``ingress.sip.digest.authorization``) → 200 OK → ACK; then 20 ms RTP packets on one shared
20 ms grid (PCMU carrying bench/marker.py's frame index, or G.722 silence then a tone),
until ``stop`` arrives on stdin (or ``--max-seconds``); then BYE.

Timestamps are ``time.monotonic_ns()`` (CLOCK_MONOTONIC, shared by every process on the
machine), so the agent's receive times compare directly with the send times written here.

stdout: ``READY <ok> <failed>`` once every call is answered or has failed, ``DONE`` at the
end. ``--out`` gets one JSON object: per call its setup times, send times by frame index
and the statistics of the RTP it received (RFC 3550 interarrival jitter, loss, late).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import functools
import json
import math
import os
import re
import secrets
import signal
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any, cast

import uvloop

from bench.marker import FRAME_MS, ONSET_FRAME, pcmu_payload
from ingress.sip.digest import authorization

SAMPLES_PER_FRAME = 160  # RTP clock units per 20 ms: 8000 Hz for PCMU and (RFC 3551 §4.5.2) G.722
LATE_MS = 20.0  # an RTP packet arriving more than one frame after its slot is late
WARMUP_PACKETS = 50  # the first second of a call's received RTP is not judged
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_COMPACT = {
    "i": "call-id",
    "t": "to",
    "f": "from",
    "v": "via",
    "m": "contact",
    "l": "content-length",
}


def parse_sip(data: bytes) -> tuple[str, dict[str, list[str]], bytes]:
    """Start line, headers (lower-cased names, compact forms expanded) and body."""
    split = _HEADER_END.search(data)
    head, body = (data[: split.start()], data[split.end() :]) if split else (data, b"")
    lines = head.decode("utf-8", "replace").splitlines()
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers.setdefault(_COMPACT.get(key, key), []).append(value.strip())
    return (lines[0] if lines else ""), headers, body


def tag_of(value: str) -> str:
    found = re.search(r";\s*tag=([^;>\s]+)", value)
    return found.group(1) if found else ""


@dataclass
class RtpReceived:
    """RFC 3550 receiver statistics of the RTP the gateway sends to one call."""

    packets: int = 0
    first_ts: int | None = None
    last_ts: int = 0
    judged: int = 0
    late: int = 0
    jitter: float = 0.0  # RFC 3550 §6.4.1 J, in timestamp units
    max_jitter: float = 0.0
    prev_transit: float | None = None
    min_transit: float = math.inf

    def update(self, ts: int, arrived_ns: int) -> None:
        self.packets += 1
        if self.first_ts is None:
            self.first_ts = ts
        self.last_ts = ts
        transit = arrived_ns * 8e-6 - ts  # both in 8 kHz units (wrap: calls are short)
        if self.packets <= WARMUP_PACKETS:
            self.prev_transit = transit
            self.min_transit = min(self.min_transit, transit)
            return
        self.judged += 1
        if self.prev_transit is not None:
            # RFC 3550 §6.4.1 / A.8: J += (|D(i-1,i)| - J) / 16
            self.jitter += (abs(transit - self.prev_transit) - self.jitter) / 16
            self.max_jitter = max(self.max_jitter, self.jitter)
        self.prev_transit = transit
        if transit - self.min_transit > LATE_MS * 8:
            self.late += 1
        self.min_transit = min(self.min_transit, transit)

    def as_dict(self) -> dict[str, Any]:
        expected = 0
        if self.first_ts is not None:
            expected = ((self.last_ts - self.first_ts) & 0xFFFFFFFF) // SAMPLES_PER_FRAME + 1
        return {
            "packets": self.packets,
            "expected": expected,
            "judged": self.judged,
            "late": self.late,
            "jitter_ms": self.jitter / 8,
            "max_jitter_ms": self.max_jitter / 8,
        }


class RtpEndpoint(asyncio.DatagramProtocol):
    def __init__(self, stats: RtpReceived) -> None:
        self.stats = stats
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if len(data) >= 12 and data[1] & 0x7F < 72:  # RTP, not RTCP (RFC 5761 §4)
            self.stats.update(struct.unpack_from("!I", data, 4)[0], time.monotonic_ns())


@dataclass
class Call:
    number: int
    call_id: str
    from_tag: str
    rtp: RtpEndpoint
    rtp_port: int
    status: int = 0
    setup_start: int = 0
    setup_end: int = 0
    to_tag: str = ""
    remote_target: str = ""
    media: tuple[str, int] | None = None
    sent: array.array[int] = field(default_factory=lambda: array.array("q"))
    seq: int = field(default_factory=lambda: secrets.randbits(16))
    ts: int = field(default_factory=lambda: secrets.randbits(32))
    ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    ended_by_gateway: bool = False
    bye_status: int = 0
    waiter: asyncio.Future[tuple[str, dict[str, list[str]], bytes]] | None = None


class Generator(asyncio.DatagramProtocol):
    """Places the calls, sends and receives their media, answers the gateway's requests."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        host, _, port = args.sip.rpartition(":")
        self.server = (host, int(port))
        self.transport: asyncio.DatagramTransport | None = None
        self.local = ("127.0.0.1", 0)
        self.calls: dict[str, Call] = {}
        self.active: list[Call] = []
        self.payload_type = 0 if args.codec == "pcmu" else 9
        self.g722_frames: tuple[bytes, list[bytes]] | None = None
        if args.codec == "g722":
            self.g722_frames = g722_frames()

    # -- SIP -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.local = self.transport.get_extra_info("sockname")[:2]

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if not data.strip():
            return  # keep-alive
        start, headers, body = parse_sip(data)
        call = self.calls.get((headers.get("call-id") or [""])[0])
        if start.startswith("SIP/2.0"):
            if call is not None and call.waiter is not None and not call.waiter.done():
                call.waiter.set_result((start, headers, body))
            elif (
                call is not None
                and start.split()[1] == "200"
                and "INVITE" in str(headers.get("cseq"))
            ):
                self.send(self.ack(call, 2, new_branch()))  # a retransmitted 200 OK
            return
        method = start.split(" ", 1)[0]
        if method == "ACK":
            return
        if method == "BYE" and call is not None:
            call.ended_by_gateway = True
        self.send(self.response(headers, 200 if call is not None or method == "OPTIONS" else 481))

    def send(self, text: str) -> None:
        assert self.transport is not None
        self.transport.sendto(text.encode(), self.server)

    def response(self, headers: dict[str, list[str]], status: int) -> str:
        reason = {200: "OK", 481: "Call/Transaction Does Not Exist"}[status]
        lines = [f"SIP/2.0 {status} {reason}"]
        lines += [f"Via: {v}" for v in headers.get("via", [])]
        for name in ("from", "to", "call-id", "cseq"):
            lines += [f"{name.title()}: {v}" for v in headers.get(name, [])]
        return "\r\n".join([*lines, "Content-Length: 0", "", ""])

    def request(
        self,
        call: Call,
        method: str,
        cseq: int,
        branch: str,
        uri: str,
        extra: str = "",
        body: str = "",
    ) -> str:
        host, port = self.local
        to_tag = f";tag={call.to_tag}" if call.to_tag and method != "INVITE" else ""
        content = "Content-Type: application/sdp\r\n" if body else ""
        return (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{port};branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\n"
            f"From: <sip:+1555{call.number:07d}@{host}>;tag={call.from_tag}\r\n"
            f"To: <sip:{self.args.user}@{self.server[0]}:{self.server[1]}>{to_tag}\r\n"
            f"Call-ID: {call.call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: <sip:bench@{host}:{port}>\r\n"
            f"{extra}{content}Content-Length: {len(body)}\r\n\r\n{body}"
        )

    def ack(self, call: Call, cseq: int, branch: str, uri: str | None = None) -> str:
        return self.request(call, "ACK", cseq, branch, uri or call.remote_target)

    def sdp(self, call: Call) -> str:
        host = self.local[0]
        codec = "a=rtpmap:0 PCMU/8000" if self.payload_type == 0 else "a=rtpmap:9 G722/8000"
        return (
            f"v=0\r\no=bench {call.number} 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\n"
            f"t=0 0\r\nm=audio {call.rtp_port} RTP/AVP {self.payload_type} 101\r\n"
            f"{codec}\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
            f"a=ptime:20\r\na=sendrecv\r\n"
        )

    async def transact(self, call: Call, text: str) -> tuple[str, dict[str, list[str]], bytes]:
        """Send a request, retransmitting (RFC 3261 §17.1.1.2, T1 = 500 ms) until a final
        response, skipping provisional ones."""
        interval = 0.5
        while True:
            call.waiter = asyncio.get_running_loop().create_future()
            self.send(text)
            try:
                while True:
                    async with asyncio.timeout(interval):
                        reply = await asyncio.shield(call.waiter)
                    status = int(reply[0].split()[1])
                    if status >= 200:
                        return reply
                    call.waiter = asyncio.get_running_loop().create_future()
                    interval = 5.0  # a provisional answer stops retransmission (§17.1.1.2)
            except TimeoutError:
                interval = min(interval * 2, 4.0)
                if (
                    interval >= 4.0
                    and call.setup_start
                    and (time.monotonic_ns() - call.setup_start > 32e9)
                ):
                    raise

    async def place(self, call: Call) -> None:
        uri = f"sip:{self.args.user}@{self.server[0]}:{self.server[1]}"
        call.setup_start = time.monotonic_ns()
        branch = new_branch()
        start, headers, _ = await self.transact(
            call, self.request(call, "INVITE", 1, branch, uri, body=self.sdp(call))
        )
        status = int(start.split()[1])
        if status in (401, 407):
            call.to_tag = tag_of((headers.get("to") or [""])[0])
            self.send(self.ack(call, 1, branch, uri))  # §17.1.1.3: same branch as INVITE
            call.to_tag = ""
            name = "www-authenticate" if status == 401 else "proxy-authenticate"
            header = "Authorization" if status == 401 else "Proxy-Authorization"
            credentials = authorization(
                headers[name][0],
                username=self.args.user,
                password=self.args.password,
                method="INVITE",
                uri=uri,
                cnonce=secrets.token_hex(8),
            )
            start, headers, body = await self.transact(
                call,
                self.request(
                    call,
                    "INVITE",
                    2,
                    new_branch(),
                    uri,
                    f"{header}: {credentials}\r\n",
                    self.sdp(call),
                ),
            )
            status = int(start.split()[1])
        else:
            body = b""
        call.status = status
        call.to_tag = tag_of((headers.get("to") or [""])[0])
        if status >= 300:
            self.send(self.ack(call, 2, branch, uri))
            return
        call.setup_end = time.monotonic_ns()
        contact = (headers.get("contact") or [f"<{uri}>"])[0]
        call.remote_target = contact.split("<", 1)[-1].split(">", 1)[0]
        self.send(self.ack(call, 2, new_branch()))
        text = body.decode("utf-8", "replace")
        address = re.search(r"c=IN IP4 (\S+)", text)
        port = re.search(r"m=audio (\d+)", text)
        if address and port:
            call.media = (address.group(1), int(port.group(1)))
            self.active.append(call)

    async def hang_up(self, call: Call) -> None:
        if call.ended_by_gateway or not call.remote_target:
            return
        try:
            start, _, _ = await self.transact(
                call, self.request(call, "BYE", 3, new_branch(), call.remote_target)
            )
            call.bye_status = int(start.split()[1])
        except TimeoutError:
            call.bye_status = 408

    # -- RTP ---------------------------------------------------------------------------

    def payload(self, index: int) -> bytes:
        if self.g722_frames is None:
            return pcmu_payload(index)
        silence, tone = self.g722_frames
        return silence if index < ONSET_FRAME else tone[index % len(tone)]

    def tick(self) -> None:
        """Send one frame on every active call (all on one 20 ms grid)."""
        now = time.monotonic_ns()
        pt = self.payload_type
        for call in self.active:
            if call.ended_by_gateway or call.rtp.transport is None or call.media is None:
                continue
            index = len(call.sent)
            marker = 0x80 if index == 0 else 0
            header = struct.pack("!BBHII", 0x80, marker | pt, call.seq, call.ts, call.ssrc)
            call.seq = (call.seq + 1) & 0xFFFF
            call.ts = (call.ts + SAMPLES_PER_FRAME) & 0xFFFFFFFF
            call.sent.append(time.monotonic_ns())
            call.rtp.transport.sendto(header + self.payload(index), call.media)
        del now


def _same(endpoint: RtpEndpoint) -> RtpEndpoint:
    return endpoint


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


def g722_frames() -> tuple[bytes, list[bytes]]:
    """One frame of G.722 silence and 50 frames of a continuous 1 kHz tone."""
    from media.g722 import G722Encoder  # numpy-backed: only the transcoding path needs it

    silence = G722Encoder().encode(bytes(640))
    encoder = G722Encoder()
    tone = []
    samples = [int(8000 * math.sin(2 * math.pi * 1000 * n / 16000)) for n in range(320)]
    pcm = struct.pack(f"<{len(samples)}h", *samples)
    for _ in range(50):
        tone.append(encoder.encode(pcm))
    return silence, tone


async def run(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    generator = Generator(args)
    await loop.create_datagram_endpoint(lambda: generator, local_addr=("127.0.0.1", 0))
    calls = []
    for n in range(args.calls):
        stats = RtpReceived()
        endpoint = RtpEndpoint(stats)
        transport, _ = await loop.create_datagram_endpoint(
            functools.partial(_same, endpoint), local_addr=("127.0.0.1", 0)
        )
        port = transport.get_extra_info("sockname")[1]
        call = Call(
            number=args.first + n,
            call_id=f"bench-{args.first + n}-{secrets.token_hex(6)}@127.0.0.1",
            from_tag=secrets.token_hex(6),
            rtp=endpoint,
            rtp_port=port,
        )
        generator.calls[call.call_id] = call
        calls.append(call)

    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def on_stdin() -> None:
        sys.stdin.readline()  # any line, or end of file: stop
        stop.set()

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    loop.call_later(args.max_seconds, stop.set)

    # The shared 20 ms grid: tick k is due at t0 + k * 20 ms (never drifts).
    t0 = loop.time()
    ticks = 0

    def on_tick() -> None:
        nonlocal ticks
        generator.tick()
        ticks += 1
        if not stop.is_set():
            loop.call_at(t0 + ticks * FRAME_MS / 1000, on_tick)

    loop.call_at(t0, on_tick)

    gate = asyncio.Semaphore(args.setup_concurrency)

    async def one(call: Call) -> None:
        async with gate:
            try:
                await generator.place(call)
            except TimeoutError:
                call.status = 408

    await asyncio.gather(*(one(c) for c in calls))
    ok = sum(1 for c in calls if 200 <= c.status < 300)
    print(f"READY {ok} {len(calls) - ok}", flush=True)
    await stop.wait()
    generator.active.clear()
    await asyncio.gather(*(generator.hang_up(c) for c in calls if 200 <= c.status < 300))
    for call in calls:
        if call.rtp.transport is not None:
            call.rtp.transport.close()
    return {
        "pid": os.getpid(),
        "calls": [
            {
                "sip_call_id": c.call_id,
                "status": c.status,
                "setup_start": c.setup_start,
                "setup_end": c.setup_end,
                "sent": c.sent.tolist(),
                "rtp": c.rtp.stats.as_dict(),
                "ended_by_gateway": c.ended_by_gateway,
                "bye_status": c.bye_status,
            }
            for c in calls
        ],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="SIP/RTP load generator (one process).")
    parser.add_argument("--sip", required=True, help="gateway SIP address HOST:PORT (UDP)")
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--first", type=int, default=0, help="number of the first call")
    parser.add_argument("--codec", choices=("pcmu", "g722"), default="pcmu")
    parser.add_argument("--setup-concurrency", type=int, default=20)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    # uvloop, as the gateway and the agent run: the generator shares the machine's cores
    # with the process it measures (at 60 calls asyncio's loop had it at 0.24-0.26
    # cores, uvloop at 0.10-0.11; docs/performance.md).
    result = uvloop.run(run(args))
    with open(args.out, "w", encoding="utf-8") as out:
        json.dump(result, out)
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
