"""Audio formats and the frame types that cross Telepath's seams.

``AudioFrame(format, payload, timestamp)``: ``format`` names the encoding and the sample
rate; nobody branches on the encoding except the converter chosen at negotiation
(``media.converters``). That is what lets PCMU from a SIP trunk reach OpenAI's
``audio/pcmu`` byte for byte.

Sample rate and RTP clock rate are different things (G.722 is 16 kHz audio on an 8 kHz
RTP clock, RFC 3551 §4.5.2); this module only knows sample rates, the RTP layer owns
clock rates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from media.ending import CallEnd


class Encoding(StrEnum):
    """Audio encodings Telepath moves between the legs and the agents."""

    PCMU = "pcmu"  # G.711 µ-law, 8 bits a sample
    PCMA = "pcma"  # G.711 A-law, 8 bits a sample
    G722 = "g722"  # G.722 at 64 kbit/s: 4 bits a sample of 16 kHz audio
    L16 = "l16"  # signed 16-bit linear PCM, little-endian, mono


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """An encoding at a sample rate (mono)."""

    encoding: Encoding
    sample_rate: int

    # Equality and hashing written out (dataclasses leaves them alone when the class
    # defines them): the bridge, the converters and the RTP stream compare a frame's
    # format with theirs for every frame, and the generated ``__eq__`` runs interpreted
    # even in a compiled module (gateway/native.py). Same meaning: equal fields.
    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, AudioFormat):
            return NotImplemented
        return self.encoding == other.encoding and self.sample_rate == other.sample_rate

    def __hash__(self) -> int:
        return hash((self.encoding, self.sample_rate))

    @property
    def name(self) -> str:
        """The ``encoding/rate`` name used in logs, records and the agent protocol."""
        return f"{self.encoding.value}/{self.sample_rate}"

    def bytes_for_ms(self, ms: int) -> int:
        """Payload size of ``ms`` milliseconds of audio in this format."""
        samples = self.sample_rate * ms // 1000
        if self.encoding is Encoding.L16:
            return samples * 2
        if self.encoding is Encoding.G722:
            return samples // 2
        return samples

    def ms_for_bytes(self, size: int) -> float:
        """Duration in milliseconds of a payload of ``size`` bytes in this format."""
        if self.encoding is Encoding.L16:
            samples = size // 2
        elif self.encoding is Encoding.G722:
            samples = size * 2
        else:
            samples = size
        return samples * 1000 / self.sample_rate

    @classmethod
    def parse(cls, name: str) -> AudioFormat:
        """Parse ``"pcmu/8000"``; raises ``ValueError`` for anything else."""
        enc, _, rate = name.strip().lower().partition("/")
        format_ = cls(Encoding(enc), int(rate))
        if format_.sample_rate not in (8000, 16000, 24000, 48000):
            raise ValueError(f"unsupported sample rate {format_.sample_rate}")
        return format_

    def __str__(self) -> str:
        return self.name


PCMU = AudioFormat(Encoding.PCMU, 8000)
PCMA = AudioFormat(Encoding.PCMA, 8000)
G722_16K = AudioFormat(Encoding.G722, 16000)
L16_8K = AudioFormat(Encoding.L16, 8000)
L16_16K = AudioFormat(Encoding.L16, 16000)
L16_24K = AudioFormat(Encoding.L16, 24000)


@dataclass(frozen=True, slots=True, init=False)
class AudioFrame:
    """A short piece of audio (20 ms by default) in one format.

    ``timestamp`` is the media position in milliseconds since the start of its stream.
    ``received_at`` is the monotonic time (seconds) at which the frame entered Telepath,
    when known; the bridge uses it to measure the time frames spend inside the gateway.
    """

    format: AudioFormat
    payload: bytes
    timestamp: int = 0
    received_at: float | None = field(default=None, compare=False)

    def __init__(
        self,
        format: AudioFormat,
        payload: bytes,
        timestamp: int = 0,
        received_at: float | None = None,
    ) -> None:
        # Written out (init=False): compiled by mypyc, it builds a frame in about a tenth
        # of the time of the interpreted __init__ dataclasses generates (gateway/native.py).
        object.__setattr__(self, "format", format)
        object.__setattr__(self, "payload", payload)
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "received_at", received_at)

    @property
    def duration_ms(self) -> float:
        """Duration of the payload in milliseconds."""
        return self.format.ms_for_bytes(len(self.payload))


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    """One key press: ``0-9``, ``*``, ``#`` or ``A-D`` (RFC 4733 §3.2 events 0-15)."""

    digit: str
    duration_ms: int | None = None


@dataclass(frozen=True, slots=True, init=False)
class MarkPlayed:
    """The audio queued before ``CallLeg.mark(name)`` has now been sent to the caller."""

    name: str

    def __init__(self, name: str) -> None:
        # Written out, as AudioFrame's: one per frame played.
        object.__setattr__(self, "name", name)


@dataclass(frozen=True, slots=True)
class LegEnded:
    """The call leg is over (caller hung up, carrier stopped the stream, media timeout …)."""

    end: CallEnd


LegEvent = AudioFrame | DtmfDigit | MarkPlayed | LegEnded

DTMF_DIGITS = "0123456789*#ABCD"
