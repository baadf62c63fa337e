"""The VAD's per-frame fast path decides exactly as the plain algorithm it replaced.

``ReferenceVad`` below is that algorithm written the obvious way (numpy power, ``min()`` of
the level window on every frame, windows summed on every frame), as ``media.vad`` had it
before the per-frame costs were cut. The detector must give the very same events at the
very same media times, on real speech (espeak-ng, which scripts/test.sh installs) and on
the synthetic signals the VAD's own tests use.
"""

from __future__ import annotations

import io
import math
import shutil
import subprocess
import wave
from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bridge import _Vad
from media.converters import make_converter
from media.frames import G722_16K, L16_8K, L16_16K, PCMA, PCMU, AudioFormat, AudioFrame, Encoding
from media.g711 import encode_alaw, encode_ulaw
from media.g722 import G722Encoder
from media.resample import StreamResampler, samples_to_pcm
from media.tones import noise, sine, speech_like
from media.vad import (
    SpeechStarted,
    SpeechStopped,
    VadEvent,
    VoiceActivityDetector,
    frame_power,
    l16_decoder,
)
from media.vad import _probe as probe_for


class ReferenceVad:
    """The detector's decisions without shortcuts (native rates only)."""

    def __init__(self, rate: int, start_ms: int = 100, stop_ms: int = 500) -> None:
        import webrtcvad

        self.rate = rate
        self.vad = webrtcvad.Vad(2)
        self.n = rate // 50
        start_frames, stop_frames = math.ceil(start_ms / 20), math.ceil(stop_ms / 20)
        self.start_needed = max(1, math.ceil(start_frames * 0.8))
        self.stop_allowed = math.floor(stop_frames * 0.1)
        self.start: deque[int] = deque(maxlen=start_frames)
        self.stop: deque[bool] = deque(maxlen=stop_frames)
        self.levels: deque[float] = deque(maxlen=75)
        self.frames = 0
        self.last_voiced_end = 0
        self.speaking = False

    def feed(self, samples: np.ndarray) -> list[VadEvent]:
        events: list[VadEvent] = []
        for i in range(0, len(samples) - self.n + 1, self.n):
            frame = samples[i : i + self.n]
            index = self.frames
            self.frames += 1
            power = float(np.dot(frame, frame.astype(np.float64))) / len(frame)
            level = 10.0 * math.log10(power / (32768.0 * 32768.0) + 1e-12)
            self.levels.append(level)
            voiced = (
                level >= -55.0
                and level >= min(self.levels) + 9.0
                and self.vad.is_speech(frame.tobytes(), self.rate)
            )
            if voiced:
                self.last_voiced_end = index + 1
            if not self.speaking:
                self.start.append(index if voiced else -1)
                onsets = [i for i in self.start if i >= 0]
                if len(onsets) >= self.start_needed:
                    self.speaking = True
                    self.start.clear()
                    events.append(SpeechStarted(onsets[0] * 20))
                continue
            self.stop.append(voiced)
            if len(self.stop) == self.stop.maxlen and sum(self.stop) <= self.stop_allowed:
                self.speaking = False
                self.stop.clear()
                events.append(SpeechStopped(self.last_voiced_end * 20))
        return events


def spoken(text: str, rate: int, voice: str = "en-us") -> np.ndarray:
    """``text`` spoken by espeak-ng, resampled to ``rate``."""
    binary = shutil.which("espeak-ng")
    assert binary is not None, "espeak-ng is missing: scripts/test.sh installs it"
    wav = subprocess.run(
        [binary, "--stdout", "-v", voice, text], check=True, capture_output=True, timeout=60
    ).stdout
    with wave.open(io.BytesIO(wav)) as reader:
        source_rate = reader.getframerate()
        raw = reader.readframes(reader.getnframes())
    resampler = StreamResampler(source_rate, rate)
    samples = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    return np.concatenate((resampler.process(samples), resampler.flush()))


def conversation(rate: int, voice: str, gain_db: float, noise_dbfs: float | None) -> np.ndarray:
    """Two utterances between seconds of silence, scaled, over optional line noise."""
    first = spoken("Hello, I am calling about my order, it has not arrived yet.", rate, voice)
    second = spoken("Yes. Number four two seven. Thanks!", rate, voice)
    gap = np.zeros(rate)
    signal = np.concatenate((gap, first, gap, second, gap)) * 10 ** (gain_db / 20)
    if noise_dbfs is not None:
        rng = np.random.default_rng(3)
        signal = signal + rng.normal(0.0, 32768 * 10 ** (noise_dbfs / 20), len(signal))
    return np.clip(np.round(signal), -32768, 32767).astype(np.int16)


def detect_in_frames(rate: int, signal: np.ndarray) -> list[VadEvent]:
    vad = VoiceActivityDetector(rate)
    pcm = samples_to_pcm(signal)
    step = rate // 50 * 2
    events: list[VadEvent] = []
    for i in range(0, len(pcm), step):
        events += vad.feed(pcm[i : i + step])
    return events


# --- frame_power: exact, not approximately right ---


