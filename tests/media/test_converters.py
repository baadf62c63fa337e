"""Converters: identity is free, transcoding keeps the signal, clocks and errors are clear."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.converters import (
    Converter,
    IdentityConverter,
    TranscodingConverter,
    cheapest_format,
    conversion_cost,
    make_converter,
)
from media.errors import FormatMismatchError, MediaError, PayloadError, UnsupportedFormatError
from media.frames import (
    G722_16K,
    L16_8K,
    L16_16K,
    L16_24K,
    PCMA,
    PCMU,
    AudioFormat,
    AudioFrame,
    Encoding,
)
from media.resample import pcm_to_samples, samples_to_pcm
from media.tones import sine, speech_like

FORMATS = [PCMU, PCMA, G722_16K, L16_8K, L16_16K, L16_24K, AudioFormat(Encoding.L16, 48000)]


def frames_of(format_: AudioFormat, pcm: bytes, start: int = 0, ms: int = 20) -> list[AudioFrame]:
    """Cut L16 audio at ``format_``'s rate into ``ms`` frames encoded as ``format_``."""
    to_format = make_converter(AudioFormat(Encoding.L16, format_.sample_rate), format_)
    step = format_.sample_rate * ms // 1000 * 2
    frames = []
    for n, i in enumerate(range(0, len(pcm), step)):
        frame = to_format.convert(
            AudioFrame(to_format.source, pcm[i : i + step], start + n * ms, received_at=n / 50)
        )
        assert frame is not None
        frames.append(frame)
    return frames


def run(converter: Converter, frames: list[AudioFrame]) -> list[AudioFrame]:
    out = [converter.convert(f) for f in frames]
    return [f for f in out if f is not None]


def to_samples(frames: list[AudioFrame]) -> np.ndarray:
    """Decode frames of one format to L16 samples at the same rate."""
    format_ = frames[0].format
    decoded = run(make_converter(format_, AudioFormat(Encoding.L16, format_.sample_rate)), frames)
    assert len(decoded) == len(frames)
    return pcm_to_samples(b"".join(f.payload for f in decoded))


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


# --- identity ---


@pytest.mark.parametrize("format_", FORMATS, ids=str)
def test_identity_returns_the_very_same_frame(format_: AudioFormat) -> None:
    converter = make_converter(format_, format_)
    assert isinstance(converter, IdentityConverter)
    frame = AudioFrame(format_, bytes(format_.bytes_for_ms(20)), 40, 1.5)
    out = converter.convert(frame)
    assert out is frame
    assert out.payload is frame.payload
    converter.reset()
    assert converter.convert(frame) is frame


def test_identity_still_refuses_another_format() -> None:
    with pytest.raises(FormatMismatchError):
        make_converter(PCMU, PCMU).convert(AudioFrame(PCMA, b"\xd5" * 160))


# --- transcoding keeps the signal ---


def test_pcmu_to_24k_and_back_keeps_a_sine() -> None:
    """PCMU -> L16/24k (as for OpenAI) -> PCMU (back to the trunk) through two converters."""
    tone = samples_to_pcm(sine(8000, 1000, 1000, amplitude=0.5))
    up, down = make_converter(PCMU, L16_24K), make_converter(L16_24K, PCMU)
    at_24k = run(up, frames_of(PCMU, tone))
    assert {f.format for f in at_24k} == {L16_24K}
    wide = pcm_to_samples(b"".join(f.payload for f in at_24k))
    assert dominant_frequency(wide, 24000) == pytest.approx(1000, abs=5)
    back = run(down, at_24k)
    assert {f.format for f in back} == {PCMU}
    decoded = to_samples(back)
    assert dominant_frequency(decoded, 8000) == pytest.approx(1000, abs=5)
    # Each resampler holds back at most 30 ms.
    assert 1000 - 60 <= len(decoded) / 8 <= 1000
    rms = np.sqrt(np.mean(decoded[800:].astype(np.float64) ** 2))
    assert rms == pytest.approx(0.5 * 32767 / np.sqrt(2), rel=0.05)


