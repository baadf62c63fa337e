"""The call leg as the bridge sees it: the record's call id, and the answer recorded.

The call runner hands the bridge this wrapper around the ingress's leg. Compiled
(gateway/native.py): the bridge plays and marks every frame through it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from gateway.leg import CallLeg
from media import AudioFormat, AudioFrame, CallContext, CallEnd, LegEvent

__all__ = ["RecordedLeg"]


class RecordedLeg:
    """A ``CallLeg`` that forwards to the ingress's leg, with the record's call id in its
    context and a hook when the call is answered."""

    def __init__(self, inner: CallLeg, context: CallContext, on_answer: Callable[[], None]) -> None:
        self._inner = inner
        self._context = context
        self._on_answer = on_answer

    @property
    def context(self) -> CallContext:
        return self._context

    @property
    def format(self) -> AudioFormat:
        return self._inner.format

    def listen(self, on_event: Callable[[LegEvent], None]) -> None:
        self._inner.listen(on_event)

    def events(self) -> AsyncIterator[LegEvent]:
        return self._inner.events()

    async def answer(self) -> None:
        await self._inner.answer()
        self._on_answer()

    async def reject(self, end: CallEnd) -> None:
        await self._inner.reject(end)

    def play(self, frame: AudioFrame) -> None:
        self._inner.play(frame)

    def mark(self, name: str) -> None:
        self._inner.mark(name)

    def clear(self) -> None:
        self._inner.clear()

    def send_dtmf(self, digits: str) -> None:
        self._inner.send_dtmf(digits)

    async def hangup(self, end: CallEnd) -> None:
        await self._inner.hangup(end)

    async def transfer(self, target: str) -> bool:
        return await self._inner.transfer(target)
