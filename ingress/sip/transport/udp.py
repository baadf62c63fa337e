"""SIP over UDP (RFC 3261 §18): one datagram socket, datagrams in, datagrams out.

A boring shell: every datagram goes to ``on_datagram(data, source)`` untouched; the SIP
core decides everything (parsing, limits, answers). Oversized datagrams are cut by the
socket layer at 65535 bytes and then rejected by the parser's size limit (513).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

from ingress.sip.message import Peer, TransportKind

__all__ = ["UdpTransport", "open_udp"]

logger = logging.getLogger(__name__)

DatagramHandler = Callable[[bytes, Peer], None]


class UdpTransport(asyncio.DatagramProtocol):
    """The listening UDP socket; ``send`` never blocks and never raises on peer trouble."""

    def __init__(self, on_datagram: DatagramHandler) -> None:
        self._on_datagram = on_datagram
        self._transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        sockname = transport.get_extra_info("sockname")
        self.local = (str(sockname[0]), int(sockname[1]))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._on_datagram(data, Peer(TransportKind.UDP, str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the transaction timers handle the loss.
        logger.debug("SIP UDP socket error: %s", exc)

    def send(self, data: bytes, destination: Peer) -> bool:
        """Queue ``data`` for ``destination``; ``False`` if the socket is closed."""
        if self._transport is None or self._transport.is_closing():
            return False
        try:
            self._transport.sendto(data, (destination.host, destination.port))
        except (OSError, ValueError) as error:
            logger.debug("SIP UDP send to %s failed: %s", destination.host, error)
            return False
        return True

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def open_udp(host: str, port: int, on_datagram: DatagramHandler) -> UdpTransport:
    """Bind the SIP UDP socket on ``host:port``."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: UdpTransport(on_datagram), local_addr=(host, port)
    )
    return protocol
