"""Symmetric RTP latching: send to where the caller's media really comes from.

Behind NAT the address in the SDP is often wrong, so we latch onto the source of the
first valid RTP packet (the "symmetric RTP" practice of RFC 4961 and of every SBC) and
send our RTP there. After that, packets from other addresses are ignored and counted,
except in two cases, chosen so that a stray or spoofed packet cannot steal the stream:

* **Same SSRC, new address** (NAT rebinding, a carrier moving the stream between media
  servers without changing it): re-latch at once, but only if the packet continues the
  stream, i.e. its sequence number is within ``MAX_DROPOUT`` ahead of the last one
  (RFC 3550 A.1). An off-path attacker would need both the 32-bit SSRC and the sequence.
* **New SSRC, new address** (a new media server took over): re-latch only after
  ``switch_after`` consecutive packets of that SSRC from that address with consecutive
  sequence numbers, uninterrupted by the latched source. A packet from the latched
  source resets the candidate.

A new SSRC from the *latched* address is simply accepted (the sender restarted its
stream). Before anything was latched, the first valid packet wins, from any address:
the SDP address is only where we *send* until then. Call :meth:`SymmetricLatch.reset`
when a re-INVITE changes the remote media, to latch afresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from ingress.sip.rtp.packet import seq_diff

__all__ = ["Address", "LatchDecision", "SymmetricLatch"]

Address = tuple[str, int]
MAX_DROPOUT: Final = 3000


class LatchDecision(StrEnum):
    LATCHED = "latched"  # first packet: now latched to its source
    ACCEPTED = "accepted"
    RELATCHED = "relatched"  # the latched source changed to this packet's
    IGNORED = "ignored"  # from an unexpected source: drop the packet


@dataclass(slots=True)
class _Candidate:
    source: Address
    ssrc: int
    last_seq: int
    count: int


class SymmetricLatch:
    """Pure latching state for one RTP stream. ``remote`` is the SDP address, used as the
    send target until a packet arrives."""

    def __init__(self, remote: Address | None = None, *, switch_after: int = 5) -> None:
        if switch_after < 1:
            raise ValueError("switch_after must be at least 1")
        self.switch_after = switch_after
        self.ignored = 0
        self.relatches = 0
        self.reset(remote)

    def reset(self, remote: Address | None) -> None:
        """Forget the latch (e.g. after a re-INVITE changed the remote address)."""
        self._sdp_remote = remote
        self.latched: Address | None = None
        self.ssrc: int | None = None
        self._last_seq = 0
        self._candidate: _Candidate | None = None

    @property
    def send_to(self) -> Address | None:
        """Where to send our RTP: the latched source, else the SDP address."""
        return self.latched if self.latched is not None else self._sdp_remote

    def receive(self, source: Address, ssrc: int, sequence_number: int) -> LatchDecision:
        """Judge one valid RTP packet from ``source``; drop it if ``IGNORED``."""
        if self.latched is None:
            self._latch(source, ssrc, sequence_number)
            return LatchDecision.LATCHED
        if source == self.latched:
            self._candidate = None
            self.ssrc = ssrc
            self._last_seq = sequence_number
            return LatchDecision.ACCEPTED
        if ssrc == self.ssrc and 0 < seq_diff(sequence_number, self._last_seq) < MAX_DROPOUT:
            self._relatch(source, ssrc, sequence_number)
            return LatchDecision.RELATCHED
        cand = self._candidate
        if (
            cand is not None
            and cand.source == source
            and cand.ssrc == ssrc
            and seq_diff(sequence_number, cand.last_seq) == 1
        ):
            cand.count += 1
            cand.last_seq = sequence_number
        else:
            cand = self._candidate = _Candidate(source, ssrc, sequence_number, 1)
        if cand.count >= self.switch_after:
            self._relatch(source, ssrc, sequence_number)
            return LatchDecision.RELATCHED
        self.ignored += 1
        return LatchDecision.IGNORED

    def _latch(self, source: Address, ssrc: int, seq: int) -> None:
        self.latched = source
        self.ssrc = ssrc
        self._last_seq = seq
        self._candidate = None

    def _relatch(self, source: Address, ssrc: int, seq: int) -> None:
        self.relatches += 1
        self._latch(source, ssrc, seq)
