"""Streaming resampling: frame by frame equals all at once, no clicks, steady output."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import soxr

from media.errors import PayloadError, UnsupportedFormatError
from media.resample import StreamResampler, pcm_to_samples, samples_to_pcm
from media.tones import sine, speech_like

RATES = (8000, 16000, 24000, 48000)
PAIRS = [(a, b) for a, b in itertools.permutations(RATES, 2)]


def stream(resampler: StreamResampler, signal: np.ndarray, frame: int) -> list[np.ndarray]:
    return [resampler.process(signal[i : i + frame]) for i in range(0, len(signal), frame)]


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_framed_equals_whole(in_rate: int, out_rate: int) -> None:
    signal = speech_like(in_rate, 600)
    framed = StreamResampler(in_rate, out_rate)
    pieces = [*stream(framed, signal, in_rate // 50), framed.flush()]
    whole = StreamResampler(in_rate, out_rate)
    at_once = np.concatenate([whole.process(signal), whole.flush()])
    joined = np.concatenate(pieces)
    assert len(joined) == len(at_once) == pytest.approx(len(signal) * out_rate / in_rate, abs=2)
    assert np.max(np.abs(joined.astype(np.int64) - at_once.astype(np.int64))) <= 1


TONES = (300.0, 700.0, 1300.0)


def band_limited(rate: int, ms: int) -> np.ndarray:
    """Three tones under 0.45 x 8 kHz: every rate pair here passes them unchanged."""
    mix = np.zeros(rate * ms // 1000, dtype=np.int32)
    for frequency in TONES:
        mix += sine(rate, frequency, ms, 0.2)
    return mix.astype(np.int16)


def tone_at(signal: np.ndarray, rate: int, frequency: float) -> tuple[float, float]:
    """Amplitude and phase (radians) of one frequency, measured between 50 and 450 ms."""
    t = np.arange(len(signal)) / rate
    window = (t > 0.05) & (t < 0.45)
    z = np.sum(signal[window] * np.exp(-2j * np.pi * frequency * t[window]))
    return 2 * abs(z) / int(window.sum()), float(np.angle(z))


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_matches_soxr_one_shot(in_rate: int, out_rate: int) -> None:
    """Streamed 20 ms at a time, each tone comes out as soxr's one-shot HQ resampler (a
    different engine, fed everything at once) makes it: same amplitude, and the same time
    give or take 0.3 ms (the variable-rate engine's residual delay when downsampling)."""
    signal = band_limited(in_rate, 500)
    r = StreamResampler(in_rate, out_rate)
    streamed = np.concatenate([*stream(r, signal, in_rate // 50), r.flush()]).astype(np.float64)
    reference = soxr.resample(signal, in_rate, out_rate, quality="HQ").astype(np.float64)
    assert len(streamed) == len(reference)
    for frequency in TONES:
        amplitude, phase = tone_at(streamed, out_rate, frequency)
        ref_amplitude, ref_phase = tone_at(reference, out_rate, frequency)
        assert amplitude == pytest.approx(ref_amplitude, rel=0.01)
        turn = (ref_phase - phase + np.pi) % (2 * np.pi) - np.pi
        lag_ms = turn / (2 * np.pi * frequency) * 1000
        assert -0.05 <= lag_ms <= 0.3


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_no_discontinuity_at_frame_edges(in_rate: int, out_rate: int) -> None:
    frequency, amplitude = 440.0, 0.5
    tone = sine(in_rate, frequency, 1000, amplitude)
    out = np.concatenate(stream(StreamResampler(in_rate, out_rate), tone, in_rate // 50))
    # Skip the first 10 ms: the tone switches on abruptly there and the filter rings.
    steps = np.abs(np.diff(out[out_rate // 100 :].astype(np.int64)))
    # A sine's largest sample-to-sample step is 2*pi*f/fs of its amplitude; a click at a
    # frame edge would jump far beyond that.
    bound = 2 * np.pi * frequency / out_rate * amplitude * 32767
    assert steps.max() <= bound * 1.05 + 2


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_output_is_steady_after_priming(in_rate: int, out_rate: int) -> None:
    """Every 20 ms in gives ~20 ms out once primed; at most 30 ms is ever held back."""
    r = StreamResampler(in_rate, out_rate)
    frame_in, frame_out = in_rate // 50, out_rate // 50
    lengths = [len(p) for p in stream(r, speech_like(in_rate, 400), frame_in)]
    assert all(abs(n - frame_out) <= 2 for n in lengths[3:])
    held_ms = 400 - sum(lengths) * 1000 / out_rate
    assert 0 <= held_ms <= 30.1


def test_downsampling_filters_what_would_alias() -> None:
    """6 kHz at 24 kHz has no place at 8 kHz; it must vanish, not fold down to 2 kHz."""
    r = StreamResampler(24000, 8000)
    out = np.concatenate(stream(r, sine(24000, 6000, 500, 0.5), 480))[800:].astype(np.float64)
    assert np.sqrt(np.mean(out**2)) < 32767 * 1e-4  # below -80 dBFS
    passband = np.concatenate(
        stream(StreamResampler(24000, 8000), sine(24000, 3000, 500, 0.5), 480)
    )
    rms = np.sqrt(np.mean(passband[800:].astype(np.float64) ** 2))
    assert rms == pytest.approx(0.5 * 32767 / np.sqrt(2), rel=0.02)


def test_reset_forgets_the_past() -> None:
    r = StreamResampler(8000, 24000)
    first = np.concatenate(stream(r, sine(8000, 300, 200), 160))
    stream(r, speech_like(8000, 200), 160)
    r.reset()
    again = np.concatenate(stream(r, sine(8000, 300, 200), 160))
    assert np.array_equal(first, again)


def test_pcm_helpers() -> None:
    pcm = samples_to_pcm(np.array([1, -2, 300], dtype=np.int16))
    assert pcm == b"\x01\x00\xfe\xff\x2c\x01"
    assert pcm_to_samples(pcm).tolist() == [1, -2, 300]
    assert StreamResampler(8000, 16000).process_pcm(b"") == b""
    with pytest.raises(PayloadError):
        pcm_to_samples(b"\x00\x00\x00")


@pytest.mark.parametrize(
    ("in_rate", "out_rate"), [(8000, 8000), (0, 8000), (8000, -1), (8000, 10**7)]
)
def test_rejects_bad_rates(in_rate: int, out_rate: int) -> None:
    with pytest.raises(UnsupportedFormatError):
        StreamResampler(in_rate, out_rate)
