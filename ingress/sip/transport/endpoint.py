"""The SIP endpoint: the asyncio pump around :class:`~ingress.sip.uas.UserAgentServer`.

It owns the listeners (UDP and TCP on ``--sip``, TLS on ``--sip-tls``), feeds every
datagram or framed message to the UAS core with ``loop.time()`` as ``now``, sends what the
core queued on the right transport, hands the core's events to ``on_event`` and keeps ONE
``loop.call_at`` timer armed at ``uas.get_timer()`` (STYLE.md P2). No protocol decision
lives here.

Owner's contract::

    endpoint = SipEndpoint(uas, on_event=handle)
    await endpoint.start(udp=("0.0.0.0", 5060), tcp=("0.0.0.0", 5060), tls=None)
    endpoint.act(lambda now: uas.ring(call, now))     # every decision goes through act()
    await endpoint.close()

``on_event`` runs synchronously inside the pump; it must not block (start a task for
anything slow). ``act`` runs a decision of the owner against the core with the current
time and flushes at once.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import TypeVar

from ingress.sip.errors import FramingError
from ingress.sip.message import Peer, TransportKind
from ingress.sip.transport.tcp import StreamListener
from ingress.sip.transport.udp import UdpTransport, open_udp
from ingress.sip.uas import UserAgentServer
from ingress.sip.uas_events import UasEvent

__all__ = ["SipEndpoint"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class SipEndpoint:
    """Listeners + UAS core + one timer; see the module docstring."""

    def __init__(
        self,
        uas: UserAgentServer,
        *,
        on_event: Callable[[UasEvent], None],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.uas = uas
        self._on_event = on_event
        self._loop = loop or asyncio.get_running_loop()
        self._udp: UdpTransport | None = None
        self._tcp: StreamListener | None = None
        self._tls: StreamListener | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------
    async def start(
        self,
        *,
        udp: tuple[str, int] | None,
        tcp: tuple[str, int] | None = None,
        tls: tuple[str, int, ssl.SSLContext] | None = None,
    ) -> None:
        """Bind the listeners (raises ``OSError`` if an address is taken)."""
        try:
            if udp is not None:
                self._udp = await open_udp(udp[0], udp[1], self._datagram)
            if tcp is not None:
                self._tcp = StreamListener(
                    TransportKind.TCP, self._message, self._framing_error, self._closed_flow
                )
                await self._tcp.start(tcp[0], tcp[1])
            if tls is not None:
                self._tls = StreamListener(
                    TransportKind.TLS, self._message, self._framing_error, self._closed_flow
                )
                await self._tls.start(tls[0], tls[1], tls[2])
        except BaseException:
            await self.close()
            raise

    @property
    def addresses(self) -> dict[TransportKind, tuple[str, int]]:
        """Where each listener is bound (after ``start``)."""
        out: dict[TransportKind, tuple[str, int]] = {}
        if self._udp is not None:
            out[TransportKind.UDP] = self._udp.local
        if self._tcp is not None:
            out[TransportKind.TCP] = self._tcp.local
        if self._tls is not None:
            out[TransportKind.TLS] = self._tls.local
        return out

    async def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._udp is not None:
            self._udp.close()
        for listener in (self._tcp, self._tls):
            if listener is not None:
                await listener.close()

    # -- the owner's decisions --------------------------------------------------------------
    def now(self) -> float:
        return self._loop.time()

    def act(self, decision: Callable[[float], T]) -> T:
        """Run ``decision(now)`` against the core, then send and dispatch what it caused."""
        try:
            return decision(self._loop.time())
        finally:
            self._flush()

    # -- input ----------------------------------------------------------------------------
    def _datagram(self, data: bytes, source: Peer) -> None:
        self.uas.receive_bytes(data, source, self._loop.time())
        self._flush()

    def _message(self, data: bytes, source: Peer) -> None:
        self.uas.receive_bytes(data, source, self._loop.time())
        self._flush()

    def _framing_error(self, error: FramingError, source: Peer) -> None:
        self.uas.framing_failed(error, source)
        self._flush()

    def _closed_flow(self, peer: Peer) -> None:
        if not self._closed:
            self.uas.transport_failed(peer, self._loop.time())
            self._flush()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.uas.handle_timer(self._loop.time())
        self._flush()

    # -- output ---------------------------------------------------------------------------
    def _flush(self) -> None:
        for outgoing in self.uas.messages_to_send():
            self._send(outgoing.message.serialise(), outgoing.destination)
        while (event := self.uas.next_event()) is not None:
            try:
                self._on_event(event)
            except Exception:  # the owner's bug must not stop the SIP stack
                logger.exception("SIP event handler failed for %s", type(event).__name__)
            for outgoing in self.uas.messages_to_send():
                self._send(outgoing.message.serialise(), outgoing.destination)
        self._rearm()

    def _send(self, data: bytes, destination: Peer) -> None:
        sent = False
        if destination.transport is TransportKind.UDP and self._udp is not None:
            sent = self._udp.send(data, destination)
        elif destination.transport is TransportKind.TCP and self._tcp is not None:
            sent = self._tcp.send(data, destination)
        elif destination.transport is TransportKind.TLS and self._tls is not None:
            sent = self._tls.send(data, destination)
        if not sent:
            logger.debug(
                "SIP message to %s:%s not sent: no transport", destination.host, destination.port
            )

    def _rearm(self) -> None:
        if self._closed:
            return
        deadline = self.uas.get_timer()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)
