"""From a trunk (decrypted) to the ``AgentConfig`` its provider adapter needs.

The only place that maps our stored trunk onto the provider seam: base URLs come from the
trunk's ``provider_config.base_url`` or, failing that, the deployment's settings
(``TELEPATH_OPENAI_REALTIME_URL``, ``TELEPATH_ELEVENLABS_WS_URL``,
``TELEPATH_ELEVENLABS_API_URL``), so tests and compatible services (Azure OpenAI, proxies)
can stand in for the real providers.
"""

from __future__ import annotations

from gateway.services.trunks import TrunkState
from gateway.settings import Settings
from providers.base import AgentConfig


def agent_config(state: TrunkState, settings: Settings) -> AgentConfig:
    """The adapter configuration for one call on this trunk (a snapshot: later edits don't apply)."""
    trunk = state.trunk
    options: dict[str, object] = {
        k: v for k, v in (trunk.provider_config or {}).items() if k != "base_url"
    }
    override = (trunk.provider_config or {}).get("base_url")
    provider = trunk.ai_provider
    api_key: str | None = None
    base_url: str | None = None
    api_url: str | None = None
    headers: dict[str, str] = {}
    if provider == "openai":
        api_key = state.secrets.get("openai_api_key")
        base_url = override or settings.openai_realtime_url
    elif provider == "elevenlabs":
        api_key = state.secrets.get("elevenlabs_api_key")
        base_url = override or settings.elevenlabs_ws_url
        api_url = settings.elevenlabs_api_url
    elif provider == "custom":
        headers = dict(state.custom_headers)
        credential = state.secrets.get("custom_credential")
        if credential and not any(name.lower() == "authorization" for name in headers):
            # The nested shape's provider_credential reaches a custom agent as a bearer token.
            headers["Authorization"] = f"Bearer {credential}"
    return AgentConfig(
        provider=provider,
        api_key=api_key,
        system_prompt=trunk.system_prompt,
        options=options,
        endpoint=trunk.custom_endpoint,
        headers=headers,
        base_url=base_url,
        api_url=api_url,
        connect_timeout=settings.agent_ready_timeout,
    )
