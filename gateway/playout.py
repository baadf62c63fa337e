"""Agent audio on its way to the caller, and what the caller heard of each item.

The sans-I/O bookkeeping behind ``CallBridge``'s barge-in accounting: frames are pushed per
agent item, handed to the leg at most ``lead_frames`` ahead of what the leg has
acknowledged, each followed by a mark naming the item and its cumulative ms; the last
acknowledged mark of an item is what the caller heard.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Final

from media import AudioFrame

_OUR_MARK: Final = "tp"
AGENT_MARK_PREFIX: Final = "agent:"


@dataclass(frozen=True, slots=True, init=False)
class Handout:
    """What to give the leg next: ``play(frame)`` if there is one, then ``mark(mark)``."""

    mark: str
    frame: AudioFrame | None = None
    item_id: str | None = None

    def __init__(
        self, mark: str, frame: AudioFrame | None = None, item_id: str | None = None
    ) -> None:
        # Written out (init=False): compiled by mypyc, about a tenth of the time of the
        # interpreted __init__ dataclasses generates (gateway/native.py). One per frame.
        object.__setattr__(self, "mark", mark)
        object.__setattr__(self, "frame", frame)
        object.__setattr__(self, "item_id", item_id)


@dataclass(frozen=True, slots=True)
class Cleared:
    """The outcome of ``PlayoutLedger.clear``.

    ``heard``: for each item whose audio was cut, how many ms the caller heard, to report
    with ``AgentSession.played``. ``agent_marks``: the agent's marks that were queued
    behind the dropped audio, to acknowledge at once (as the leg does for its own queue).
    """

    heard: tuple[tuple[str, int], ...]
    agent_marks: tuple[str, ...]
    was_playing: bool


@dataclass(slots=True, init=False)
class _Queued:
    item_id: str
    frame: AudioFrame

    def __init__(self, item_id: str, frame: AudioFrame) -> None:  # compiled, as Handout's
        self.item_id = item_id
        self.frame = frame


class PlayoutLedger:
    """Agent audio on its way to the caller, and what the caller has heard of each item.

    Sans-I/O: frames go in with ``push``; ``pull`` hands out what the leg may take now
    (never more than ``lead_frames`` frames ahead of what it acknowledged), each frame
    followed by a mark ``tp:<epoch>:<cumulative ms of its item>:<item id>``; the leg's
    ``MarkPlayed`` names go back in through ``acknowledged``. ``clear`` (barge-in) starts a
    new epoch, so the acknowledgements the leg sends for marks behind the dropped audio
    are ignored, and returns what the caller heard of each cut item.

    Memory is bounded: at most ``max_frames`` queued (the oldest frame is dropped and
    counted in ``dropped``), per-item figures for the latest ``items_remembered`` items.
    """

    def __init__(self, *, max_frames: int, lead_frames: int, items_remembered: int = 16) -> None:
        self._max_frames = max_frames
        self._lead = lead_frames
        self._items_remembered = items_remembered
        self._queue: deque[_Queued | str] = deque()
        self._queued_frames = 0
        self._in_flight = 0
        self._epoch = 0
        self._epoch_text = "0"  # str(self._epoch): in every mark, built once per epoch
        self._sent_ms: OrderedDict[str, int] = OrderedDict()
        self._heard_ms: dict[str, int] = {}
        self._interrupted: deque[str] = deque(maxlen=items_remembered)
        self.dropped = 0
        """Frames dropped because the queue was full."""

    @property
    def queued_frames(self) -> int:
        """Frames waiting to be handed to the leg."""
        return self._queued_frames

    @property
    def in_flight(self) -> int:
        """Frames handed to the leg and not yet acknowledged as sent."""
        return self._in_flight

    @property
    def drained(self) -> bool:
        """Everything pushed has been sent to the caller."""
        return not self._queued_frames and not self._in_flight

    def heard_ms(self, item_id: str) -> int:
        """Milliseconds of ``item_id`` acknowledged as sent (0 if unknown)."""
        return self._heard_ms.get(item_id, 0)

    def is_interrupted(self, item_id: str) -> bool:
        """``item_id`` was cut by a barge-in: its late audio must be dropped."""
        return item_id in self._interrupted

    def push(self, item_id: str, frame: AudioFrame) -> None:
        """Queue a frame of ``item_id``; when full, the oldest queued frame is dropped."""
        if item_id not in self._sent_ms:
            self._sent_ms[item_id] = 0
            while len(self._sent_ms) > self._items_remembered:
                old, _ = self._sent_ms.popitem(last=False)
                self._heard_ms.pop(old, None)
        if self._queued_frames >= self._max_frames:
            for index, entry in enumerate(self._queue):
                if isinstance(entry, _Queued):
                    del self._queue[index]
                    self._queued_frames -= 1
                    self.dropped += 1
                    break
        self._queue.append(_Queued(item_id, frame))
        self._queued_frames += 1

    def push_agent_mark(self, name: str) -> None:
        """Queue the agent's mark behind the audio queued so far."""
        self._queue.append(AGENT_MARK_PREFIX + name)

    def pull(self) -> list[Handout]:
        """What the leg may take now: frames (each with our mark) and agent marks, in order."""
        out: list[Handout] = []
        while self._queue and self._in_flight < self._lead:
            entry = self._queue.popleft()
            if isinstance(entry, str):
                out.append(Handout(entry))
                continue
            self._queued_frames -= 1
            sent = self._sent_ms.get(entry.item_id, 0) + round(entry.frame.duration_ms)
            if entry.item_id in self._sent_ms:
                self._sent_ms[entry.item_id] = sent
            self._in_flight += 1
            mark = f"{_OUR_MARK}:{self._epoch_text}:{sent}:{entry.item_id}"
            out.append(Handout(mark, entry.frame, entry.item_id))
        return out

    def acknowledged(self, name: str) -> str | None:
        """The leg sent everything before mark ``name``; returns the agent's own mark name
        to pass on with ``AgentSession.mark_played``, if it was one."""
        if name.startswith(AGENT_MARK_PREFIX):
            return name[len(AGENT_MARK_PREFIX) :]
        prefix, _, rest = name.partition(":")
        epoch, _, rest = rest.partition(":")
        ms, _, item_id = rest.partition(":")
        if prefix != _OUR_MARK or epoch != self._epoch_text or not ms.isdigit():
            return None  # acknowledges audio dropped by clear(), or not ours at all
        if self._in_flight > 0:
            self._in_flight -= 1
        if item_id in self._sent_ms:
            self._heard_ms[item_id] = int(ms)
        return None

    def clear(
        self, item_id: str | None = None, *, pending: str | None = None, truncate: bool = True
    ) -> Cleared:
        """Drop everything not yet sent (call right after ``leg.clear()``).

        ``item_id``: the item the agent says was interrupted, if it says. ``pending``: an
        item with audio held back outside the ledger (the rechunker's remainder). With
        ``truncate`` the cut items are remembered as interrupted (``is_interrupted``).
        """
        known = set(self._sent_ms)
        if pending is not None:
            known.add(pending)
        affected: list[str] = []

        def add(item: str) -> None:
            if item in known and item not in affected:
                affected.append(item)

        if item_id is not None:
            add(item_id)
        for entry in self._queue:
            if isinstance(entry, _Queued):
                add(entry.item_id)
        for item, sent in self._sent_ms.items():
            if sent > self._heard_ms.get(item, 0):
                add(item)
        if pending is not None:
            add(pending)
        was_playing = bool(self._queued_frames or self._in_flight or pending is not None)
        agent_marks = tuple(e[len(AGENT_MARK_PREFIX) :] for e in self._queue if isinstance(e, str))

        self._epoch += 1
        self._epoch_text = str(self._epoch)
        self._in_flight = 0
        self._queue.clear()
        self._queued_frames = 0
        if truncate and item_id is not None and item_id not in self._interrupted:
            self._interrupted.append(item_id)
        heard: list[tuple[str, int]] = []
        for item in affected:
            if truncate and item not in self._interrupted:
                self._interrupted.append(item)
            ms = self._heard_ms.get(item, 0)
            if item in self._sent_ms:
                self._sent_ms[item] = ms  # what was dropped was never sent
            heard.append((item, ms))
        return Cleared(tuple(heard), agent_marks, was_playing)

    def reset(self) -> None:
        """Forget the queue (the call is over)."""
        self._queue.clear()
        self._queued_frames = 0
        self._in_flight = 0
