"""ElevenLabs Agents Platform (Conversational AI) adapter: ``ElevenLabsSession(config)``.

``events`` holds the typed wire models, ``options`` the trunk settings and dynamic
variables, ``signed_url`` the private-agent REST call, ``conversation`` the sans-I/O
conversation state, ``session`` the asyncio pump.
"""

from providers.elevenlabs.conversation import ConvaiStats
from providers.elevenlabs.session import ElevenLabsSession

__all__ = ["ConvaiStats", "ElevenLabsSession"]
