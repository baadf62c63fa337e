"""The service layer: what the API, the dashboard, the CLI and the ingresses call.

Services own database transactions and raise ``ServiceError`` subclasses
(``gateway.services.errors``); nothing below them knows about HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.secret_box import Keyring, load_keyring
from gateway.services.api_keys import ApiKeyService
from gateway.services.provider_check import ProviderChecker
from gateway.services.ratelimit import RateLimiter, make_rate_limiter
from gateway.services.trunks import TrunkService
from gateway.settings import Settings


@dataclass
class Services:
    """Everything a Telepath process shares between requests and calls."""

    settings: Settings
    keyring: Keyring
    api_keys: ApiKeyService
    trunks: TrunkService
    rate_limiter: RateLimiter

    @classmethod
    def build(cls, settings: Settings, keyring: Keyring | None = None) -> Services:
        """Wire the services for ``settings`` (the database must be open)."""
        ring = keyring or load_keyring(settings.secret_key, settings.key_file)
        checker = ProviderChecker(
            enabled=settings.validate_provider_credentials,
            openai_api_url=settings.openai_api_url,
            elevenlabs_api_url=settings.elevenlabs_api_url,
        )
        return cls(
            settings=settings,
            keyring=ring,
            api_keys=ApiKeyService(),
            trunks=TrunkService(ring, settings.sip_domain, checker),
            rate_limiter=make_rate_limiter(settings.redis_url, settings.rate_limit_per_minute),
        )

    async def close(self) -> None:
        """Release shared connections."""
        await self.rate_limiter.close()
