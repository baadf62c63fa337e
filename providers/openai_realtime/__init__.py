"""OpenAI Realtime adapter (GA interface only): ``OpenAIRealtimeSession(config)``.

``events`` holds the typed wire models, ``options`` the trunk settings, ``conversation``
the sans-I/O conversation state, ``session`` the asyncio pump.
"""

from providers.openai_realtime.conversation import RealtimeStats
from providers.openai_realtime.session import OpenAIRealtimeSession

__all__ = ["OpenAIRealtimeSession", "RealtimeStats"]
