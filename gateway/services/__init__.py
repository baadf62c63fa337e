"""The service layer: what the API, the dashboard, the CLI and the ingresses call.

Services own database transactions and raise ``ServiceError`` subclasses
(``gateway.services.errors``); nothing below them knows about HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.drain import DrainState
from gateway.metrics import GatewayMetrics
from gateway.overload import RETRY_AFTER_S, LoopLag
from gateway.secret_box import Keyring, load_keyring
from gateway.services.analytics import AnalyticsService
from gateway.services.api_keys import ApiKeyService
from gateway.services.calls import CallService, default_node_name
from gateway.services.provider_check import ProviderChecker
from gateway.services.ratelimit import RateLimiter, make_rate_limiter
from gateway.services.shared_state import SharedState
from gateway.services.trunks import TrunkService
from gateway.services.webhooks import WebhookService
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.call_runner import CallRunner


@dataclass
class Services:
    """Everything a Telepath process shares between requests and calls."""

    settings: Settings
    keyring: Keyring
    api_keys: ApiKeyService
    trunks: TrunkService
    rate_limiter: RateLimiter
    calls: CallService
    webhooks: WebhookService
    analytics: AnalyticsService
    metrics: GatewayMetrics
    # Scale-out: whether this node drains (gateway.drain) and, with --redis, what the
    # nodes share (gateway.services.shared_state): active-call counts, config changes.
    drain: DrainState = field(default_factory=DrainState)
    shared: SharedState | None = None
    # Load shedding (gateway.overload): new calls get 503 while the loop runs late.
    overload: LoopLag = field(default_factory=lambda: LoopLag(0))
    _runner: CallRunner | None = field(default=None, init=False, repr=False)

    @property
    def runner(self) -> CallRunner:
        """The process's ``CallRunner`` (made on first use): every call goes through it."""
        if self._runner is None:
            from gateway.call_runner import CallRunner

            self._runner = CallRunner(self)
        return self._runner

    @classmethod
    def build(cls, settings: Settings, keyring: Keyring | None = None) -> Services:
        """Wire the services for ``settings`` (the database must be open)."""
        ring = keyring or load_keyring(settings.secret_key, settings.key_file)
        checker = ProviderChecker(
            enabled=settings.validate_provider_credentials,
            openai_api_url=settings.openai_api_url,
            elevenlabs_api_url=settings.elevenlabs_api_url,
        )
        trunks = TrunkService(ring, settings.sip_domain, checker)
        metrics = GatewayMetrics()
        node = default_node_name(str(settings.sip.port))
        overload = LoopLag(settings.overload_lag_ms)
        metrics.watch_load(overload)
        return cls(
            settings=settings,
            keyring=ring,
            api_keys=ApiKeyService(),
            trunks=trunks,
            rate_limiter=make_rate_limiter(settings.redis_url, settings.rate_limit_per_minute),
            calls=CallService(node),
            webhooks=WebhookService(trunks, metrics),
            analytics=AnalyticsService(),
            metrics=metrics,
            shared=SharedState(settings.redis_url, node) if settings.redis_url else None,
            overload=overload,
        )

    def new_call_refusal(self, now: float) -> tuple[str, int] | None:
        """Why this node must not take a new call now, with the Retry-After seconds of its
        503, or ``None``: it drains (gateway.drain) or is overloaded (gateway.overload).
        The one rule for SIP INVITEs and carrier voice webhooks alike."""
        if self.drain.draining:
            return "draining", self.drain.retry_after(now)
        if self.overload.overloaded:
            return "overloaded", RETRY_AFTER_S
        return None

    async def close(self) -> None:
        """Release shared connections."""
        await self.webhooks.stop()
        await self.rate_limiter.close()
        if self.shared is not None:
            await self.shared.close()
