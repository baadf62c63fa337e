"""Customers' own WebSocket agents, in two dialects chosen per trunk.

``CustomAgentSession`` (``session``) is the ``AgentSession`` for ``provider="custom"``;
``config.options["dialect"]`` picks the wire protocol:

- ``telepath`` (default): our protocol, ``telepath_dialect``, specified in
  docs/agent-protocol.md, with a runnable example agent in examples/echo_agent.py;
- ``twilio``: Twilio Media Streams as Twilio sends them, ``twilio_dialect``, so agents
  written for Twilio run unchanged behind SIP trunks.

The dialects are pure codecs (frames in, ``messages`` dataclasses out, frames to send);
only ``session`` does I/O.

Error tree (all from ``providers.base``)::

    ProviderError
      ├─ ProviderAuthError        the agent's handshake answered 401/403
      ├─ ProviderConnectError     refused, timed out, or closed mid-call
      ├─ ProviderConfigError      bad trunk options, no endpoint, invalid URL, 404
      └─ ProviderProtocolError    an accept we cannot honour, too many bad messages,
           └─ MalformedAgentMessage   one frame we cannot understand (non-fatal)
                └─ MalformedAccept    an accept naming a format outside the protocol
"""

from providers.custom_ws.errors import MalformedAccept, MalformedAgentMessage
from providers.custom_ws.options import CustomAgentOptions
from providers.custom_ws.session import CustomAgentSession, CustomAgentStats
from providers.custom_ws.telepath_dialect import TelepathDialect
from providers.custom_ws.twilio_dialect import TwilioDialect

__all__ = [
    "CustomAgentOptions",
    "CustomAgentSession",
    "CustomAgentStats",
    "MalformedAccept",
    "MalformedAgentMessage",
    "TelepathDialect",
    "TwilioDialect",
]
