"""SIP timer values (RFC 3261 §17 and Table 4 of Appendix A; RFC 6026 §8.4 for L and M).

Only *values* live here; deadlines are plain floats kept by each transaction and reported
through ``get_timer()``. On a reliable transport (TCP/TLS) the retransmission timers are
not started and the "wait for retransmissions" timers (D, I, J, K) are zero.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SipTimers"]


@dataclass(frozen=True, slots=True)
class SipTimers:
    """T1, T2, T4 (seconds) and the timers derived from them."""

    t1: float = 0.5  # RTT estimate
    t2: float = 4.0  # maximum retransmit interval for non-INVITE requests / INVITE responses
    t4: float = 5.0  # maximum duration a message remains in the network

    def __post_init__(self) -> None:
        if not 0 < self.t1 <= self.t2 or self.t4 <= 0:
            raise ValueError("need 0 < t1 <= t2 and t4 > 0")

    @property
    def timer_a(self) -> float:
        """INVITE request retransmit interval, initially T1 (UDP only)."""
        return self.t1

    @property
    def timer_b(self) -> float:
        """INVITE transaction timeout: 64*T1."""
        return 64 * self.t1

    def timer_d(self, reliable: bool) -> float:
        """Wait time for response retransmits: > 32 s for UDP, 0 for reliable transports."""
        return 0.0 if reliable else max(32.0, 64 * self.t1)

    @property
    def timer_e(self) -> float:
        """Non-INVITE request retransmit interval, initially T1 (UDP only)."""
        return self.t1

    @property
    def timer_f(self) -> float:
        """Non-INVITE transaction timeout: 64*T1."""
        return 64 * self.t1

    @property
    def timer_g(self) -> float:
        """INVITE response retransmit interval, initially T1 (UDP only)."""
        return self.t1

    @property
    def timer_h(self) -> float:
        """Wait time for ACK receipt: 64*T1."""
        return 64 * self.t1

    def timer_i(self, reliable: bool) -> float:
        """Wait time for ACK retransmits: T4 for UDP, 0 for reliable transports."""
        return 0.0 if reliable else self.t4

    def timer_j(self, reliable: bool) -> float:
        """Wait time for non-INVITE request retransmits: 64*T1 for UDP, 0 for reliable."""
        return 0.0 if reliable else 64 * self.t1

    def timer_k(self, reliable: bool) -> float:
        """Wait time for non-INVITE response retransmits: T4 for UDP, 0 for reliable."""
        return 0.0 if reliable else self.t4

    @property
    def timer_l(self) -> float:
        """RFC 6026: wait time for accepted INVITE request retransmits: 64*T1."""
        return 64 * self.t1

    @property
    def timer_m(self) -> float:
        """RFC 6026: wait time for retransmission of 2xx to INVITE: 64*T1."""
        return 64 * self.t1
