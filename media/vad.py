"""Voice-activity detection for telephone audio: speech started / stopped, in media time.

For agents that have no VAD of their own and for timing turns (the end of the caller's
speech starts the response-latency clock). Pure: fed L16 samples, it counts time in
samples, so the same audio always gives the same events.

Why webrtcvad *and* an energy gate: the WebRTC VAD (``webrtcvad``, the GMM classifier
from Chromium's audio processing) tells voice from non-voice by spectrum and is cheap,
but on its own it is a poor fit for phone lines. Measured on webrtcvad-wheels 2.0.14,
it marks steady white noise at -50 dBFS (a hissy line) as speech in 100% of frames in
modes 0-2, noise at -30 dBFS in all four modes, and a steady 1 kHz tone in modes 0-2 (and
in mode 3 at 16 kHz). So a frame counts as voiced only if webrtcvad says so *and* its
level is at least ``margin_db`` above an adaptive noise floor (the minimum frame level
over the last 1.5 s, minimum statistics in the manner of R. Martin, IEEE Trans. SAP
2001) and above ``min_level_dbfs``. Stationary sounds of any level pull the floor up to
themselves and stop counting, while speech, which dips between syllables, stays above it.

Limits, measured on synthetic signals: a sudden non-speech sound after silence (a 400 ms
burst of noise or of a 1-3 kHz tone) still opens a turn, because the floor needs about
1.5 s of a sound to learn it, and webrtcvad calls such bursts speech too; webrtcvad's
share is modest (it cut a 400 ms 100 Hz hum burst to 100 ms of "speech").

Smoothing (hangover), so a detector does not flap on single frames:
``SpeechStarted`` once at least 80% of the last ``start_ms`` was voiced, stamped with the
start of the first voiced frame of that window; ``SpeechStopped`` once at most 10% of
the last ``stop_ms`` was voiced, stamped with the end of the last voiced frame.

webrtcvad takes 10/20/30 ms frames at 8, 16, 32 or 48 kHz; other rates (24 kHz from
OpenAI, 22.05/44.1 kHz from ElevenLabs) are resampled to 16 kHz first.

Cost: the bridge runs this on every caller frame, so the per-frame path stays on bytes and
C: the level from ``audioop`` (``frame_power``, the exact float numpy gave), webrtcvad
only for frames that pass the energy gate, the floor rescanned only when its minimum
leaves the window, the smoothing windows counted as they move. 1.3-4 µs per 20 ms frame
at 8 and 16 kHz (bench/frame_costs.py); the decisions are those of the plain algorithm,
frame for frame (tests/media/test_vad_fast_path.py).
"""

from __future__ import annotations

import math
import random
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import webrtcvad

from media.audioop_compat import audioop
from media.errors import FormatMismatchError, PayloadError, UnsupportedFormatError
from media.frames import AudioFormat, AudioFrame, Encoding
from media.g711 import decode_alaw, decode_ulaw
from media.g722 import G722Decoder
from media.resample import StreamResampler, check_sample_rate, pcm_to_samples

__all__ = [
    "SpeechStarted",
    "SpeechStopped",
    "VadEvent",
    "VoiceActivityDetector",
    "frame_power",
    "l16_decoder",
]

_NATIVE_RATES = (8000, 16000, 32000, 48000)
_ANALYSIS_MS: Final = 20
_FLOOR_WINDOW_MS = 1500
_START_RATIO = 0.8
_STOP_RATIO = 0.1
_SWAP: Final = sys.byteorder != "little"
_FULL_SCALE_POWER: Final = 32768.0 * 32768.0


def _probe(samples: int) -> tuple[bytes, int]:
    """A fixed pseudo-random fragment of ``samples`` odd, large, signed int16 values (native
    order) and the exact sum of their squares; see ``frame_power``."""
    rng = random.Random(samples)  # fixed seed: the same probe in every process
    values = [rng.choice((-1, 1)) * rng.randrange(16385, 32768, 2) for _ in range(samples)]
    return np.array(values, dtype=np.int16).tobytes(), sum(v * v for v in values)


_PROBES: dict[int, tuple[bytes, int]] = {}


def _power_numpy(frame: bytes) -> float:
    samples = np.frombuffer(frame, dtype=np.int16)
    return float(np.dot(samples, samples.astype(np.float64))) / len(samples)


