"""What the custom agent dialects raise for a frame they cannot understand.

Kept out of ``providers.custom_ws.messages`` (compiled, gateway/native.py) because they
subclass ``providers.errors.ProviderProtocolError``, which is interpreted.
"""

from __future__ import annotations

from providers.base import ProviderProtocolError

__all__ = ["MalformedAccept", "MalformedAgentMessage"]


class MalformedAgentMessage(ProviderProtocolError):
    """An agent frame that is not valid JSON, not an object, or not a message we know."""


class MalformedAccept(MalformedAgentMessage):
    """An ``accept`` naming a format the protocol does not allow: negotiation fails."""
