"""The picows listener of an agent socket: interpreted on purpose.

picows calls its user's handler through a Cython extension type, ``WSListener``, which
the handler must subclass. A class compiled by mypyc cannot: its object layout would
overlap the extension type's (it crashes). So ``providers.agent_socket.AgentSocket``
(compiled) does the work, and this subclass only carries it to picows: it sets the
socket's bound methods on itself, and picows' method lookup finds them there, so no
interpreted frame runs per WebSocket frame.
"""

from __future__ import annotations

from typing import Protocol

from picows import WSFrame, WSListener, WSTransport

__all__ = ["ForwardingListener", "ListenerTarget"]


class ListenerTarget(Protocol):
    """What picows calls, implemented by ``AgentSocket``."""

    def on_ws_connected(self, transport: WSTransport) -> None: ...
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None: ...
    def on_ws_disconnected(self, transport: WSTransport) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...


_FORWARDED = (
    "on_ws_connected",
    "on_ws_frame",
    "on_ws_disconnected",
    "pause_writing",
    "resume_writing",
)


class ForwardingListener(WSListener):
    """Hands every picows callback to ``target``'s method of the same name."""

    def __init__(self, target: ListenerTarget) -> None:
        super().__init__()
        for name in _FORWARDED:
            setattr(self, name, getattr(target, name))
