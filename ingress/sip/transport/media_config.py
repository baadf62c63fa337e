"""What one call's RTP media is configured with and what it reports.

:class:`MediaConfig` (the process's media settings), :class:`StreamStats` (the counters
:meth:`~ingress.sip.transport.media.RtpMediaStream.stats` returns for the call record)
and :func:`usable_address` (where RTP may be sent). Kept apart from the stream itself so
the settings and the record's vocabulary read on one page.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TypedDict

from ingress.sip.transport.rtp import Address

__all__ = ["MediaConfig", "StreamStats", "usable_address"]


class StreamStats(TypedDict):
    """:meth:`RtpMediaStream.stats`: inbound (RFC 3550 §6.4 receiver view), outbound, RTCP.

    Times are milliseconds. ``packets_*`` count inbound RTP; ``packets_ignored_source``
    the packets dropped by latching; ``inbound_skipped`` missing packets not concealed (gaps
    too long to invent audio for); ``playout_drained_frames`` agent frames dropped to end a
    standing delay (the pacer's standing-queue drain); ``rtt_ms`` is ``None`` until the
    peer echoed an SR.
    """

    packets_received: int
    packets_expected: int
    packets_lost: int
    packets_late: int
    packets_duplicate: int
    packets_ignored_source: int
    packets_malformed: int
    packets_unknown_payload_type: int
    comfort_noise_received: int
    ssrc_changes: int
    relatches: int
    jitter_ms: float
    jitter_max_ms: float
    jitter_mean_ms: float
    jitter_buffer_delay_ms: float
    concealed_frames: int
    inbound_skipped: int
    dtmf_received: int
    events_dropped: int
    rtt_ms: float | None
    packets_sent: int
    audio_sent_ms: float
    playout_queued_ms: float
    playout_dropped_frames: int
    playout_drained_frames: int
    slots_skipped: int
    rtcp_sent: int
    rtcp_received: int
    rtcp_ignored_source: int
    send_errors: int
    internal_errors: int


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """Per-call media settings (the same for every call of a process, as a rule).

    ``media_timeout``: seconds without RTP (not on hold) before ``LegEnded(RTP_TIMEOUT)``.
    ``jitter_buffer``: hold caller audio in the adaptive jitter buffer (``jitter_*``: its
    delay bounds in ms and capacity in packets) instead of forwarding each packet as it
    arrives (the default: an agent has no playout clock to smooth for, see
    :mod:`ingress.sip.rtp.reorder`); ``reorder_window_ms``: how long a forwarded stream
    waits for a packet missing from the sequence before concealing it.
    ``prompt_start`` / ``underrun_grace_ms`` / ``max_early_ms``: the pacer's low-latency
    rules (talk spurts leave as they arrive; a late frame mid-spurt is waited for this
    long; a frame mid-spurt may leave this much before its slot).
    ``event_queue_size``: inbound events held for a slow consumer; beyond it the oldest
    audio frame is dropped (and counted). ``playout_queue_ms``: agent audio held for
    sending (oldest dropped beyond it). ``max_behind_slots``: a pacer tick later than this
    many packet times sends only the current packet instead of a burst.
    ``drain_seconds``: how long the port pair rests after the call (``None``: the pool's).
    """

    media_timeout: float = 30.0
    jitter_buffer: bool = False
    reorder_window_ms: int = 20
    prompt_start: bool = True
    underrun_grace_ms: int = 20
    max_early_ms: int = 5
    jitter_min_delay_ms: int = 20
    jitter_max_delay_ms: int = 40
    jitter_capacity: int = 50
    event_queue_size: int = 100
    playout_queue_ms: int = 60_000
    max_behind_slots: int = 1
    rtcp_interval: float = 5.0
    dtmf_end_timeout: float = 0.5
    relatch_after: int = 5
    max_datagram_bytes: int = 1500
    drain_seconds: float | None = None


def usable_address(host: str, port: int) -> Address | None:
    """``(host, port)`` if RTP may be sent there: an IP literal (no DNS on the media path),
    not unspecified (``0.0.0.0`` is the RFC 3264 §8.4 hold address) and a real port."""
    if not 0 < port <= 65535:
        return None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.is_unspecified or ip.is_multicast:
        return None
    return str(ip), port
