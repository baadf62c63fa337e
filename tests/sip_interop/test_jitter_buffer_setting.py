"""``--jitter-buffer``: a SIP caller's audio is forwarded to the agent as it arrives by
default, and held in the adaptive jitter buffer (20-40 ms) when the operator asks for it.
sipp plays G.711 from a pcap; the call record's ``jitter_buffer_ms`` tells the two apart.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sip_interop.support import (
    Gateway,
    RecordingAgent,
    free_udp_port,
    gateway,
    sip_call_id,
    sipp_pcap_call,
)

pytestmark = pytest.mark.slow


def _call_with_audio(gw: Gateway, cwd: Path) -> dict[str, object]:
    """One sipp call that plays a G.711 pcap; returns its media figures."""
    media_port = free_udp_port() & ~1
    with RecordingAgent() as agent:
        trunk = gw.create_trunk(ai_provider="custom", custom_endpoint=agent.url)
        sipp_pcap_call(gw, trunk, cwd, media_port=media_port, decoy_ip="127.0.0.1")
        assert agent.media_received > 20
    record = gw.call_by_sip_id(sip_call_id(cwd))
    media = record["metrics"]["media"]
    assert isinstance(media, dict)
    return media


def test_forwarding_by_default(gw: Gateway, tmp_path: Path) -> None:
    media = _call_with_audio(gw, tmp_path)
    assert media["packets_received"] > 20  # the pcap's G.711 audio
    assert media["jitter_buffer_ms"] == 0
    # What forwarding and the pacer did is in the record too. sipp splices pcaps with
    # unrelated sequence numbers: the gaps between them are skipped, never invented.
    assert 0 <= media["inbound_skipped"] <= media["packets_lost"], media  # type: ignore[operator]
    assert media["playout_drained_frames"] == 0, media


def test_jitter_buffer_when_asked(tmp_path: Path) -> None:
    with gateway(tmp_path / "gw", extra_args=["--jitter-buffer"]) as buffered:
        media = _call_with_audio(buffered, tmp_path)
    assert media["packets_received"] > 20  # the pcap's G.711 audio
    assert 20 <= media["jitter_buffer_ms"] <= 40  # type: ignore[operator]