@settings(max_examples=300, deadline=None)
@given(
    n=st.sampled_from([160, 320, 480, 960, 7, 1]),
    scale=st.sampled_from([1, 3, 30, 300, 3000, 32768]),
    seed=st.integers(0, 2**32 - 1),
)
def test_frame_power_is_the_exact_mean_square(n: int, scale: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    frame = np.clip(np.round(rng.normal(0, scale, n)), -32768, 32767).astype(np.int16)
    exact = sum(int(x) * int(x) for x in frame) / n
    assert frame_power(frame.tobytes()) == exact  # the same float, bit for bit


def test_frame_power_edge_cases() -> None:
    assert frame_power(b"") == 0.0
    assert frame_power(bytes(320)) == 0.0
    full = np.full(160, -32768, dtype=np.int16)
    assert frame_power(full.tobytes()) == 32768.0**2
    single = np.zeros(320, dtype=np.int16)
    single[200] = 1
    assert frame_power(single.tobytes()) == 1 / 320
    # A frame orthogonal to the probe (sum of products 0) takes the numpy path, still exact.
    probe = np.frombuffer(probe_for(160)[0], dtype=np.int16)
    orthogonal = np.zeros(160, dtype=np.int16)
    orthogonal[0], orthogonal[1] = probe[1], -probe[0]
    assert int(np.dot(orthogonal.astype(np.int64), probe)) == 0
    assert frame_power(orthogonal.tobytes()) == (int(probe[0]) ** 2 + int(probe[1]) ** 2) / 160
    long = np.arange(-5000, 5000, dtype=np.int16)
    assert frame_power(long.tobytes()) == sum(x * x for x in range(-5000, 5000)) / 10000


# --- same events as the plain algorithm ---


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize(
    ("voice", "gain_db", "noise_dbfs"),
    [("en-us", 0, None), ("en-us", -24, -60), ("de", -6, -40), ("en-us+f3", -12, -48)],
)
def test_speech_gives_the_reference_events(
    rate: int, voice: str, gain_db: float, noise_dbfs: float | None
) -> None:
    signal = conversation(rate, voice, gain_db, noise_dbfs)
    expected = ReferenceVad(rate).feed(signal)
    assert len(expected) >= 2
    assert detect_in_frames(rate, signal) == expected


def ramp(rate: int) -> np.ndarray:
    """Noise whose level rises then falls: the floor's minimum leaves the window often."""
    hiss = noise(rate, 6000, 0.1).astype(np.float64)
    envelope = np.concatenate(
        (np.linspace(0.001, 1, len(hiss) // 2), np.linspace(1, 0.001, len(hiss) - len(hiss) // 2))
    )
    return (hiss * envelope).astype(np.int16)


@pytest.mark.parametrize(
    ("name", "signal"),
    [
        (
            "speech-like voice",
            np.concatenate(
                (np.zeros(8000, np.int16), speech_like(8000, 2000), np.zeros(8000, np.int16))
            ),
        ),
        ("hiss", noise(8000, 3000, 0.003)),
        ("1 kHz tone", sine(8000, 1000, 3000, 0.3)),
        ("noise ramp", ramp(8000)),
        (
            "random full scale",
            np.random.default_rng(2).integers(-32768, 32768, 40000).astype(np.int16),
        ),
    ],
)
def test_synthetic_signals_give_the_reference_events(name: str, signal: np.ndarray) -> None:
    assert detect_in_frames(8000, signal) == ReferenceVad(8000).feed(signal), name


def test_the_noise_floor_is_the_minimum_of_its_window() -> None:
    vad = VoiceActivityDetector(8000)
    signal = np.concatenate((ramp(8000), np.zeros(4000, dtype=np.int16), ramp(8000)))
    pcm = samples_to_pcm(signal)
    for i in range(0, len(pcm), 320):
        vad.feed(pcm[i : i + 320])
        assert vad._floor == min(vad._levels)


# --- the bridge's tap: decode to bytes, no converter ---


@pytest.mark.parametrize("format_", [PCMU, PCMA, G722_16K, L16_8K, L16_16K])
def test_l16_decoder_matches_the_converter(format_: AudioFormat) -> None:
    rate = format_.sample_rate
    signal = conversation(rate, "en-us", -6, -50)
    converter = make_converter(format_, AudioFormat(Encoding.L16, rate))
    decode = l16_decoder(format_)
    encoder = G722Encoder()
    for payload in encoded(format_, signal, encoder)[:100]:
        assert decode(payload) == converter.convert(AudioFrame(format_, payload)).payload  # type: ignore[union-attr]


def encoded(format_: AudioFormat, signal: np.ndarray, encoder: G722Encoder) -> list[bytes]:
    step = format_.sample_rate // 50
    pcm = [samples_to_pcm(signal[i : i + step]) for i in range(0, len(signal) - step + 1, step)]
    if format_.encoding is Encoding.PCMU:
        return [encode_ulaw(p) for p in pcm]
    if format_.encoding is Encoding.PCMA:
        return [encode_alaw(p) for p in pcm]
    if format_.encoding is Encoding.G722:
        return [encoder.encode(p) for p in pcm]
    return pcm


@pytest.mark.parametrize("format_", [PCMU, PCMA, G722_16K, L16_16K])
def test_the_bridge_vad_stops_turns_where_the_reference_does(format_: AudioFormat) -> None:
    rate = format_.sample_rate
    signal = conversation(rate, "en-us", -6, -50)
    payloads = encoded(format_, signal, G722Encoder())
    decoded = make_converter(format_, AudioFormat(Encoding.L16, rate))
    reference = ReferenceVad(rate)
    vad = _Vad(format_)
    stops = 0
    for payload in payloads:
        frame = AudioFrame(format_, payload)
        l16 = decoded.convert(frame)
        assert l16 is not None
        expected = [
            max(0, reference.frames * 20 - e.at_ms) / 1000
            for e in reference.feed(np.frombuffer(l16.payload, dtype="<i2"))
            if isinstance(e, SpeechStopped)
        ]
        got = vad.feed(frame)
        assert ([got] if got is not None else []) == expected
        stops += got is not None
    assert stops == 2
