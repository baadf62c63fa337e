"""Re-framing audio into exact, equal frames, and silence in any format.

Agents send audio in chunks of 40-500 ms (and byte counts that need not even be whole
samples: a base64 chunk can end in the middle of an L16 sample); the pacer wants exact
20 ms frames. ``Rechunker`` cuts any sequence of payloads into ``frame_ms`` frames and
keeps the remainder for the next payload. It works on bytes and never decodes, so it can
sit before or after a converter and costs one copy per frame.
"""

from __future__ import annotations

from media.errors import FormatMismatchError, UnsupportedFormatError
from media.frames import AudioFormat, AudioFrame, Encoding
from media.g711 import ALAW_SILENCE, ULAW_SILENCE
from media.g722 import G722_SILENCE

__all__ = ["Rechunker", "frame_bytes", "silence"]

_SILENCE_BYTE = {
    Encoding.PCMU: ULAW_SILENCE,
    Encoding.PCMA: ALAW_SILENCE,
    Encoding.G722: G722_SILENCE,
    Encoding.L16: 0,
}


def frame_bytes(format: AudioFormat, ms: int) -> int:
    """Payload size of exactly ``ms`` ms of ``format``.

    Raises ``UnsupportedFormatError`` when ``ms`` is not positive or is not a whole number
    of samples (of sample pairs for G.722) at the format's rate.
    """
    if ms <= 0 or format.sample_rate <= 0:
        raise UnsupportedFormatError(f"cannot frame {format} in {ms} ms pieces")
    samples, rest = divmod(format.sample_rate * ms, 1000)
    if rest or (format.encoding is Encoding.G722 and samples % 2):
        raise UnsupportedFormatError(f"{ms} ms of {format} is not a whole number of samples")
    return format.bytes_for_ms(ms)


def silence(format: AudioFormat, ms: int) -> bytes:
    """``ms`` milliseconds of silence in ``format`` (µ-law 0xFF, A-law 0xD5, L16 zeros,
    G.722 the constant of ``media.g722.G722_SILENCE``)."""
    return bytes((_SILENCE_BYTE[format.encoding],)) * frame_bytes(format, ms)


class Rechunker:
    """Cuts a stream of payloads of one format into frames of exactly ``frame_ms``.

    Frame timestamps run on from ``timestamp`` in steps of ``frame_ms``; each frame
    carries the ``received_at`` of the payload that completed it. Less than one frame is
    ever held, so memory stays bounded whatever the chunk sizes.
    """

    __slots__ = ("_buffer", "_frame_size", "format", "frame_ms", "timestamp")

    def __init__(self, format: AudioFormat, frame_ms: int = 20, *, timestamp: int = 0) -> None:
        self._frame_size = frame_bytes(format, frame_ms)
        self.format = format
        self.frame_ms = frame_ms
        self.timestamp = timestamp
        """The timestamp the next frame will carry."""
        self._buffer = b""

    @property
    def pending(self) -> int:
        """Bytes held back, always fewer than one frame."""
        return len(self._buffer)

    def feed(self, payload: bytes, received_at: float | None = None) -> list[AudioFrame]:
        """Add a payload of any length; returns the whole frames now available (maybe none)."""
        data = self._buffer + payload if self._buffer else payload
        size = self._frame_size
        end = len(data) - len(data) % size
        frames = [
            AudioFrame(
                self.format, data[i : i + size], self.timestamp + n * self.frame_ms, received_at
            )
            for n, i in enumerate(range(0, end, size))
        ]
        self.timestamp += len(frames) * self.frame_ms
        self._buffer = data[end:]
        return frames

    def feed_frame(self, frame: AudioFrame) -> list[AudioFrame]:
        """``feed`` a frame's payload; raises ``FormatMismatchError`` for another format."""
        if frame.format != self.format:
            raise FormatMismatchError(f"got a {frame.format} frame, expected {self.format}")
        return self.feed(frame.payload, frame.received_at)

    def flush(self, pad: bool = True, received_at: float | None = None) -> AudioFrame | None:
        """End of a burst: the held remainder as one last frame, or ``None`` if none is held.

        With ``pad`` the frame is filled up to ``frame_ms`` with the format's silence;
        without it the frame is short (cut to whole samples; a dangling half L16 sample
        is dropped, and ``None`` is returned if nothing whole is left).
        """
        data, self._buffer = self._buffer, b""
        if pad:
            if not data:
                return None
            payload = data + silence(self.format, self.frame_ms)[len(data) :]
        else:
            whole = len(data) - len(data) % 2 if self.format.encoding is Encoding.L16 else len(data)
            if not whole:
                return None
            payload = data[:whole]
        frame = AudioFrame(self.format, payload, self.timestamp, received_at)
        self.timestamp += self.frame_ms if pad else round(frame.duration_ms)
        return frame

    def clear(self) -> None:
        """Drop the held remainder (barge-in); timestamps carry on where they were."""
        self._buffer = b""
