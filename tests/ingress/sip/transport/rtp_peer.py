"""Shared helpers for the RTP transport tests: free loopback ports, fd counts, a clock,
and :class:`RtpPeer`, the test side of a call's RTP written with ``RtpPacket``."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ingress.sip.rtp.packet import RtpPacket, is_rtcp

# Linux's SO_TIMESTAMPNS (asm-generic/socket.h; Python's socket module lacks the name): the
# kernel stamps each datagram's arrival as a struct timespec.
SO_TIMESTAMPNS: int | None = getattr(
    socket, "SO_TIMESTAMPNS", 35 if sys.platform == "linux" else None
)


class Clock:
    """A virtual monotonic clock for the port pool's drain period."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def free_even_base(span: int = 40) -> int:
    """An even port with ``span`` ports above it that are free for UDP on loopback now."""
    for _ in range(50):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        base = probe.getsockname()[1] & ~1
        probe.close()
        if base + span > 65535:
            continue
        held: list[socket.socket] = []
        try:
            for port in range(base, base + span):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(s)
                s.bind(("127.0.0.1", port))
            return int(base)
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free UDP port span on loopback")


class RtpPeer:
    """The caller's side of a call's media, on loopback: sends RTP/RTCP it builds with
    ``RtpPacket``, and records every datagram it receives with the kernel's arrival time
    (``SO_TIMESTAMPNS``, so the event loop's own scheduling does not blur the intervals)."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.loop = loop
        self.received: list[Received] = []
        self.changed = asyncio.Event()
        loop.add_reader(sock, self._readable)

    @classmethod
    async def open(cls) -> RtpPeer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(("127.0.0.1", 0))
        if SO_TIMESTAMPNS is not None:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        return cls(sock, asyncio.get_running_loop())

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()
        return str(host), int(port)

    @property
    def port(self) -> int:
        return self.address[1]

    def _readable(self) -> None:
        while True:
            try:
                data, ancdata, _flags, addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(16))
            except (BlockingIOError, InterruptedError):
                break
            stamp = self.loop.time()
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", value[:16])
                    stamp = sec + nsec / 1e9
            self.received.append(Received(data, (str(addr[0]), int(addr[1])), stamp))
        self.changed.set()

    def send(self, data: bytes | RtpPacket, to: tuple[str, int]) -> None:
        self.sock.sendto(bytes(data), to)

    def send_paced(
        self, packets: Sequence[bytes | RtpPacket], to: tuple[str, int], interval: float = 0.02
    ) -> asyncio.Future[None]:
        """Send one packet every ``interval`` on the loop clock; the future completes after
        the last."""
        done: asyncio.Future[None] = self.loop.create_future()
        start = self.loop.time()
        for n, packet in enumerate(packets):
            self.loop.call_at(start + n * interval, self.send, packet, to)
        self.loop.call_at(start + len(packets) * interval, done.set_result, None)
        return done

    def rtp(self, payload_type: int | None = None) -> list[RtpPacket]:
        """RTP packets received so far (RTCP demultiplexed out, RFC 5761 §4)."""
        out = []
        for r in self.received:
            if is_rtcp(r.data):
                continue
            packet = RtpPacket.parse(r.data)
            if payload_type is None or packet.payload_type == payload_type:
                out.append(packet)
        return out

    def rtcp(self) -> list[bytes]:
        return [r.data for r in self.received if is_rtcp(r.data)]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 3.0) -> None:
        """Wait until ``predicate()`` holds, re-checking on every datagram."""
        async with asyncio.timeout(within):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    def close(self) -> None:
        self.loop.remove_reader(self.sock)
        self.sock.close()


@dataclass(frozen=True)
class Received:
    data: bytes
    source: tuple[str, int]
    at: float  # kernel arrival time (CLOCK_REALTIME seconds) or loop time as a fallback
