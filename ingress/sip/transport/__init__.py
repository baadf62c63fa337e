"""The asyncio shells of the SIP ingress: the only code under ``ingress/sip`` that touches
sockets, the event loop's clock and randomness (see ``tests/test_architecture.py``).

RTP media:

* ``port_pool`` – :class:`RtpPortPool`: even RTP ports (RTCP on port + 1) from the
  ``--rtp-ports LO-HI`` range, shared by all calls of a process, returned after a drain
  period.
* ``rtp``       – :class:`RtpSocketPair`: the bound RTP/RTCP UDP sockets of one call
  (``asyncio.DatagramProtocol``), opened with :func:`open_rtp_socket_pair`.
* ``media``     – :class:`RtpMediaStream`: one call's media over a socket pair, pumping the
  sans-I/O cores of :mod:`ingress.sip.rtp` from one re-armed ``loop.call_at`` timer.

Errors of the RTP shells::

    RtpTransportError             root (``ingress.sip.transport.port_pool``)
     ├── InvalidPortRange         ``--rtp-ports`` is not ``LO-HI`` with room for a pair
     └── PortsExhausted           no free port pair: answer the INVITE 503 (``status_hint``)
"""

from ingress.sip.transport.media import MediaConfig, RtpMediaStream, StreamStats
from ingress.sip.transport.port_pool import (
    InvalidPortRange,
    PortsExhausted,
    RtpPortPool,
    RtpTransportError,
    parse_port_range,
)
from ingress.sip.transport.rtp import RtpSocketPair, open_rtp_socket_pair

__all__ = [
    "InvalidPortRange",
    "MediaConfig",
    "PortsExhausted",
    "RtpMediaStream",
    "RtpPortPool",
    "RtpSocketPair",
    "RtpTransportError",
    "StreamStats",
    "open_rtp_socket_pair",
    "parse_port_range",
]
