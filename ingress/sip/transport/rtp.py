"""One call's RTP and RTCP UDP sockets: ``asyncio.DatagramProtocol`` over a pooled port pair.

:func:`open_rtp_socket_pair` takes an even port from the :class:`RtpPortPool` and binds RTP
there and RTCP at ``port + 1`` (RFC 3550 §11). RTCP is bound even when rtcp-mux (RFC 5761)
may be negotiated later: the SDP answer needs our port before we know, and a carrier that
sends RTCP to ``port + 1`` anyway is then answered by the kernel with silence instead of
ICMP errors. A port the operating system refuses (another process holds it) goes back to
the pool to drain and the next pair is tried.

The pair is a pipe and nothing more: every datagram goes to the one handler attached with
:meth:`RtpSocketPair.attach` (the call's :class:`~ingress.sip.transport.media.RtpMediaStream`)
with its arrival time on the loop clock; datagrams that arrive before a handler is
attached (the caller's first RTP races our 200 OK being processed) are kept, a few, and
replayed on attach. :meth:`RtpSocketPair.close` closes both sockets; once the kernel has
released them the port goes back to the pool, which keeps it draining for a while.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from ingress.sip.transport.port_pool import PortsExhausted, RtpPortPool

__all__ = ["Address", "DatagramHandler", "RtpSocketPair", "open_rtp_socket_pair"]

logger = logging.getLogger(__name__)

Address = tuple[str, int]
DatagramHandler = Callable[[bytes, Address, bool, float], None]
"""``handler(data, source, on_rtcp_port, arrived_at)``; ``arrived_at`` is ``loop.time()``."""

EARLY_DATAGRAMS = 32  # kept before a handler is attached (~0.6 s of 20 ms RTP)


class _Endpoint(asyncio.DatagramProtocol):
    """Forwards one UDP socket's datagrams to its :class:`RtpSocketPair`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rtcp: bool) -> None:
        self.loop = loop
        self.rtcp = rtcp
        self.pair: RtpSocketPair | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.lost = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # create_datagram_endpoint always passes a DatagramTransport here.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.pair is not None:
            # IPv6 sources come as (host, port, flowinfo, scope_id): keep host and port.
            self.pair._received(data, (str(addr[0]), int(addr[1])), self.rtcp, self.loop.time())

    def error_received(self, exc: Exception) -> None:
        # Linux reports an ICMP port unreachable for an earlier sendto here; routine when
        # the carrier closed its port, so DEBUG only.
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("RTP socket error (rtcp=%s): %s", self.rtcp, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        if self.pair is not None:
            self.pair._socket_closed()


class RtpSocketPair:
    """The bound RTP (``port``) and RTCP (``rtcp_port`` = ``port + 1``) sockets of one call.

    Made by :func:`open_rtp_socket_pair`. ``local_host`` is the bound address (the public
    address for SDP is the caller's business).
    """

    def __init__(
        self,
        pool: RtpPortPool,
        port: int,
        local_host: str,
        rtp: _Endpoint,
        rtcp: _Endpoint,
    ) -> None:
        self.pool = pool
        self.port = port
        self.rtcp_port = port + 1
        self.local_host = local_host
        self._rtp = rtp
        self._rtcp = rtcp
        self._handler: DatagramHandler | None = None
        self._early: deque[tuple[bytes, Address, bool, float]] = deque(maxlen=EARLY_DATAGRAMS)
        self._open_sockets = 2
        self._closed = False
        self._drain: float | None = None
        self.send_errors = 0
        rtp.pair = self
        rtcp.pair = self

    @property
    def closed(self) -> bool:
        return self._closed

    def attach(self, handler: DatagramHandler) -> None:
        """Deliver every datagram to ``handler`` from now on, first those kept so far."""
        self._handler = handler
        early, self._early = list(self._early), deque(maxlen=EARLY_DATAGRAMS)
        for data, source, rtcp, arrived in early:
            handler(data, source, rtcp, arrived)

    def _received(self, data: bytes, source: Address, rtcp: bool, arrived: float) -> None:
        if self._closed:
            return
        if self._handler is None:
            self._early.append((data, source, rtcp, arrived))
            return
        self._handler(data, source, rtcp, arrived)

    def send_rtp(self, data: bytes, target: Address) -> None:
        """Send from the RTP port (symmetric RTP, RFC 4961)."""
        self._send(self._rtp, data, target)

    def send_rtcp(self, data: bytes, target: Address, *, mux: bool) -> None:
        """Send RTCP from the RTP port when multiplexed (RFC 5761), else from ``port + 1``."""
        self._send(self._rtp if mux else self._rtcp, data, target)

    def _send(self, endpoint: _Endpoint, data: bytes, target: Address) -> None:
        if self._closed or endpoint.transport is None or endpoint.transport.is_closing():
            return
        try:
            endpoint.transport.sendto(data, target)
        except (OSError, ValueError, TypeError) as exc:
            # asyncio reports most send errors via error_received; an address of the wrong
            # family raises here. Never let one bad target end the call.
            self.send_errors += 1
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("RTP send to %s failed: %s", target, exc)

    def close(self, *, drain_seconds: float | None = None) -> None:
        """Close both sockets (idempotent). The port returns to the pool, draining for
        ``drain_seconds`` (default: the pool's), once the sockets are closed."""
        if self._closed:
            return
        self._closed = True
        self._drain = drain_seconds
        self._handler = None
        self._early.clear()
        for endpoint in (self._rtp, self._rtcp):
            if endpoint.transport is not None:
                endpoint.transport.close()
            else:  # never connected: nothing will call connection_lost
                self._socket_closed()

    async def wait_closed(self) -> None:
        """Wait until both sockets are closed and the port is back in the pool."""
        await asyncio.gather(self._rtp.lost, self._rtcp.lost)

    def _socket_closed(self) -> None:
        self._open_sockets -= 1
        if self._open_sockets == 0:
            self.pool.release(self.port, drain_seconds=self._drain)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"RtpSocketPair({self.local_host}:{self.port}/{self.rtcp_port}, {state})"


async def _bind(
    loop: asyncio.AbstractEventLoop, host: str, port: int, rtcp: bool
) -> _Endpoint | None:
    try:
        _, protocol = await loop.create_datagram_endpoint(
            lambda: _Endpoint(loop, rtcp), local_addr=(host, port)
        )
    except OSError as exc:
        logger.info("RTP port %s:%d is not available (%s); trying the next one", host, port, exc)
        return None
    return protocol


async def open_rtp_socket_pair(pool: RtpPortPool, host: str = "0.0.0.0") -> RtpSocketPair:
    """Bind RTP on an even pooled port of ``host`` and RTCP on the next one.

    Raises :class:`~ingress.sip.transport.port_pool.PortsExhausted` when no pair is free,
    or when every free pair is refused by the operating system.
    """
    loop = asyncio.get_running_loop()
    for _ in range(pool.size):
        port = pool.acquire()
        rtp = await _bind(loop, host, port, rtcp=False)
        rtcp = await _bind(loop, host, port + 1, rtcp=True) if rtp is not None else None
        if rtp is not None and rtcp is not None:
            return RtpSocketPair(pool, port, host, rtp, rtcp)
        if rtp is not None and rtp.transport is not None:
            rtp.transport.close()
        pool.release(port)  # let it drain: whoever holds it may let go later
    raise PortsExhausted(pool.low, pool.high, pool.in_use, pool.draining)
