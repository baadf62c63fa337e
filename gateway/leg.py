"""The ``CallLeg`` seam: one caller, made by an ingress, consumed by the bridge.

Both ingresses (``ingress.sip`` and ``ingress.media_streams``) make objects of this shape;
they cannot import ``gateway`` (docs/architecture.md), so this is a structural
``Protocol``: a leg conforms by having these members, not by inheriting.

Calling protocol (the bridge's side)::

    leg.context / leg.format          # fixed before the bridge starts
    await leg.answer()                # SIP: 200 OK now that the agent is ready
    leg.play(frame) / leg.mark(name) / leg.clear() / leg.send_dtmf(digits)
    leg.listen(on_event)              # AudioFrame | DtmfDigit | MarkPlayed | LegEnded
    # or: async for event in leg.events(): ...  (tests and tools; one or the other)
    await leg.hangup(end)             # we end the call (agent, max duration, shutdown …)

``play``, ``mark`` and ``clear`` never block: the leg paces audio out on its own clock,
keeps a bounded queue (dropping the oldest audio when full, and counting it), and
acknowledges each mark with ``MarkPlayed`` exactly when the audio queued before it has
been sent. ``clear`` drops the queue within one packet time (barge-in); marks queued
behind the dropped audio are acknowledged at once, so the bridge's count of what the
caller heard stays exact. The event stream ends after ``LegEnded``.

``listen`` hands each event to ``on_event`` in the callback that produced it (the RTP
socket's ``datagram_received``, the pacer's timer, a WebSocket message), with no queue or
task in between; events from before it was called are handed over first. ``on_event``
must not raise and must not wait; it may call ``play``/``mark``/``clear`` (an event those
cause, such as an immediate ``MarkPlayed``, is delivered to ``on_event`` too: the
listener takes care not to handle it inside the one it is handling).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol

from media import AudioFormat, AudioFrame, CallContext, CallEnd, LegEvent


class CallLeg(Protocol):
    """One caller's side of a call. See the module docstring for the contract."""

    @property
    def context(self) -> CallContext:
        """Who is calling whom, with the carrier's ids and X- headers."""
        ...

    @property
    def format(self) -> AudioFormat:
        """The leg's audio format, fixed at negotiation (e.g. PCMU 8 kHz)."""
        ...

    def listen(self, on_event: Callable[[LegEvent], None]) -> None:
        """Hand caller audio, DTMF and mark acknowledgements to ``on_event`` as they
        happen, ``LegEnded`` last. One listener."""
        ...

    def events(self) -> AsyncIterator[LegEvent]:
        """The same events as an async iterator that ends after ``LegEnded`` (instead
        of ``listen``)."""
        ...

    async def answer(self) -> None:
        """Connect the caller (SIP: send 200 OK). Media-stream legs are already connected."""
        ...

    async def reject(self, end: CallEnd) -> None:
        """Refuse a call that was never answered (SIP: ``end.sip_status``, e.g. 503)."""
        ...

    def play(self, frame: AudioFrame) -> None:
        """Queue agent audio (in ``format``) for paced playout to the caller."""
        ...

    def mark(self, name: str) -> None:
        """Ask for ``MarkPlayed(name)`` once everything queued so far has been sent."""
        ...

    def clear(self) -> None:
        """Drop all queued playout at once (barge-in)."""
        ...

    def send_dtmf(self, digits: str) -> None:
        """Send DTMF to the caller (RFC 4733 on SIP)."""
        ...

    async def hangup(self, end: CallEnd) -> None:
        """End the call from our side (SIP BYE, carrier REST hang-up)."""
        ...

    async def transfer(self, target: str) -> bool:
        """Transfer the caller to ``target``; False when this leg cannot transfer."""
        ...
