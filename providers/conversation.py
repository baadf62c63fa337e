"""What the sans-I/O provider conversations share: their output buffers, the framing of
agent audio and the telephony tools an agent may call.

Pure: no I/O, no clock. ``openai_realtime.conversation`` and ``elevenlabs.conversation``
build on it; each keeps its own protocol (events, barge-in, truncation, tool results).

- ``ConversationOutput``: the sans-I/O output side. A conversation appends client messages
  and agent events while it handles input; the session drains ``data_to_send()`` and
  ``events_received()`` after every call, in order.
- ``agent_frames``: one decoded chunk of agent audio as ``FRAME_MS`` frames.
- ``tool_request``: the gateway's tools ``end_call`` and ``transfer_call``, as the trunk
  enables them, turned into ``HangupRequested`` / ``TransferRequested`` or refused with a
  reason the model can read. A transfer target is an E.164 number or a SIP URI; anything
  else is refused (the model's text is hostile input).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from media import AudioFormat, AudioFrame
from providers.base import AgentEvent, HangupRequested, TransferRequested

FRAME_MS: Final = 20
TRANSFER_TARGET: Final = re.compile(r"^(\+[1-9][0-9]{3,15}|sips?:[^\s<>\"]{3,250})$")


class ConversationOutput:
    """Client messages to send and agent events to emit, drained in order by the session."""

    def __init__(self) -> None:
        self._to_send: list[dict[str, object]] = []
        self._events: list[AgentEvent] = []

    def data_to_send(self) -> list[dict[str, object]]:
        """Client events to send now, in order."""
        out, self._to_send = self._to_send, []
        return out

    def events_received(self) -> list[AgentEvent]:
        """Agent events to emit now, in order."""
        out, self._events = self._events, []
        return out


def agent_frames(fmt: AudioFormat, audio: bytes, start_ms: float) -> list[AudioFrame]:
    """Split decoded agent audio into ``FRAME_MS`` frames (the last may be shorter).

    Timestamps run on from ``start_ms`` (the agent audio already received), so the caller
    adds up ``frame.duration_ms`` in the same order to keep its own clock.
    """
    size = max(fmt.bytes_for_ms(FRAME_MS), 2)
    frames: list[AudioFrame] = []
    at = start_ms
    for start in range(0, len(audio), size):
        frame = AudioFrame(fmt, audio[start : start + size], timestamp=int(at))
        at += frame.duration_ms
        frames.append(frame)
    return frames


class ToolOptions(Protocol):
    """The trunk settings that govern the telephony tools."""

    @property
    def enable_end_call(self) -> bool: ...

    @property
    def enable_transfer(self) -> bool: ...

    @property
    def transfer_target(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class ToolRefused:
    """The tool call cannot be honoured; ``reason`` goes back to the model."""

    reason: str


def tool_request(
    name: str, arguments: Mapping[str, object], options: ToolOptions
) -> HangupRequested | TransferRequested | ToolRefused:
    """What the agent's call of tool ``name`` with ``arguments`` asks of the call.

    ``end_call`` (``reason``) and ``transfer_call`` (``target``; the trunk's
    ``transfer_target`` wins) count only when the trunk enables them.
    """
    if name == "end_call" and options.enable_end_call:
        reason = arguments.get("reason")
        return HangupRequested(reason if isinstance(reason, str) else "")
    if name == "transfer_call" and options.enable_transfer:
        target = options.transfer_target or arguments.get("target")
        if isinstance(target, str) and TRANSFER_TARGET.match(target.strip()):
            return TransferRequested(target.strip())
        return ToolRefused("invalid transfer target: use +E.164 or a sip: URI")
    return ToolRefused(f"the tool {name[:64]!r} is not available")
