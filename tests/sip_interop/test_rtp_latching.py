"""sipp with RTP: G.711 audio and RFC 2833 DTMF played from pcaps (Debian sip-tester's
/usr/share/sip-tester/*.pcap) from sipp's media socket on 127.0.0.1, while the SDP
advertises 127.0.0.2. The gateway must latch (symmetric RTP): its audio goes where the
caller's RTP comes from, and the DTMF key presses reach the agent once each.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.sip_interop.support import (
    Gateway,
    LoopbackCapture,
    RecordingAgent,
    free_udp_port,
    sipp_messages,
    sipp_pcap_call,
)

pytestmark = pytest.mark.slow

DECOY = "127.0.0.2"


def test_media_follows_the_real_rtp_source(gw: Gateway, tmp_path: Path) -> None:
    media_port = free_udp_port() & ~1
    real, advertised = ("127.0.0.1", media_port), (DECOY, media_port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as decoy:
        decoy.bind(advertised)  # so packets sent there are delivered (and counted)
        with RecordingAgent() as agent, LoopbackCapture({real, advertised}) as capture:
            trunk = gw.create_trunk(ai_provider="custom", custom_endpoint=agent.url)
            sipp_pcap_call(gw, trunk, tmp_path, media_port=media_port, decoy_ip=DECOY)
    log = sipp_messages(tmp_path)
    assert f"c=IN IP4 {DECOY}" in log  # the offer named the decoy address
    answer_ports = {
        int(line.split()[1]) for line in log.splitlines() if line.startswith("m=audio")
    } - {media_port}
    [our_port] = answer_ports
    # Our RTP reached sipp's real media socket (latched), from our advertised RTP port ...
    assert capture.counts[real] > 100, capture.counts
    assert capture.sources[real] == {("127.0.0.1", our_port)}
    # ... and only the few packets sent before the first caller packet went to the SDP address.
    assert capture.counts[advertised] < 10, capture.counts
    # The pcap DTMF (its own SSRC and sequence numbers) reached the agent once per key.
    assert agent.digits == ["1", "2", "#"], agent.digits
    assert agent.media_received > 50
