"""Prometheus metrics of one Telepath process, served at ``/metrics``.

One ``GatewayMetrics`` per process (kept on ``Services``), each with its own
``CollectorRegistry`` so that several apps in one test process never clash. Label sets are
small and fixed (status, blame, category, outcome): no call ids, numbers or trunk ids, so
the series count stays bounded whatever the traffic.

Names follow the Prometheus conventions (https://prometheus.io/docs/practices/naming/):
base units (seconds), ``_total`` on counters.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from gateway.overload import LoopLag

_LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
_SETUP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)
_JITTER_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5)


class GatewayMetrics:
    """The gateway's metric families; methods are cheap and never raise."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.active_calls = Gauge(
            "telepath_active_calls", "Calls in progress on this process", registry=r
        )
        self.calls = Counter(
            "telepath_calls",
            "Finished calls by final status and blame",
            ["status", "blame"],
            registry=r,
        )
        self.setup_seconds = Histogram(
            "telepath_call_setup_seconds",
            "From the first ringing to the answer with the agent ready",
            buckets=_SETUP_BUCKETS,
            registry=r,
        )
        self.ai_latency_seconds = Histogram(
            "telepath_ai_latency_seconds",
            "Per turn: caller end of speech to the agent's first audio",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.jitter_seconds = Histogram(
            "telepath_call_jitter_max_seconds",
            "Per call: the largest interarrival jitter measured (RFC 3550 section 6.4.1)",
            buckets=_JITTER_BUCKETS,
            registry=r,
        )
        self.rtp_packets_received = Counter(
            "telepath_rtp_packets_received", "RTP packets received from callers", registry=r
        )
        self.rtp_packets_lost = Counter(
            "telepath_rtp_packets_lost", "RTP packets lost on the way from callers", registry=r
        )
        self.provider_errors = Counter(
            "telepath_provider_errors", "AI provider errors by category", ["category"], registry=r
        )
        self.webhook_deliveries = Counter(
            "telepath_webhook_deliveries",
            "Status-webhook delivery attempts by outcome (delivered, retry, failed)",
            ["outcome"],
            registry=r,
        )

        self.event_loop_lag_seconds = Gauge(
            "telepath_event_loop_lag_seconds",
            "How late the event loop runs its callbacks, smoothed (gateway.overload)",
            registry=r,
        )
        self.overloaded = Gauge(
            "telepath_overloaded",
            "1 while new calls are refused because the event loop runs late",
            registry=r,
        )

    def watch_load(self, lag: LoopLag) -> None:
        """Read the load-shedding state at every scrape."""
        self.event_loop_lag_seconds.set_function(lambda: lag.lag_ms / 1000)
        self.overloaded.set_function(lambda: 1.0 if lag.overloaded else 0.0)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