def frame_power(frame: bytes) -> float:
    """Mean square of native-order int16 samples: exactly ``sum(x * x) / n`` as a float.

    Raises ``PayloadError`` for an odd number of bytes.

    The sum of squares ``S`` is an integer below 2**42 for up to 4096 samples, so every
    double sum of int16 products is exact. ``audioop`` (C) has no sum of squares, but
    ``findfactor(a, b)`` returns ``sum(a * b) / sum(b * b)``: against a fixed probe ``k``,
    ``findfactor(frame, k) * sum(k * k)`` rounds back to the exact ``P = sum(frame * k)``,
    and ``P / findfactor(k, frame)`` to the exact ``S`` (two roundings each, relative error
    below 1e-15, so an absolute error below 0.01). Two C calls cost less than half of
    numpy's ``frombuffer`` + ``astype`` + ``dot`` on a 20 ms frame, and the result is the
    same float. When ``P`` is 0 the frame is digital silence (0.0) or, rarely, orthogonal
    to the probe; that frame and longer fragments go to numpy.
    """
    size = len(frame)
    if size % 2:
        raise PayloadError(f"L16 payload of {size} bytes is not a whole number of samples")
    n = size // 2
    if not n:
        return 0.0
    if n > 4096:
        return _power_numpy(frame)
    probe = _PROBES.get(n)
    if probe is None:
        probe = _PROBES[n] = _probe(n)
    k, k_squares = probe
    p = round(audioop.findfactor(frame, k) * k_squares)
    if p == 0:
        return 0.0 if audioop.max(frame, 2) == 0 else _power_numpy(frame)
    return round(p / audioop.findfactor(k, frame)) / n


def l16_decoder(format_: AudioFormat) -> Callable[[bytes], bytes]:
    """A function from payloads of ``format_`` to L16 little-endian bytes at its own rate.

    For a VAD tap beside the stream's real converter: no frame objects, no numpy, no
    resampling. Stateful for G.722 (one decoder per stream: call this once per stream).
    """
    if format_.encoding is Encoding.PCMU:
        return decode_ulaw
    if format_.encoding is Encoding.PCMA:
        return decode_alaw
    if format_.encoding is Encoding.G722:
        return G722Decoder().decode
    return bytes


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """Speech began at media time ``at_ms`` (ms since the detector's origin)."""

    at_ms: int


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    """Speech ended at media time ``at_ms`` (ms since the detector's origin)."""

    at_ms: int


VadEvent = SpeechStarted | SpeechStopped


