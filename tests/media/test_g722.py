"""G.722 at 64 kbit/s: sizes, state carried across frames, silence, round trip quality."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.chunking import silence
from media.errors import PayloadError
from media.frames import G722_16K
from media.g722 import G722_SILENCE, G722Decoder, G722Encoder
from media.resample import pcm_to_samples, samples_to_pcm
from media.tones import sine, sine_pcm, speech_like

RATE = 16000
FRAME = 320  # samples in 20 ms


def best_correlation(
    reference: np.ndarray, decoded: np.ndarray, max_lag: int = 64
) -> tuple[float, int]:
    """Highest normalised correlation of ``decoded`` against ``reference`` over codec delays."""
    best = (-1.0, 0)
    n = len(reference) - max_lag
    a = reference[:n].astype(np.float64)
    for lag in range(max_lag):
        b = decoded[lag : lag + n].astype(np.float64)
        r = float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))
        best = max(best, (r, lag))
    return best


def test_twenty_ms_is_160_bytes_and_back() -> None:
    encoder, decoder = G722Encoder(), G722Decoder()
    data = encoder.encode(sine_pcm(RATE, 1000, 20))
    assert len(data) == 160
    assert len(decoder.decode(data)) == 640


def test_1khz_sine_survives_a_framed_round_trip() -> None:
    tone = sine(RATE, 1000, 1000, amplitude=0.5)
    encoder, decoder = G722Encoder(), G722Decoder()
    decoded = np.concatenate(
        [
            pcm_to_samples(decoder.decode(encoder.encode(samples_to_pcm(tone[i : i + FRAME]))))
            for i in range(0, len(tone), FRAME)
        ]
    )
    assert len(decoded) == len(tone)
    r, _ = best_correlation(tone, decoded)
    assert r > 0.9


def test_codec_delay_is_the_qmf_delay() -> None:
    """A non-periodic signal pins the delay: 22 samples (1.4 ms), from the QMF pair."""
    voice = speech_like(RATE, 500)
    decoded = pcm_to_samples(G722Decoder().decode(G722Encoder().encode(samples_to_pcm(voice))))
    r, lag = best_correlation(voice, decoded)
    assert r > 0.99
    assert lag == 22


def test_state_carries_across_frames() -> None:
    """Encoding frame by frame equals encoding in one go; a fresh codec per frame does not."""
    pcm = samples_to_pcm(speech_like(RATE, 400))
    whole = G722Encoder().encode(pcm)
    encoder = G722Encoder()
    framed = b"".join(encoder.encode(pcm[i : i + 640]) for i in range(0, len(pcm), 640))
    assert framed == whole
    restarted = b"".join(G722Encoder().encode(pcm[i : i + 640]) for i in range(0, len(pcm), 640))
    assert restarted != whole


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=700), max_size=12))
def test_any_split_into_whole_samples_encodes_the_same(cuts: list[int]) -> None:
    """An odd sample at a chunk's end waits for the next chunk; the bytes do not change."""
    pcm = samples_to_pcm(speech_like(RATE, 250))
    whole = G722Encoder().encode(pcm)
    encoder = G722Encoder()
    out, pos = [], 0
    for cut in cuts:
        size = cut * 2
        out.append(encoder.encode(pcm[pos : pos + size]))
        pos += size
    out.append(encoder.encode(pcm[pos:]))
    assert b"".join(out) == whole


def test_reset_starts_a_new_stream() -> None:
    pcm = samples_to_pcm(speech_like(RATE, 100))
    encoder = G722Encoder()
    first = encoder.encode(pcm)
    encoder.encode(samples_to_pcm(sine(RATE, 300, 20)[:-1]))  # leaves an odd sample behind
    encoder.reset()
    assert encoder.encode(pcm) == first
    decoder = G722Decoder()
    decoded = decoder.decode(first)
    decoder.decode(first)
    decoder.reset()
    assert decoder.decode(first) == decoded


def test_silence_constant_decodes_to_silence() -> None:
    frame = silence(G722_16K, 20)
    assert frame == bytes([G722_SILENCE]) * 160
    assert set(pcm_to_samples(G722Decoder().decode(frame * 10)).tolist()) == {0}
    # After a loud tone the decoder's predictor rings down to a faint residue (< -58 dBFS).
    decoder = G722Decoder()
    decoder.decode(G722Encoder().encode(sine_pcm(RATE, 1000, 200, amplitude=0.9)))
    tail = pcm_to_samples(decoder.decode(frame * 10))[-640:].astype(np.float64)
    assert np.sqrt(np.mean(tail**2)) < 40


def test_odd_length_l16_is_a_payload_error() -> None:
    with pytest.raises(PayloadError):
        G722Encoder().encode(b"\x00" * 641)


def test_decoder_takes_any_buffer() -> None:
    data = G722Encoder().encode(sine_pcm(RATE, 500, 20))
    assert G722Decoder().decode(bytearray(data)) == G722Decoder().decode(data)
    assert G722Decoder().decode(memoryview(data)) == G722Decoder().decode(data)
