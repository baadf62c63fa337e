"""The ``CallBridge``: one per call, joining a ``CallLeg`` to an ``AgentSession``.

Calling protocol (ingress side)::

    bridge = CallBridge(leg, create_session(config), BridgeOptions(max_duration=3600))
    bridge.prepare()                 # right after auth, while the call rings: opens the agent
    result = await bridge.run()      # answers when the agent is ready; returns at the end
    bridge.end(CallEnd(...))         # from elsewhere (API hang-up, shutdown): ends the call

``run`` never raises for anything the caller, the carrier or the agent does: every path
ends in a classified ``CallEnd`` inside the returned ``BridgeResult``, the leg answered
and hung up (or rejected), the agent session closed, and no task of the bridge left
running. After ``prepare()`` the owner must await ``run()`` (call ``end()`` first to
refuse the call).

What flows where (docs/architecture.md, "A call, step by step")::

    leg.listen()  ─ AudioFrame ─▶ inbound converter ─▶ session.send_audio
                  ─ DtmfDigit  ─▶ session.send_dtmf
                  ─ MarkPlayed ─▶ heard-ms accounting / session.mark_played
                  ─ LegEnded   ─▶ end of call (leg already gone)
    session.listen() ─ AgentAudio ─▶ outbound converter ─▶ 20 ms rechunker ─▶ playout
                     queue (bounded) ─▶ leg.play + leg.mark, at most ``playout_lead_ms``
                     ahead of what the leg has acknowledged
                     ─ AgentInterrupted ─▶ leg.clear(), then session.played(item, heard)

Events arrive in the callbacks that produced them (the RTP socket's ``datagram_received``,
the agent socket's ``on_ws_frame``, the leg's pacer timer): no task of the bridge runs
per frame. Handling an event may cause another (``leg.mark`` acknowledged at once, say);
the bridge queues events that arrive while it handles one and takes them in order after
it, so a handler never runs inside another.

Formats are negotiated once: ``session.open(context, preferred=leg.format)`` returns
what the agent takes and produces, and one converter per direction is chosen
(``media.converters.make_converter``; identity when the formats are equal, so PCMU
crosses byte for byte).

How much of an item the caller heard: every frame handed to the leg is followed by a
``mark`` named ``tp:<epoch>:<cumulative ms of the item>:<item id>``. The leg acknowledges
a mark exactly when the audio before it has been sent, so the last acknowledged mark of
an item is what the caller heard, to within the one frame whose acknowledgement may still
be on its way. ``clear()`` starts a new epoch: the leg acknowledges the marks behind the
dropped audio at once, and those old-epoch acknowledgements are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.leg import CallLeg
from gateway.playout import PlayoutLedger
from gateway.turns import CallMetrics, TimelineEntry, TurnTracker
from media import AudioFormat, AudioFrame, Blame, CallEnd, DisconnectReason
from media.chunking import Rechunker
from media.converters import Converter, make_converter
from media.errors import MediaError
from media.frames import DTMF_DIGITS, DtmfDigit, LegEnded, LegEvent, MarkPlayed
from media.vad import SpeechStopped, VoiceActivityDetector, l16_decoder
from providers.base import (
    AgentAudio,
    AgentClosed,
    AgentError,
    AgentEvent,
    AgentInterrupted,
    AgentSession,
    CallerSpeechStarted,
    CallerSpeechStopped,
    ClearRequested,
    DtmfRequested,
    ErrorCategory,
    HangupRequested,
    MarkRequested,
    NegotiatedFormats,
    ProviderError,
    ResponseDone,
    TransferRequested,
)

logger = logging.getLogger(__name__)

_ITEMS_REMEMBERED = 16  # per-item accounting kept for the latest items only (flat memory)
_MAX_DTMF = 32  # digits an agent may send in one request


@dataclass(frozen=True, slots=True)
class BridgeOptions:
    """How one call is bridged.

    ``agent_ready_timeout``: seconds from ``prepare()`` for the agent to be ready before
    the call is refused with 503 (``AGENT_UNREACHABLE``). ``max_duration``: seconds from
    answer (the trunk's limit), ``None`` for none. ``playout_queue_frames``: agent audio
    held for playout (agents send faster than real time); when full the oldest frame is
    dropped and counted. ``playout_lead_ms``: how far ahead of what has been sent the leg
    is fed (bounds what ``clear()`` must drop). ``run_vad``: run our own VAD on caller audio
    for turn latency, for providers that report no ``CallerSpeechStopped`` (the provider's
    events win once it sends any). ``hangup_drain_timeout``: after the agent asks to hang
    up, how long its last words may play out first. ``teardown_timeout``: bound on each of
    ``leg.hangup``/``leg.reject``/``session.close`` at the end.
    """

    agent_ready_timeout: float = 5.0
    max_duration: float | None = None
    playout_queue_frames: int = 3000
    playout_lead_ms: int = 200
    frame_ms: int = 20
    run_vad: bool = False
    hangup_drain_timeout: float = 5.0
    teardown_timeout: float = 2.0

    def __post_init__(self) -> None:
        if self.agent_ready_timeout <= 0 or self.teardown_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if self.max_duration is not None and self.max_duration <= 0:
            raise ValueError("max_duration must be positive (or None)")
        if self.frame_ms <= 0 or self.playout_lead_ms < self.frame_ms:
            raise ValueError("playout_lead_ms must hold at least one frame")
        if self.playout_queue_frames < 1 or self.hangup_drain_timeout < 0:
            raise ValueError("playout_queue_frames must be >= 1, hangup_drain_timeout >= 0")


@dataclass(frozen=True, slots=True)
class BridgeResult:
    """How a bridged call went. Times are on the bridge's clock (seconds)."""

    end: CallEnd
    started_at: float
    answered_at: float | None
    ended_at: float
    formats: NegotiatedFormats | None
    metrics: CallMetrics
    timeline: tuple[TimelineEntry, ...]

    @property
    def answer_delay_ms(self) -> float | None:
        """From ``prepare()`` (ringing) to answer; ``None`` if never answered."""
        if self.answered_at is None:
            return None
        return (self.answered_at - self.started_at) * 1000

    @property
    def talk_ms(self) -> float:
        """From answer to end; 0 if never answered."""
        if self.answered_at is None:
            return 0.0
        return (self.ended_at - self.answered_at) * 1000


def _agent_failure(error: ProviderError, *, at_open: bool) -> CallEnd:
    """Classify an agent failure: unreachable at open, otherwise an agent error."""
    if at_open and error.category is ErrorCategory.CONNECTIVITY:
        return CallEnd(
            DisconnectReason.AGENT_UNREACHABLE, Blame.AI_AGENT, error.message, sip_status=503
        )
    return CallEnd(
        DisconnectReason.AGENT_ERROR,
        Blame.AI_AGENT,
        error.message,
        sip_status=503 if at_open else None,
    )


class CallBridge:
    """Pumps one call between a leg and an agent. See the module docstring."""

    def __init__(
        self,
        leg: CallLeg,
        session: AgentSession,
        options: BridgeOptions | None = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``clock`` (seconds) times metrics and the timeline; default ``loop.time``. It must
        run on the same timeline as ``AudioFrame.received_at`` (the monotonic clock) for
        the gateway latency to mean anything. Timeouts always run on the event loop."""
        self.leg = leg
        self.session = session
        self.options = options or BridgeOptions()
        self._clock = clock
        self._call_id = leg.context.call_id
        self._tracker: TurnTracker | None = None
        self._started_at = 0.0
        self._ready_deadline = 0.0
        self._open_task: asyncio.Task[NegotiatedFormats] | None = None
        self._formats: NegotiatedFormats | None = None
        self._inbound: Converter | None = None
        self._outbound: Converter | None = None
        self._rechunker: Rechunker | None = None
        self._vad: _Vad | None = None
        self._wake: asyncio.Event | None = None
        # Set while the teardown waits for the agent's last words to play (_update_drained).
        self._drain_waiter: asyncio.Future[None] | None = None
        self._end: CallEnd | None = None
        self._leg_gone = False
        self._drain = False
        self._answered_at: float | None = None
        self._first_agent_audio = False
        self._provider_vad = False
        self._playout = PlayoutLedger(
            max_frames=self.options.playout_queue_frames,
            lead_frames=max(1, self.options.playout_lead_ms // self.options.frame_ms),
            items_remembered=_ITEMS_REMEMBERED,
        )
        self._chunk_item: str | None = None  # the item the rechunker holds a remainder of
        # Events that came while one was handled, in order; both sources share the queue.
        self._pending: deque[LegEvent | AgentEvent] = deque()
        self._handling = False
        self._hearing_leg = False  # leg events handled (from run() until teardown)
        self._hearing_agent = False  # agent events handled (from answer until teardown)
        self._transfer_task: asyncio.Task[None] | None = None

    # --- public API ---

    def prepare(self) -> None:
        """Start opening the agent session (pre-warm while the call rings). Idempotent.

        Never blocks and never raises; failures surface in ``run()``'s result.
        """
        if self._open_task is not None:
            return
        loop = asyncio.get_running_loop()
        if self._clock is None:
            # Bound once: _now runs several times per frame.
            self._clock = loop.time
        self._started_at = self._now()
        self._ready_deadline = loop.time() + self.options.agent_ready_timeout
        self._tracker = TurnTracker(self._started_at)
        self._wake = asyncio.Event()
        self._open_task = loop.create_task(
            self.session.open(self.leg.context, preferred=self.leg.format),
            name=f"agent-open-{self._call_id}",
        )
        self._open_task.add_done_callback(self._opened)

    def end(self, end: CallEnd) -> None:
        """End the call from outside (API hang-up, shutdown); the first end wins."""
        self._finish(end)

    @property
    def formats(self) -> NegotiatedFormats | None:
        """What the agent takes and produces, once it is open."""
        return self._formats

    @property
    def metrics(self) -> CallMetrics:
        """The call's metrics so far."""
        return self._require_tracker().metrics()

    async def run(self) -> BridgeResult:
        """Answer when the agent is ready, pump until the call ends, tear down, report."""
        self.prepare()
        tracker = self._require_tracker()
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None
        interrupted: BaseException | None = None
        try:
            self._hearing_leg = True
            self.leg.listen(self._on_event)
            if await self._agent_ready():
                await self.leg.answer()
                self._answered_at = self._now()
                tracker.note(self._answered_at, "answered")
                self._hearing_agent = True
                self.session.listen(self._on_event)
                if self.options.max_duration is not None:
                    timer = loop.call_later(self.options.max_duration, self._max_duration)
                try:
                    # Triggers the greeting; bounded so a stuck adapter cannot stall the call.
                    async with asyncio.timeout(self.options.agent_ready_timeout):
                        await self.session.answered()
                except ProviderError as exc:
                    tracker.agent_error(exc.category.value)
                    self._finish(_agent_failure(exc, at_open=False))
                except TimeoutError:
                    self._finish(
                        CallEnd(
                            DisconnectReason.AGENT_ERROR,
                            Blame.AI_AGENT,
                            "The agent did not take the answered call in time",
                        )
                    )
                await self._wait_for_end()
        except Exception:
            logger.exception("call_id=%s bridge failed", self._call_id)
            self._finish(
                CallEnd(DisconnectReason.SYSTEM_ERROR, Blame.SYSTEM, "Internal error in the bridge")
            )
        except BaseException as exc:  # run() itself was cancelled: the gateway is going down
            interrupted = exc
        # Not a `finally`: a coroutine compiled by mypyc (gateway/native.py) that awaits
        # while an exception propagates leaks that exception into later awaits.
        if timer is not None:
            timer.cancel()
        if self._end is None:
            self._finish(
                CallEnd(DisconnectReason.SHUTDOWN, Blame.SYSTEM, "Telepath is shutting down")
            )
        await self._teardown()
        if interrupted is not None:
            raise interrupted
        end = self._end
        assert end is not None  # every path above sets it
        ended_at = self._now()
        tracker.note(ended_at, "ended", f"{end.reason.value}/{end.blame.value}")
        return BridgeResult(
            end=end,
            started_at=self._started_at,
            answered_at=self._answered_at,
            ended_at=ended_at,
            formats=self._formats,
            metrics=tracker.metrics(),
            timeline=tracker.timeline,
        )

    # --- lifecycle ---

    def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time()

    def _require_tracker(self) -> TurnTracker:
        if self._tracker is None:
            raise RuntimeError("CallBridge.prepare() or run() has not been called")
        return self._tracker

    def _opened(self, task: asyncio.Task[NegotiatedFormats]) -> None:
        if not task.cancelled() and task.exception() is None:
            self._formats = task.result()
            self._require_tracker().note(
                self._now(),
                "agent_connected",
                f"in={self._formats.input.name} out={self._formats.output.name}",
            )
        if self._wake is not None:
            self._wake.set()

    async def _agent_ready(self) -> bool:
        """Wait for the agent (or an early end); on failure set the end and return False."""
        task = self._open_task
        wake = self._wake
        assert task is not None and wake is not None
        try:
            async with asyncio.timeout_at(self._ready_deadline):
                while not task.done() and self._end is None:
                    wake.clear()
                    await wake.wait()
        except TimeoutError:
            self._finish(
                CallEnd(
                    DisconnectReason.AGENT_UNREACHABLE,
                    Blame.AI_AGENT,
                    f"Agent not ready within {self.options.agent_ready_timeout:g} s",
                    sip_status=503,
                )
            )
            return False
        if self._end is not None:
            return False
        error = task.exception()
        if isinstance(error, ProviderError):
            self._require_tracker().agent_error(error.category.value)
            self._finish(_agent_failure(error, at_open=True))
            return False
        if error is not None:
            logger.error("call_id=%s agent open failed", self._call_id, exc_info=error)
            self._finish(
                CallEnd(
                    DisconnectReason.AGENT_ERROR,
                    Blame.AI_AGENT,
                    f"Agent adapter failed: {type(error).__name__}",
                    sip_status=503,
                )
            )
            return False
        formats = task.result()
        try:
            self._negotiate(formats)
        except MediaError as exc:
            self._finish(
                CallEnd(
                    DisconnectReason.AGENT_ERROR,
                    Blame.AI_AGENT,
                    f"Agent audio formats {formats.input}/{formats.output} cannot be "
                    f"bridged to {self.leg.format}: {exc}",
                    sip_status=503,
                )
            )
            return False
        return True

    def _negotiate(self, formats: NegotiatedFormats) -> None:
        """One converter per direction (identity when equal), the 20 ms rechunker, the VAD.

        Raises ``MediaError`` when a format cannot be converted.
        """
        leg_format = self.leg.format
        self._inbound = make_converter(leg_format, formats.input)
        self._outbound = make_converter(formats.output, leg_format)
        self._rechunker = Rechunker(leg_format, self.options.frame_ms)
        if self.options.run_vad:
            self._vad = _Vad(leg_format)
        logger.info(
            "call_id=%s formats leg=%s agent_in=%s agent_out=%s",
            self._call_id,
            leg_format.name,
            formats.input.name,
            formats.output.name,
        )

    def _finish(self, end: CallEnd, *, leg_gone: bool = False, drain: bool = False) -> None:
        """Record the first end of the call and wake ``run``; later ends are ignored."""
        if leg_gone:
            self._leg_gone = True
            self._drain_done()
        if self._end is not None:
            return
        self._end = end
        self._drain = drain
        logger.info(
            "call_id=%s ending reason=%s blame=%s: %s",
            self._call_id,
            end.reason.value,
            end.blame.value,
            end.explanation,
        )
        if self._wake is not None:
            self._wake.set()

    def _max_duration(self) -> None:
        limit = self.options.max_duration or 0
        self._finish(
            CallEnd(
                DisconnectReason.MAX_DURATION,
                Blame.SYSTEM,
                f"Call reached the maximum duration of {limit:g} s",
            )
        )

    async def _wait_for_end(self) -> None:
        wake = self._wake
        assert wake is not None
        while self._end is None:
            wake.clear()
            await wake.wait()

    async def _teardown(self) -> None:
        end = self._end
        assert end is not None
        timeout = self.options.teardown_timeout
        self._hearing_agent = False
        if self._transfer_task is not None:
            await _cancel(self._transfer_task)
        if self._drain and self._answered_at is not None and not self._leg_gone:
            # The agent said goodbye and asked to hang up: let its last words play out.
            self._flush_rechunker()
            self._feed()
            if not self._playout.drained:
                waiter = asyncio.get_running_loop().create_future()
                self._drain_waiter = waiter
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.options.hangup_drain_timeout):
                        await waiter
                self._drain_waiter = None
        self._hearing_leg = False
        if self._open_task is not None:
            await _cancel(self._open_task)
        if not self._leg_gone:
            try:
                async with asyncio.timeout(timeout):
                    if self._answered_at is not None:
                        await self.leg.hangup(end)
                    else:
                        await self.leg.reject(end)
            except Exception:
                logger.warning("call_id=%s leg hang-up failed", self._call_id, exc_info=True)
        try:
            async with asyncio.timeout(timeout):
                await self.session.close(end.reason.value)
        except Exception:
            logger.warning("call_id=%s agent close failed", self._call_id, exc_info=True)
        self._playout.reset()

    # --- events in, from both sides ---

    def _on_event(self, event: LegEvent | AgentEvent) -> None:
        """The listener of the leg and of the agent session (see the module docstring)."""
        self._pending.append(event)
        if self._handling:
            return  # caused by the event being handled: taken right after it
        self._handling = True
        try:
            while self._pending:
                event = self._pending.popleft()
                try:
                    self._handle(event)
                except Exception:
                    # A bug of ours must end the call with an explanation, not reach the
                    # socket callback that delivered the event.
                    logger.exception(
                        "call_id=%s failed handling %s", self._call_id, type(event).__name__
                    )
                    self._finish(
                        CallEnd(
                            DisconnectReason.SYSTEM_ERROR,
                            Blame.SYSTEM,
                            "Internal error in the bridge",
                        )
                    )
        finally:
            self._handling = False

    def _handle(self, event: LegEvent | AgentEvent) -> None:
        # The classes written in the call, not a module-level tuple: mypyc compiles this
        # to type comparisons, and a tuple variable to a generic isinstance (every event).
        if isinstance(event, (AudioFrame, MarkPlayed, DtmfDigit, LegEnded)):
            if self._hearing_leg:
                self._on_leg_event(event)
        elif self._hearing_agent and self._end is None:  # an ending call hears no agent
            self._on_agent_event(event)

    # --- caller → agent ---

    def _on_leg_event(self, event: LegEvent) -> None:
        if isinstance(event, AudioFrame):
            self._on_caller_audio(event)
        elif isinstance(event, MarkPlayed):
            self._on_mark(event.name)
        elif isinstance(event, DtmfDigit):
            self._on_caller_dtmf(event)
        elif isinstance(event, LegEnded):
            self._hearing_leg = False  # nothing follows LegEnded
            self._note("hangup", f"{event.end.reason.value}/{event.end.blame.value}")
            self._finish(event.end, leg_gone=True)

    def _on_caller_audio(self, frame: AudioFrame) -> None:
        if self._answered_at is None or self._end is not None or self._inbound is None:
            return  # before answer (no media yet) or while ending: nobody listens
        if frame.format != self.leg.format:
            return  # the leg's format is fixed; anything else is a broken leg, not audio
        try:
            converted = self._inbound.convert(frame)
        except MediaError as exc:
            # Peer input (a broken RTP/WS payload): drop the frame, keep the call.
            logger.debug("call_id=%s caller frame dropped: %s", self._call_id, exc)
            return
        if converted is not None:
            self.session.send_audio(converted)
            self._require_tracker().gateway(frame.received_at, self._now())
        if self._vad is not None and not self._provider_vad:
            try:
                quiet_for = self._vad.feed(frame)
            except MediaError:
                return
            if quiet_for is not None:
                self._require_tracker().caller_speech_stopped(self._now() - quiet_for)

    def _on_caller_dtmf(self, digit: DtmfDigit) -> None:
        if self._answered_at is None or self._end is not None:
            return
        if len(digit.digit) != 1 or digit.digit not in DTMF_DIGITS:
            return  # RFC 4733 §3.2: events 0-15 only
        self._note("dtmf", digit.digit)
        self.session.send_dtmf(digit.digit)

    def _on_mark(self, name: str) -> None:
        agent_mark = self._playout.acknowledged(name)
        if agent_mark is not None:
            self.session.mark_played(agent_mark)
        self._feed()

    # --- agent → caller ---

    def _on_agent_event(self, event: AgentEvent) -> None:
        tracker = self._require_tracker()
        if isinstance(event, AgentAudio):
            self._on_agent_audio(event)
        elif isinstance(event, AgentInterrupted):
            self._barge_in(event.item_id, truncate=True)
        elif isinstance(event, ClearRequested):
            self._barge_in(None, truncate=False)
        elif isinstance(event, CallerSpeechStopped):
            self._provider_vad = True
            tracker.caller_speech_stopped(self._now())
        elif isinstance(event, CallerSpeechStarted):
            self._provider_vad = True
        elif isinstance(event, ResponseDone):
            if event.item_id == self._chunk_item:
                self._flush_rechunker()
                self._feed()
        elif isinstance(event, MarkRequested):
            self._playout.push_agent_mark(event.name)
            self._feed()
        elif isinstance(event, DtmfRequested):
            digits = "".join(d for d in event.digits.upper() if d in DTMF_DIGITS)[:_MAX_DTMF]
            if digits:
                self._note("dtmf_sent", digits)
                self.leg.send_dtmf(digits)
        elif isinstance(event, HangupRequested):
            self._note("agent_hangup", event.reason)
            self._finish(
                CallEnd(
                    DisconnectReason.AGENT_HANGUP,
                    Blame.AI_AGENT,
                    event.reason or "The agent ended the call",
                ),
                drain=True,
            )
        elif isinstance(event, TransferRequested):
            if self._transfer_task is None or self._transfer_task.done():
                self._transfer_task = asyncio.get_running_loop().create_task(
                    self._transfer(event.target), name=f"transfer-{self._call_id}"
                )
            else:
                self._note("transfer_failed", f"{event.target} (a transfer is under way)")
        elif isinstance(event, AgentError):
            tracker.agent_error(event.error.category.value)
            self._note("agent_error", f"{event.error.category.value}: {event.error.message}")
            if event.fatal:
                self._finish(_agent_failure(event.error, at_open=False))
        elif isinstance(event, AgentClosed):
            if event.error is not None:
                tracker.agent_error(event.error.category.value)
                self._finish(_agent_failure(event.error, at_open=False))
            else:
                self._finish(
                    CallEnd(
                        DisconnectReason.AGENT_HANGUP,
                        Blame.AI_AGENT,
                        "The agent closed the session",
                    ),
                    drain=True,
                )
        # TranscriptReceived: nothing to do here (records/transcripts are a service concern).

    async def _transfer(self, target: str) -> None:
        self._note("transfer", target)
        try:
            ok = await self.leg.transfer(target)
        except Exception:
            logger.warning("call_id=%s transfer failed", self._call_id, exc_info=True)
            ok = False
        if ok:
            self._finish(
                CallEnd(
                    DisconnectReason.TRANSFER,
                    Blame.AI_AGENT,
                    f"The agent transferred the call to {target}",
                )
            )
        else:
            self._note("transfer_failed", target)
            logger.warning("call_id=%s leg cannot transfer to %s", self._call_id, target)

    def _on_agent_audio(self, event: AgentAudio) -> None:
        if self._end is not None:
            return
        if self._playout.is_interrupted(event.item_id):
            return  # late audio of an interrupted item: the caller must not hear it
        assert self._outbound is not None and self._rechunker is not None
        tracker = self._require_tracker()
        now = self._now()
        received_at = event.frame.received_at if event.frame.received_at is not None else now
        if not self._first_agent_audio:
            self._first_agent_audio = True
            tracker.note(now, "first_agent_audio", event.item_id)
        tracker.agent_audio(now, event.item_id)
        if self._chunk_item is not None and event.item_id != self._chunk_item:
            self._flush_rechunker()  # the previous item ended without ResponseDone
        self._chunk_item = event.item_id
        try:
            converted = self._outbound.convert(event.frame)
            frames = self._rechunker.feed_frame(converted) if converted is not None else []
        except MediaError as exc:
            # Agent audio that is not whole samples of the negotiated format: dropped.
            logger.debug("call_id=%s agent frame dropped: %s", self._call_id, exc)
            return
        for frame in frames:
            self._push(event.item_id, frame)
        if converted is not None:
            tracker.gateway(received_at, self._now())
        self._feed()

    def _flush_rechunker(self) -> None:
        if self._rechunker is None or self._chunk_item is None:
            return
        last = self._rechunker.flush()
        if last is not None:
            self._push(self._chunk_item, last)
        self._chunk_item = None

    def _push(self, item_id: str, frame: AudioFrame) -> None:
        dropped = self._playout.dropped
        self._playout.push(item_id, frame)
        if self._playout.dropped != dropped:
            self._require_tracker().dropped(self._playout.dropped - dropped)

    def _feed(self) -> None:
        """Hand queued audio to the leg, at most ``playout_lead_ms`` ahead of what it sent."""
        if self._leg_gone:
            return
        tracker = self._require_tracker()
        for handout in self._playout.pull():
            if handout.frame is not None:
                self.leg.play(handout.frame)
            self.leg.mark(handout.mark)
            if handout.item_id is None:
                continue
            now = self._now()
            turn = tracker.frame_played(now, handout.item_id)
            if turn is not None:
                tracker.note(
                    now,
                    "turn",
                    f"item={handout.item_id} ai_latency_ms={turn.ai_ms:.1f} "
                    f"playout_ms={turn.playout_ms:.1f}",
                )
        self._update_drained()

    def _update_drained(self) -> None:
        # Runs for every frame played; only the teardown's drain waits on it (a future made
        # then, rather than an event set and cleared for every frame).
        if self._drain_waiter is not None and self._playout.drained:
            self._drain_done()

    def _drain_done(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _barge_in(self, item_id: str | None, *, truncate: bool) -> None:
        """Clear the leg first, then tell the agent what the caller heard of each item."""
        self.leg.clear()
        cleared = self._playout.clear(item_id, pending=self._chunk_item, truncate=truncate)
        self._chunk_item = None
        if self._rechunker is not None:
            self._rechunker.clear()
        if self._outbound is not None:
            self._outbound.reset()
        for name in cleared.agent_marks:
            self.session.mark_played(name)
        for item, heard in cleared.heard:
            self.session.played(item, heard)
        if cleared.was_playing:
            self._require_tracker().interrupted()
            self._note("barge_in", " ".join(f"{item}={ms}ms" for item, ms in cleared.heard))
        self._update_drained()

    def _note(self, event: str, detail: str = "") -> None:
        self._require_tracker().note(self._now(), event, detail)


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for it, whatever it raises."""
    if not task.done():
        task.cancel()
    with contextlib.suppress(BaseException):
        await task


# --- media seams (media.converters, media.chunking, media.vad) ---


class _Vad:
    """Our VAD on caller audio (decoded to L16 at the leg's rate), for turn latency only.

    A tap beside the inbound converter, on the per-frame path of every caller frame: it
    decodes straight to bytes (``l16_decoder``: audioop's G.711, the G.722 codec, nothing
    for L16) and hands them to the detector, no converter, frame object or numpy between
    (bench/frame_costs.py measures it).
    """

    def __init__(self, leg_format: AudioFormat) -> None:
        self._to_l16 = l16_decoder(leg_format)
        self._detector = VoiceActivityDetector(leg_format.sample_rate)

    def feed(self, frame: AudioFrame) -> float | None:
        """Seconds since the caller stopped speaking, when this frame shows they did.

        The detector needs ``stop_ms`` of quiet to be sure; it stamps the stop at the end of
        the last voiced frame, so the turn clock starts where the speech really ended.
        Raises ``MediaError`` for a payload that is not whole samples.
        """
        for event in self._detector.feed(self._to_l16(frame.payload)):
            if isinstance(event, SpeechStopped):
                return max(0, self._detector.position_ms - event.at_ms) / 1000
        return None
