"""``ElevenLabsSession``: one ElevenLabs Agents WebSocket behind the ``AgentSession`` seam.

No protocol decision lives here: parsing is ``events.py``, the conversation state is
``conversation.py``, settings and dynamic variables are ``options.py``, the private-agent
REST call is ``signed_url.py``, and the socket pump (reader and writer tasks, bounded
queues, idempotent close) is ``providers.ws_session``. ``open`` gets a signed URL when an
API key is configured, connects through ``connect_agent``, sends
``conversation_initiation_client_data`` and waits for ``conversation_initiation_metadata``,
whose formats become the ``NegotiatedFormats`` (ElevenLabs cannot change formats per
conversation, providers.md §0.5). Then server events feed the conversation (pongs are sent
straight back by the reader) and caller audio waits in a bounded drop-oldest queue,
control messages first.

Ending: ``close()`` is idempotent, cancels both tasks and closes the socket. A socket that
closes while the call is up emits ``AgentError(fatal=True)`` then ``AgentClosed(error)``,
unless the agent had asked to hang up or transfer. A conversation cannot be resumed on a
new socket, so there is no reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from providers.elevenlabs import events as wire
from providers.elevenlabs.conversation import ConvaiConversation, ConvaiStats
from providers.elevenlabs.options import ConvaiOptions, dynamic_variables
from providers.elevenlabs.signed_url import DEFAULT_API_URL, get_signed_url
from providers.ws_session import (
    WebSocketAgentSession,
    close_detail,
    unexpected_close,
)

logger = logging.getLogger(__name__)

PROVIDER: Final = "elevenlabs"


def close_error(code: int | None, reason: str) -> ProviderError:
    """Classify a close of the ElevenLabs socket that we did not ask for."""
    detail = close_detail(code, reason)
    if code == 1008:
        # Policy violation: ElevenLabs' answer to a refused override or an invalid message.
        if "override" in reason.lower() or "agent" in reason.lower():
            return ProviderConfigError(f"ElevenLabs refused the conversation set-up {detail}")
        return ProviderProtocolError(f"ElevenLabs refused a message {detail}")
    if code == 1011:
        return ProviderError(f"ElevenLabs had an internal error {detail}")
    return unexpected_close("ElevenLabs", code, reason, ended="the conversation")


class ElevenLabsSession(WebSocketAgentSession):
    """One call's conversation with an ElevenLabs agent. See the module docstring."""

    def __init__(self, config: AgentConfig) -> None:
        """Read the trunk's settings; raises ``ProviderConfigError`` for unusable ones."""
        super().__init__(config, name="ElevenLabs", task_prefix="elevenlabs")
        self._options = ConvaiOptions.from_config(config)
        self.stats = ConvaiStats()
        self.conversation_id: str | None = None
        self._conv: ConvaiConversation | None = None

    # --- opening ---

    async def _connect(self, context: CallContext) -> AgentSocket:
        options, timeout = self._options, self._config.connect_timeout
        if options.api_key is not None:
            url = await get_signed_url(
                options.api_url or DEFAULT_API_URL, options.agent_id, options.api_key, timeout
            )
        else:
            url = options.public_url()
        return await connect_agent(
            url,
            provider=PROVIDER,
            connect_timeout=timeout,
            ping_interval=self._config.ping_interval,
        )

    async def _handshake(
        self, ws: AgentSocket, context: CallContext, preferred: AudioFormat
    ) -> NegotiatedFormats:
        """Send the initiation data, adopt the formats the agent announces."""
        options, limit_s = self._options, self._config.connect_timeout
        first = wire.conversation_initiation_client_data(
            dynamic_variables=dynamic_variables(context),
            prompt=options.prompt,
            first_message=options.first_message,
            language=options.language,
            voice_id=options.voice_id,
        )
        try:
            async with asyncio.timeout(limit_s):
                await ws.send(wire.encode(first))
                while True:
                    try:
                        event = wire.parse_server_event(await ws.recv())
                    except ProviderProtocolError as exc:
                        logger.warning("call %s: %s", self._call_id, exc.message)
                        continue
                    if isinstance(event, wire.Ping):
                        await ws.send(wire.encode(wire.pong(event.event_id)))
                        self.stats.pings_answered += 1
                    elif isinstance(event, wire.ConversationInitiationMetadata):
                        self.conversation_id = event.conversation_id
                        return self._adopt_formats(event, preferred)
                    else:
                        logger.debug("call %s: before metadata, ignored %s", self._call_id, event)
        except TimeoutError as exc:
            raise ProviderConnectError(
                f"ElevenLabs did not start the conversation within {limit_s:g} s"
            ) from exc
        except ConnectionClosed:
            raise close_error(ws.close_code, ws.close_reason or "") from None

    def _adopt_formats(
        self, metadata: wire.ConversationInitiationMetadata, preferred: AudioFormat
    ) -> NegotiatedFormats:
        formats = NegotiatedFormats(
            input=wire.audio_format(metadata.user_input_audio_format),
            output=wire.audio_format(metadata.agent_output_audio_format),
        )
        if formats.input != preferred or formats.output != preferred:
            logger.info(
                "call %s: ElevenLabs agent uses %s/%s, leg is %s: the bridge transcodes "
                "(set the agent to ulaw_8000 for passthrough)",
                self._call_id,
                formats.input,
                formats.output,
                preferred,
            )
        return formats

    def _opened(self, formats: NegotiatedFormats) -> None:
        self._conv = ConvaiConversation(self._options, formats, self.stats, self._call_id)

    # --- caller → agent ---

    async def answered(self) -> None:
        """Release the agent's first message, held while the call rang."""
        if self._conv is not None and self.is_open:
            self._conv.answered()
            self._emit(*self._conv.events_received())

    def send_audio(self, frame: AudioFrame) -> None:
        """Queue caller audio; when the queue is full the oldest frame is dropped."""
        if not self.is_open or self._formats is None:
            return
        if frame.format != self._formats.input:
            self.stats.audio_frames_dropped += 1
            return
        if self._queue_audio(frame):
            self.stats.audio_frames_dropped += 1

    def send_dtmf(self, digit: str) -> None:
        """Pass a key press to the agent as a ``contextual_update``."""
        if self._conv is not None and self.is_open:
            self._conv.dtmf(digit)
            self._queue_control(*map(wire.encode, self._conv.data_to_send()))

    def played(self, item_id: str, played_ms: int) -> None:
        """Nothing to send: ElevenLabs has no truncation message (providers.md §2.6)."""
        del item_id, played_ms

    def _encode_audio(self, frame: AudioFrame) -> str:
        self.stats.audio_frames_sent += 1
        return wire.user_audio_chunk(frame.payload)

    # --- agent → bridge ---

    def _receive(self, ws: AgentSocket, data: str | bytes) -> None:
        conv = self._conv
        assert conv is not None  # set by _opened before the reader starts
        try:
            conv.receive_event(wire.parse_server_event(data))
        except ProviderProtocolError as exc:
            logger.warning("call %s: %s", self._call_id, exc.message)
            conv.protocol_error(exc)
        # Pongs and tool results go out from here, at once, ahead of queued caller audio.
        with contextlib.suppress(ConnectionClosed):  # the reader reports how and why
            for reply in conv.data_to_send():
                ws.write(wire.encode(reply))
        self._emit(*conv.events_received())

    def _peer_closed(self, ws: AgentSocket, closed: ConnectionClosed) -> ProviderError | None:
        conv = self._conv
        if conv is not None and conv.ended_by_agent and ws.close_code in (1000, 1001):
            logger.info("call %s: ElevenLabs closed after the agent ended the call", self._call_id)
            return None
        error = close_error(ws.close_code, ws.close_reason or "")
        logger.warning("call %s: %s", self._call_id, error.message)
        return error
