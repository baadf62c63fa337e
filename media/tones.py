"""Deterministic test signals: sine tones and a speech-like voiced signal, as L16.

For tests, the echo agent's test tone and health checks. Everything here is a pure
function of its arguments (noise takes a seed), returning native ``int16`` arrays or L16
little-endian bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from media.resample import samples_to_pcm

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["noise", "sine", "sine_pcm", "speech_like", "to_pcm"]

_FULL_SCALE = 32767.0


def _times(sample_rate: int, ms: int) -> NDArray[np.float64]:
    return np.arange(sample_rate * ms // 1000, dtype=np.float64) / sample_rate


def to_pcm(signal: NDArray[np.float64]) -> NDArray[np.int16]:
    """Scale a float signal in [-1, 1] to ``int16`` (clipped)."""
    return np.clip(np.round(signal * _FULL_SCALE), -32768, 32767).astype(np.int16)


def sine(sample_rate: int, frequency: float, ms: int, amplitude: float = 0.5) -> NDArray[np.int16]:
    """``ms`` ms of a sine at ``frequency`` Hz, peak ``amplitude`` of full scale."""
    return to_pcm(amplitude * np.sin(2 * np.pi * frequency * _times(sample_rate, ms)))


def sine_pcm(sample_rate: int, frequency: float, ms: int, amplitude: float = 0.5) -> bytes:
    """``sine`` as L16 little-endian bytes."""
    return samples_to_pcm(sine(sample_rate, frequency, ms, amplitude))


def noise(sample_rate: int, ms: int, rms: float, seed: int = 0) -> NDArray[np.int16]:
    """White Gaussian noise with the given RMS (fraction of full scale)."""
    rng = np.random.default_rng(seed)
    return to_pcm(rng.normal(0.0, rms, sample_rate * ms // 1000))


_VOWELS = (
    (700, 1200, 2600),
    (300, 2300, 3000),
    (500, 1900, 2500),
    (300, 800, 2300),
    (500, 900, 2400),
)
"""Formants (Hz) of /a/, /i/, /e/, /u/, /o/, roughly (Peterson & Barney 1952)."""


def speech_like(
    sample_rate: int,
    ms: int,
    *,
    pitch: float = 140.0,
    amplitude: float = 0.25,
    syllable_rate: float = 4.0,
) -> NDArray[np.int16]:
    """A voiced, vowel-like signal: a gliding pitch whose harmonics are shaped by the
    formants of a different vowel every syllable, amplitude-modulated at the syllable rate.

    Not speech, but it has what telephone VADs key on: harmonic energy in the 300-3400 Hz
    band whose level and spectrum change a few times a second.
    """
    t = _times(sample_rate, ms)
    f0 = pitch * (1.0 + 0.05 * np.sin(2 * np.pi * 3.0 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    # Syllables start where the envelope is lowest, so a vowel change does not click.
    envelope = 0.6 - 0.4 * np.cos(2 * np.pi * syllable_rate * t)
    syllable = (t * syllable_rate).astype(np.int64) % len(_VOWELS)
    signal = np.zeros_like(t)
    harmonic = 1
    while harmonic * pitch * 1.05 < sample_rate / 2 - 200:
        f = harmonic * pitch
        gains = np.array(
            [sum(np.exp(-(((f - fm) / 150.0) ** 2)) for fm in vowel) + 0.05 for vowel in _VOWELS]
        )
        signal += gains[syllable] * np.sin(harmonic * phase) / np.sqrt(harmonic)
        harmonic += 1
    signal *= envelope
    peak = float(np.max(np.abs(signal))) if len(signal) else 1.0
    return to_pcm(signal / (peak or 1.0) * amplitude)
