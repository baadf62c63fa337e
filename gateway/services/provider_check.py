"""Checking provider credentials when a trunk is created or its key changes.

On when ``TELEPATH_VALIDATE_PROVIDER_CREDENTIALS`` is set. A key the provider refuses
(401/403) fails the request with ``invalid_provider_credentials``; a provider that cannot
be reached does not block the change: the trunk is saved with ``credentials_verified:
false``. Base URLs are configurable so tests (and proxies) can stand in for the provider.
"""

from __future__ import annotations

import logging

import httpx

from gateway.services.errors import Unauthorized

logger = logging.getLogger(__name__)

_NAMES = {"openai": "OpenAI", "elevenlabs": "ElevenLabs"}


class ProviderChecker:
    """Asks a provider's REST API whether a key is good."""

    def __init__(
        self, *, enabled: bool, openai_api_url: str, elevenlabs_api_url: str, timeout: float = 5.0
    ) -> None:
        self.enabled = enabled
        self.openai_api_url = openai_api_url.rstrip("/")
        self.elevenlabs_api_url = elevenlabs_api_url.rstrip("/")
        self.timeout = timeout

    async def check(self, provider: str, key: str) -> bool | None:
        """True (accepted), False (could not be checked), None (not checked).

        Raises ``Unauthorized("invalid_provider_credentials")`` when the provider refuses it.
        """
        if not self.enabled or provider not in _NAMES or not key:
            return None
        if provider == "openai":
            url, headers = f"{self.openai_api_url}/v1/models", {"Authorization": f"Bearer {key}"}
        else:
            url, headers = f"{self.elevenlabs_api_url}/v1/user", {"xi-api-key": key}
        try:
            async with httpx.AsyncClient(timeout=self.timeout, trust_env=False) as client:
                response = await client.get(url, headers=headers)
        except httpx.HTTPError as exc:
            logger.warning(
                "could not reach %s to check a key: %s", _NAMES[provider], type(exc).__name__
            )
            return False
        if response.status_code in (401, 403):
            field = f"{provider}_api_key"
            raise Unauthorized(
                "invalid_provider_credentials",
                f"The provided {field} could not be validated ({_NAMES[provider]} answered {response.status_code})",
            )
        if response.is_success:
            return True
        logger.warning("%s answered %s when checking a key", _NAMES[provider], response.status_code)
        return False