@pytest.mark.parametrize(("source", "target"), list(itertools.permutations(FORMATS, 2)), ids=str)
def test_every_pair_keeps_a_tone_and_its_duration(source: AudioFormat, target: AudioFormat) -> None:
    pcm = samples_to_pcm(sine(source.sample_rate, 700, 500, amplitude=0.4))
    out = run(make_converter(source, target), frames_of(source, pcm))
    assert all(f.format == target for f in out)
    payload = b"".join(f.payload for f in out)
    assert 500 - 30 <= target.ms_for_bytes(len(payload)) <= 500
    samples = to_samples(out)
    assert dominant_frequency(samples[len(samples) // 5 :], target.sample_rate) == pytest.approx(
        700, abs=10
    )


def test_g722_to_pcmu_is_decoded_once_with_state() -> None:
    """Framed G.722 -> PCMU equals decoding the G.722 stream whole, then converting."""
    voice = samples_to_pcm(speech_like(16000, 400))
    g722 = frames_of(G722_16K, voice)
    framed = b"".join(f.payload for f in run(make_converter(G722_16K, PCMU), g722))
    whole = make_converter(G722_16K, PCMU).convert(
        AudioFrame(G722_16K, b"".join(f.payload for f in g722))
    )
    assert whole is not None
    # Same audio; the framed run releases up to 2 samples later than the single call.
    assert framed[:3000] == whole.payload[:3000]


# --- timestamps ---


def test_timestamps_follow_the_input_clock_through_a_resampler() -> None:
    pcm = samples_to_pcm(speech_like(8000, 400))
    inputs = frames_of(PCMU, pcm, start=1000)
    out = run(make_converter(PCMU, L16_24K), inputs)
    assert out[0].timestamp == 1000  # output sample 0 is input time 0
    for previous, current in itertools.pairwise(out):
        assert current.timestamp == pytest.approx(previous.timestamp + previous.duration_ms, abs=1)
    assert {f.received_at for f in out} <= {f.received_at for f in inputs}


def test_a_gap_in_the_input_moves_the_output_clock() -> None:
    pcm = samples_to_pcm(sine(8000, 400, 200))
    converter = make_converter(PCMU, L16_16K)
    before = run(converter, frames_of(PCMU, pcm, start=0))
    after = run(converter, frames_of(PCMU, pcm, start=5000))
    assert before[-1].timestamp < 200
    # The first frames after the gap still hold the old frames' tail (<= 30 ms of it).
    assert after[0].timestamp == pytest.approx(5000 - 30, abs=30)
    assert after[-1].timestamp == pytest.approx(5000 + 200 - 20 - 30, abs=31)


def test_same_rate_conversions_keep_timestamps_and_received_at() -> None:
    frame = AudioFrame(PCMU, b"\xff" * 160, 1234, 9.5)
    out = make_converter(PCMU, PCMA).convert(frame)
    assert out == AudioFrame(PCMA, b"\xd5" * 160, 1234)
    assert out is not None and out.received_at == 9.5


def test_first_frames_may_be_none_while_the_resampler_primes() -> None:
    converter = make_converter(L16_8K, L16_24K)
    first = converter.convert(AudioFrame(L16_8K, bytes(320)))
    assert first is None


def test_reset_makes_it_a_fresh_converter() -> None:
    frames = frames_of(G722_16K, samples_to_pcm(speech_like(16000, 200)))
    converter = make_converter(G722_16K, L16_24K)
    first = [f.payload for f in run(converter, frames)]
    run(converter, frames_of(G722_16K, samples_to_pcm(sine(16000, 300, 60))))
    converter.reset()
    assert [f.payload for f in run(converter, frames)] == first


# --- cost model ---


def test_costs_rank_identity_g711_resampling_g722() -> None:
    assert conversion_cost(PCMU, PCMU) == 0
    assert 0 < conversion_cost(PCMU, L16_8K) < conversion_cost(PCMU, L16_24K)
    assert conversion_cost(PCMU, L16_24K) < conversion_cost(G722_16K, L16_24K)
    assert conversion_cost(L16_16K, G722_16K) > conversion_cost(L16_16K, L16_8K)


def test_cheapest_format_prefers_identity_then_cheap() -> None:
    assert cheapest_format(PCMU, [L16_24K, PCMA, PCMU]) == PCMU
    assert cheapest_format(PCMU, [L16_24K, L16_8K]) == L16_8K
    assert cheapest_format(G722_16K, [PCMU, L16_24K, L16_16K]) == L16_16K
    # A tie goes to the earlier candidate.
    assert conversion_cost(L16_16K, PCMU) == conversion_cost(L16_16K, PCMA)
    assert cheapest_format(L16_16K, [PCMU, PCMA]) == PCMU
    assert cheapest_format(L16_16K, [PCMA, PCMU]) == PCMA


def test_cheapest_format_skips_unusable_and_refuses_none() -> None:
    bad = AudioFormat(Encoding.G722, 8000)
    assert cheapest_format(PCMU, [bad, L16_16K]) == L16_16K
    with pytest.raises(UnsupportedFormatError):
        cheapest_format(PCMU, [])
    with pytest.raises(UnsupportedFormatError):
        cheapest_format(PCMU, [bad])


# --- hostile and wrong input ---


@pytest.mark.parametrize("target", [PCMU, L16_24K, G722_16K], ids=str)
def test_odd_length_l16_is_a_payload_error(target: AudioFormat) -> None:
    converter = make_converter(L16_16K, target)
    with pytest.raises(PayloadError, match="whole number of samples"):
        converter.convert(AudioFrame(L16_16K, b"\x00" * 641))


@pytest.mark.parametrize(
    ("source", "target"), [(PCMU, L16_8K), (L16_8K, PCMU), (G722_16K, PCMU)], ids=str
)
def test_empty_payload_is_a_payload_error(source: AudioFormat, target: AudioFormat) -> None:
    with pytest.raises(PayloadError, match="empty"):
        make_converter(source, target).convert(AudioFrame(source, b""))


def test_wrong_format_frame_is_refused() -> None:
    with pytest.raises(FormatMismatchError):
        make_converter(PCMU, L16_8K).convert(AudioFrame(PCMA, b"\xd5" * 160))


@pytest.mark.parametrize(
    "bad",
    [
        AudioFormat(Encoding.G722, 8000),
        AudioFormat(Encoding.L16, 0),
        AudioFormat(Encoding.PCMU, -8000),
    ],
    ids=str,
)
def test_unsupported_formats_are_refused_at_construction(bad: AudioFormat) -> None:
    with pytest.raises(UnsupportedFormatError):
        make_converter(bad, PCMU)
    with pytest.raises(UnsupportedFormatError):
        make_converter(PCMU, bad)
    with pytest.raises(UnsupportedFormatError):
        make_converter(bad, bad)


@settings(max_examples=60, deadline=None)
@given(
    source=st.sampled_from(FORMATS),
    target=st.sampled_from(FORMATS),
    payloads=st.lists(st.binary(max_size=2000), min_size=1, max_size=6),
)
def test_any_bytes_give_frames_or_a_media_error(
    source: AudioFormat, target: AudioFormat, payloads: list[bytes]
) -> None:
    """Peer bytes never crash a converter: a frame, None, or a PayloadError. (Identity
    does no work at all, so it hands back even an empty frame: it decodes nothing.)"""
    converter = make_converter(source, target)
    for payload in payloads:
        frame = AudioFrame(source, payload)
        if source == target:
            assert converter.convert(frame) is frame
            continue
        try:
            out = converter.convert(frame)
        except MediaError as error:
            assert isinstance(error, PayloadError)
            assert not payload or (source.encoding is Encoding.L16 and len(payload) % 2)
        else:
            assert out is None or (out.format == target and out.payload)


def test_transcoding_converter_is_a_converter() -> None:
    converter = make_converter(PCMU, L16_8K)
    assert isinstance(converter, TranscodingConverter)
    assert (converter.source, converter.target) == (PCMU, L16_8K)
