"""Our VAD on the caller's audio, for agents that asked for ``speech_started/stopped``.

Telepath-dialect trunks with ``vad_events: true`` get these events from
``media.vad.VoiceActivityDetector``: caller frames, in the negotiated input format, are
decoded to L16 at their own rate and fed to it. Media time is the frames' own
``timestamp``, so an event's ``timestamp`` lines up with the ``media`` messages' clock.
Pure: no clock, no I/O.
"""

from __future__ import annotations

from media import AudioFormat, AudioFrame, Encoding
from media.converters import Converter, make_converter
from media.vad import VadEvent, VoiceActivityDetector


class CallerVad:
    """Speech start/stop events from caller frames in ``format_``."""

    def __init__(self, format_: AudioFormat) -> None:
        l16 = AudioFormat(Encoding.L16, format_.sample_rate)
        self._to_l16: Converter = make_converter(format_, l16)
        self._rate = format_.sample_rate
        self._detector: VoiceActivityDetector | None = None

    def feed(self, frame: AudioFrame) -> list[VadEvent]:
        """The events this caller frame caused. Raises ``media.errors.MediaError`` for a
        payload that is not audio of the format."""
        if self._detector is None:
            # The first frame fixes the origin: later event times are in its media clock.
            self._detector = VoiceActivityDetector(self._rate, origin_ms=frame.timestamp)
        l16 = self._to_l16.convert(frame)
        if l16 is None:
            return []
        return self._detector.feed_frame(l16)
