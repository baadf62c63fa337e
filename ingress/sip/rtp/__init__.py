"""Sans-I/O RTP media for the SIP ingress (RFC 3550, RFC 4733, RFC 3389).

Pure pieces; the asyncio RTP transport and the call runner feed them datagrams and a
monotonic ``now`` and send what they return. Nothing here reads a clock, a socket or a
random source (randomness comes in as ``rand_bits(k) -> int``, e.g. ``secrets.randbits``).

* ``packet``   – :class:`RtpPacket` parse/serialise (exact round trips), RTP/RTCP demux.
* ``rtcp``     – SR/RR/SDES/BYE, :class:`RtcpReporter` (periodic reports, RTT).
* ``stats``    – :class:`ReceiverStatistics` (RFC 3550 A.1/A.3/A.8), :class:`MediaTimeout`.
* ``latching`` – :class:`SymmetricLatch` (where to send; which packets to drop).
* ``jitter``   – :class:`JitterBuffer` (reorder, de-duplicate, adapt, conceal).
* ``reorder``  – :class:`ReorderBuffer` (forward on arrival, in order; conceal gaps).
* ``dtmf``     – RFC 4733 payloads, :class:`DtmfReceiver`, :func:`event_packets`.
* ``pacer``    – :class:`Pacer`: agent audio out, one packet per ptime, marks, clear.

Errors::

    RtpError                      peer input we cannot use (drop the datagram, count it)
     ├── MalformedRtp             not an RTP packet: bad version, truncated, bad padding
     ├── MalformedRtcp            not an RTCP compound packet
     └── MalformedTelephoneEvent  RFC 4733 payload shorter than 4 bytes

Local misuse (a digit that is not DTMF, a negative ptime) raises ``ValueError``.
"""

from ingress.sip.rtp.dtmf import DtmfReceived, DtmfReceiver, TelephoneEvent, event_packets
from ingress.sip.rtp.jitter import JitterBuffer, Lost, PlayoutFrame, PushResult
from ingress.sip.rtp.latching import LatchDecision, SymmetricLatch
from ingress.sip.rtp.pacer import Pacer
from ingress.sip.rtp.packet import (
    HeaderExtension,
    MalformedRtcp,
    MalformedRtp,
    MalformedTelephoneEvent,
    RtpError,
    RtpPacket,
    is_rtcp,
)
from ingress.sip.rtp.reorder import ReorderBuffer
from ingress.sip.rtp.rtcp import RtcpReporter, SenderInfo
from ingress.sip.rtp.stats import MediaTimedOut, MediaTimeout, ReceiverStatistics

__all__ = [
    "DtmfReceived",
    "DtmfReceiver",
    "HeaderExtension",
    "JitterBuffer",
    "LatchDecision",
    "Lost",
    "MalformedRtcp",
    "MalformedRtp",
    "MalformedTelephoneEvent",
    "MediaTimedOut",
    "MediaTimeout",
    "Pacer",
    "PlayoutFrame",
    "PushResult",
    "ReceiverStatistics",
    "ReorderBuffer",
    "RtcpReporter",
    "RtpError",
    "RtpPacket",
    "SenderInfo",
    "SymmetricLatch",
    "TelephoneEvent",
    "event_packets",
    "is_rtcp",
]
