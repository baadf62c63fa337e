"""``OpenAIRealtimeSession``: one OpenAI Realtime WebSocket (GA interface) behind the
``AgentSession`` seam.

No protocol decision lives here: parsing is ``events.py``, the conversation state is
``conversation.py``, settings are ``options.py``, and the socket pump (reader and writer
tasks, bounded queues, idempotent close) is ``providers.ws_session``. This module opens the
socket through ``connect_agent``, sends ``session.update`` and waits for
``session.updated``, then feeds server events to the conversation. Caller audio waits in a
bounded drop-oldest queue; control messages go ahead of it.

Ending: ``close()`` is idempotent, cancels both tasks and closes the socket. A socket that
closes while the call is up emits ``AgentError(fatal=True)`` then ``AgentClosed(error)``; a
Realtime session cannot be resumed on a new socket (providers.md §1.9: a reconnect is a new
server session), so there is no reconnect.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from websockets.exceptions import ConnectionClosed

from media import AudioFormat, AudioFrame, CallContext
from providers.agent_socket import AgentSocket
from providers.base import (
    AgentConfig,
    NegotiatedFormats,
    ProviderConfigError,
    ProviderConnectError,
    ProviderError,
    ProviderProtocolError,
)
from providers.connection import connect_agent
from providers.openai_realtime import events as wire
from providers.openai_realtime.conversation import (
    RealtimeConversation,
    RealtimeStats,
    classify_error,
)
from providers.openai_realtime.options import RealtimeOptions, negotiate
from providers.ws_session import (
    WebSocketAgentSession,
    close_detail,
    unexpected_close,
)

logger = logging.getLogger(__name__)

PROVIDER: Final = "openai"
# OpenAI closes with 4000 and ``invalid_request_error.beta_api_shape_disabled`` when the
# beta shape is used (providers.md §0.1, §1.9).
CLOSE_BETA_SHAPE: Final = 4000


def close_error(code: int | None, reason: str) -> ProviderError:
    """Classify a close of the OpenAI socket that we did not ask for."""
    detail = close_detail(code, reason)
    if code == CLOSE_BETA_SHAPE or "beta_api_shape_disabled" in reason:
        return ProviderConfigError(
            "OpenAI refused the Realtime beta interface; Telepath speaks GA only, check "
            f"base_url and proxies for an OpenAI-Beta header {detail}"
        )
    if code == 1008:
        return ProviderConfigError(f"OpenAI closed on a policy violation {detail}")
    return unexpected_close("OpenAI", code, reason)


class OpenAIRealtimeSession(WebSocketAgentSession):
    """One call's conversation with OpenAI Realtime (GA). See the module docstring."""

    def __init__(self, config: AgentConfig) -> None:
        """Read the trunk's settings; raises ``ProviderConfigError`` for unusable ones."""
        super().__init__(config, name="OpenAI", task_prefix="openai")
        self._options = RealtimeOptions.from_config(config)
        self.stats = RealtimeStats()
        self._conv: RealtimeConversation | None = None

    # --- opening ---

    async def _connect(self, context: CallContext) -> AgentSocket:
        return await connect_agent(
            self._options.url,
            provider=PROVIDER,
            headers=self._options.headers,
            connect_timeout=self._config.connect_timeout,
            ping_interval=self._config.ping_interval,
        )

    async def _handshake(
        self, ws: AgentSocket, context: CallContext, preferred: AudioFormat
    ) -> NegotiatedFormats:
        """Send ``session.update``, wait for ``session.updated``."""
        formats = negotiate(preferred)
        timeout = self._config.connect_timeout
        try:
            async with asyncio.timeout(timeout):
                await ws.send(wire.encode(wire.session_update(self._options.session(formats))))
                while True:
                    try:
                        event = wire.parse_server_event(await ws.recv())
                    except ProviderProtocolError as exc:
                        logger.warning("call %s: %s", self._call_id, exc.message)
                        continue
                    if isinstance(event, wire.SessionUpdated):
                        return formats
                    if isinstance(event, wire.ErrorReceived):
                        # An error before session.updated means our configuration was
                        # refused, unless it names a cause of its own (key, quota, limits).
                        error, _ = classify_error(event)
                        if isinstance(error, ProviderProtocolError) or type(error) is ProviderError:
                            raise ProviderConfigError(
                                "OpenAI refused the session configuration: "
                                f"{(event.message or event.code)[:300]}"
                            )
                        raise error
        except TimeoutError as exc:
            raise ProviderConnectError(
                f"OpenAI did not confirm the session within {timeout:g} s"
            ) from exc
        except ConnectionClosed:
            raise close_error(ws.close_code, ws.close_reason or "") from None

    def _opened(self, formats: NegotiatedFormats) -> None:
        self._conv = RealtimeConversation(self._options, formats, self.stats, self._call_id)
        logger.info(
            "call %s: OpenAI session ready (model %s, %s in, %s out)",
            self._call_id,
            self._options.model,
            formats.input,
            formats.output,
        )

    # --- caller → agent ---

    async def answered(self) -> None:
        """Trigger the greeting (``options["greeting"]``) now that the caller is connected."""
        if self._conv is not None and self.is_open:
            self._conv.greet()
            self._flush_control()

    def send_audio(self, frame: AudioFrame) -> None:
        """Queue caller audio; when the queue is full the oldest frame is dropped."""
        if not self.is_open or self._formats is None:
            return
        if frame.format != self._formats.input:
            self.stats.audio_frames_dropped += 1
            logger.debug(
                "call %s: dropped %s audio, expected %s",
                self._call_id,
                frame.format,
                self._formats.input,
            )
            return
        if self._queue_audio(frame):
            self.stats.audio_frames_dropped += 1

    def send_dtmf(self, digit: str) -> None:
        """Pass a key press to the model as a user text item (see ``RealtimeConversation``)."""
        if self._conv is not None and self.is_open:
            self._conv.dtmf(digit)
            self._flush_control()

    def played(self, item_id: str, played_ms: int) -> None:
        """Truncate ``item_id`` at what the caller heard (clamped to the audio received)."""
        if self._conv is not None and self.is_open:
            self._conv.played(item_id, played_ms)
            self._flush_control()

    def _encode_audio(self, frame: AudioFrame) -> str:
        self.stats.audio_frames_sent += 1
        return wire.input_audio_buffer_append(frame.payload)

    def _flush_control(self) -> None:
        if self._conv is not None:
            self._queue_control(*map(wire.encode, self._conv.data_to_send()))

    # --- agent → bridge ---

    def _receive(self, ws: AgentSocket, data: str | bytes) -> None:
        conv = self._conv
        assert conv is not None  # set by _opened before the reader starts
        try:
            conv.receive_event(wire.parse_server_event(data), asyncio.get_running_loop().time())
        except ProviderProtocolError as exc:
            logger.warning("call %s: %s", self._call_id, exc.message)
            conv.protocol_error(exc)
        self._flush_control()
        self._emit(*conv.events_received())

    def _peer_closed(self, ws: AgentSocket, closed: ConnectionClosed) -> ProviderError:
        error = close_error(ws.close_code, ws.close_reason or "")
        logger.warning("call %s: %s", self._call_id, error.message)
        return error
