"""From a trunk's ``AgentConfig`` to the ``AgentSession`` of its provider.

``create_session(config)`` is the only way the gateway makes agent sessions. Adapters are
imported lazily, inside the call: an adapter that is missing or broken (an optional
dependency not installed, an import error) makes only its own trunks fail, with a
``ProviderConfigError`` in the call record, and never stops the others from loading.

Every adapter class takes the config as its one positional argument
(``OpenAIRealtimeSession(config)``); the built-in echo agent reads its options through
``EchoSession.from_config(config)``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import cast

from providers.base import AgentConfig, AgentSession, ProviderConfigError

logger = logging.getLogger(__name__)

ADAPTERS: dict[str, tuple[str, str]] = {
    "openai": ("providers.openai_realtime", "OpenAIRealtimeSession"),
    "elevenlabs": ("providers.elevenlabs", "ElevenLabsSession"),
    "custom": ("providers.custom_ws", "CustomAgentSession"),
}
"""Provider name → (module, class) of its adapter; ``echo`` is built in."""

PROVIDERS = (*ADAPTERS, "echo")
"""Every provider name ``create_session`` knows."""


def create_session(config: AgentConfig) -> AgentSession:
    """A new, unopened session for ``config.provider`` (``openai`` | ``elevenlabs`` |
    ``custom`` | ``echo``; case and surrounding blanks ignored).

    Raises ``ProviderConfigError`` for an unknown provider, an adapter that cannot be
    loaded, or options the adapter refuses at construction.
    """
    name = config.provider.strip().lower()
    if name == "echo":
        from providers.echo import EchoSession

        return EchoSession.from_config(config)
    target = ADAPTERS.get(name)
    if target is None:
        known = ", ".join(PROVIDERS)
        raise ProviderConfigError(f"unknown AI provider {config.provider!r} (known: {known})")
    module_name, class_name = target
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        logger.error("AI provider %s cannot be loaded: %s", name, exc)
        raise ProviderConfigError(f"AI provider {name!r} is not available: {exc}") from exc
    adapter = getattr(module, class_name, None)
    if not (isinstance(adapter, type) and issubclass(adapter, AgentSession)):
        raise ProviderConfigError(f"AI provider {name!r} has no session class {class_name}")
    factory = cast(Callable[[AgentConfig], AgentSession], adapter)
    return factory(config)