class VoiceActivityDetector:
    """Turns a stream of L16 samples at ``sample_rate`` into speech start/stop events.

    ``start_ms``: how much voiced audio opens a turn (short = quick, but coughs count).
    ``stop_ms``: how much quiet closes it (short = snappy turns, but pauses split them).
    ``aggressiveness``: webrtcvad mode 0-3; 3 rejects the most non-speech (and, measured on
    synthetic vowels, also drops quiet speech at -35 dBFS that mode 2 keeps; the energy gate
    already rejects stationary noise, so 2 is the default).
    ``margin_db`` / ``min_level_dbfs``: the energy gate described in the module docstring.
    ``origin_ms``: the media time of the first sample fed.
    """

    def __init__(
        self,
        sample_rate: int,
        *,
        start_ms: int = 100,
        stop_ms: int = 500,
        aggressiveness: int = 2,
        margin_db: float = 9.0,
        min_level_dbfs: float = -55.0,
        origin_ms: int = 0,
    ) -> None:
        check_sample_rate(sample_rate)
        if not 0 <= aggressiveness <= 3:
            raise UnsupportedFormatError(f"aggressiveness must be 0-3, not {aggressiveness}")
        if start_ms < _ANALYSIS_MS or stop_ms < _ANALYSIS_MS:
            raise UnsupportedFormatError(f"start_ms and stop_ms must be >= {_ANALYSIS_MS}")
        self.sample_rate = sample_rate
        self._rate = sample_rate if sample_rate in _NATIVE_RATES else 16000
        self._resampler = (
            StreamResampler(sample_rate, self._rate) if self._rate != sample_rate else None
        )
        self._vad = webrtcvad.Vad(aggressiveness)
        self._frame_len = self._rate * _ANALYSIS_MS // 1000
        self._frame_bytes = 2 * self._frame_len
        start_frames = math.ceil(start_ms / _ANALYSIS_MS)
        stop_frames = math.ceil(stop_ms / _ANALYSIS_MS)
        self._start_needed = max(1, math.ceil(start_frames * _START_RATIO))
        self._stop_allowed = math.floor(stop_frames * _STOP_RATIO)
        # Running counts of the voiced frames in both windows, so no frame sums a window.
        self._start_window: deque[int] = deque(maxlen=start_frames)  # index if voiced, else -1
        self._start_voiced = 0
        self._stop_window: deque[bool] = deque(maxlen=stop_frames)
        self._stop_voiced = 0
        # The noise floor is min(self._levels); it is rescanned only when the minimum
        # leaves the window (about once in 75 frames of noise), not on every frame.
        self._levels: deque[float] = deque(maxlen=_FLOOR_WINDOW_MS // _ANALYSIS_MS)
        self._floor = math.inf
        self._floor_index = -1  # frame index of the newest level equal to the floor
        self._margin_db = margin_db
        self._min_level_dbfs = min_level_dbfs
        self._origin_ms = origin_ms
        self._pending = b""  # native-order samples short of a whole analysis frame
        self._frames = 0
        self._last_voiced_end = 0
        self.speaking = False
        """Whether the detector is inside a turn (between a start and a stop event)."""

    @property
    def position_ms(self) -> int:
        """Media time up to which audio has been analysed."""
        return self._origin_ms + self._frames * _ANALYSIS_MS

    def feed(self, pcm: bytes) -> list[VadEvent]:
        """Analyse L16 little-endian samples of any length; returns the events they caused.

        Raises ``PayloadError`` for an odd number of bytes.
        """
        if (
            len(pcm) == self._frame_bytes
            and not self._pending
            and self._resampler is None
            and not _SWAP
        ):
            # The bridge's case: exactly one 20 ms frame, already in the analysis format.
            event = self._analyse(pcm)
            return [] if event is None else [event]
        if self._resampler is not None:
            data = self._resampler.process(pcm_to_samples(pcm)).tobytes()
        else:
            if len(pcm) % 2:
                raise PayloadError(
                    f"L16 payload of {len(pcm)} bytes is not a whole number of samples"
                )
            data = audioop.byteswap(pcm, 2) if _SWAP else bytes(pcm)
        if self._pending:
            data = self._pending + data
        events: list[VadEvent] = []
        n = self._frame_bytes
        end = len(data) - len(data) % n
        for i in range(0, end, n):
            event = self._analyse(data[i : i + n])
            if event is not None:
                events.append(event)
        self._pending = data[end:]
        return events

    def feed_frame(self, frame: AudioFrame) -> list[VadEvent]:
        """``feed`` an L16 frame at this detector's rate; ``FormatMismatchError`` otherwise."""
        if (
            frame.format.encoding is not Encoding.L16
            or frame.format.sample_rate != self.sample_rate
        ):
            raise FormatMismatchError(
                f"got a {frame.format} frame, expected l16/{self.sample_rate}"
            )
        return self.feed(frame.payload)

    def _analyse(self, frame: bytes) -> VadEvent | None:
        """One analysis frame of native-order int16 samples."""
        index = self._frames
        self._frames += 1
        level = 10.0 * math.log10(frame_power(frame) / _FULL_SCALE_POWER + 1e-12)
        levels = self._levels
        if len(levels) == levels.maxlen and self._floor_index == index - len(levels):
            # The floor's frame leaves the window with this append: rescan the rest.
            levels.append(level)
            self._floor = min(levels)
            self._floor_index = index - len(levels) + 1 + _last_index(levels, self._floor)
        else:
            levels.append(level)
            if level <= self._floor:
                self._floor = level
                self._floor_index = index
        voiced = (
            level >= self._min_level_dbfs
            and level >= self._floor + self._margin_db
            and self._vad.is_speech(frame, self._rate)
        )
        if voiced:
            self._last_voiced_end = index + 1
        if not self.speaking:
            window = self._start_window
            if len(window) == window.maxlen and window[0] >= 0:
                self._start_voiced -= 1
            window.append(index if voiced else -1)
            if voiced:
                self._start_voiced += 1
            if self._start_voiced >= self._start_needed:
                onset = next(i for i in window if i >= 0)
                self.speaking = True
                window.clear()
                self._start_voiced = 0
                return SpeechStarted(self._origin_ms + onset * _ANALYSIS_MS)
            return None
        stop = self._stop_window
        if len(stop) == stop.maxlen and stop[0]:
            self._stop_voiced -= 1
        stop.append(voiced)
        if voiced:
            self._stop_voiced += 1
        if len(stop) == stop.maxlen and self._stop_voiced <= self._stop_allowed:
            self.speaking = False
            stop.clear()
            self._stop_voiced = 0
            return SpeechStopped(self._origin_ms + self._last_voiced_end * _ANALYSIS_MS)
        return None

    def reset(self, origin_ms: int | None = None) -> None:
        """Forget all audio (and the noise floor); media time restarts at ``origin_ms``
        (default: where it was)."""
        self._origin_ms = self.position_ms if origin_ms is None else origin_ms
        self._frames = 0
        self._last_voiced_end = 0
        self._pending = b""
        self._start_window.clear()
        self._start_voiced = 0
        self._stop_window.clear()
        self._stop_voiced = 0
        self._levels.clear()
        self._floor = math.inf
        self._floor_index = -1
        self.speaking = False
        if self._resampler is not None:
            self._resampler.reset()


def _last_index(levels: deque[float], value: float) -> int:
    """Position of the last element equal to ``value`` in ``levels`` (which holds it)."""
    for back, level in enumerate(reversed(levels)):
        if level == value:
            return len(levels) - 1 - back
    raise ValueError(value)  # unreachable: ``value`` is min(levels)
