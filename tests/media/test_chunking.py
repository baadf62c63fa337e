"""Rechunker: exact frames from any chunk sizes; silence in every format."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.chunking import Rechunker, frame_bytes, silence
from media.errors import FormatMismatchError, UnsupportedFormatError
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
from media.g722 import G722Decoder
from media.resample import pcm_to_samples

FORMATS = [PCMU, PCMA, G722_16K, L16_8K, L16_16K, L16_24K]


def test_silence_bytes() -> None:
    assert silence(PCMU, 20) == b"\xff" * 160
    assert silence(PCMA, 20) == b"\xd5" * 160
    assert silence(L16_24K, 20) == bytes(960)
    assert len(silence(G722_16K, 20)) == 160
    assert set(pcm_to_samples(G722Decoder().decode(silence(G722_16K, 100))).tolist()) == {0}


def test_frame_bytes_refuses_fractional_samples() -> None:
    assert frame_bytes(L16_16K, 20) == 640
    assert frame_bytes(AudioFormat(Encoding.L16, 22050), 20) == 882
    with pytest.raises(UnsupportedFormatError):
        frame_bytes(AudioFormat(Encoding.L16, 22050), 1)  # 22.05 samples
    with pytest.raises(UnsupportedFormatError):
        frame_bytes(PCMU, 0)
    with pytest.raises(UnsupportedFormatError):
        Rechunker(G722_16K, -20)


@settings(max_examples=80, deadline=None)
@given(
    format_=st.sampled_from(FORMATS),
    frame_ms=st.sampled_from([10, 20, 30, 60]),
    chunks=st.lists(st.binary(min_size=0, max_size=3000), max_size=20),
)
def test_frames_are_exact_and_lose_nothing(
    format_: AudioFormat, frame_ms: int, chunks: list[bytes]
) -> None:
    rechunker = Rechunker(format_, frame_ms, timestamp=100)
    frames: list[AudioFrame] = []
    for n, chunk in enumerate(chunks):
        got = rechunker.feed(chunk, received_at=float(n))
        assert all(f.received_at == float(n) for f in got)
        frames += got
    size = format_.bytes_for_ms(frame_ms)
    assert all(len(f.payload) == size and f.format == format_ for f in frames)
    assert [f.timestamp for f in frames] == [100 + i * frame_ms for i in range(len(frames))]
    stream = b"".join(chunks)
    assert rechunker.pending == len(stream) % size
    joined = b"".join(f.payload for f in frames)
    assert joined == stream[: len(stream) - len(stream) % size]
    tail = rechunker.flush(pad=True)
    if tail is None:
        assert joined == stream
    else:
        assert len(tail.payload) == size
        assert tail.timestamp == 100 + len(frames) * frame_ms
        rest = stream[len(joined) :]
        assert tail.payload == rest + silence(format_, frame_ms)[len(rest) :]
    assert rechunker.pending == 0


def test_odd_provider_chunks_make_whole_frames() -> None:
    """40-500 ms chunks that split L16 samples (odd byte counts) still give 20 ms frames."""
    stream = bytes(range(256)) * 40  # 10240 bytes = 320 ms of L16/16k
    rechunker = Rechunker(L16_16K)
    frames = []
    for size in (1281, 7, 3333, 999, 4620):
        frames += rechunker.feed(stream[:size])
        stream = stream[size:]
    assert len(frames) == 16
    assert rechunker.pending == 0
    assert b"".join(f.payload for f in frames) == (bytes(range(256)) * 40)


def test_flush_without_padding_keeps_whole_samples_only() -> None:
    rechunker = Rechunker(L16_8K)
    assert rechunker.feed(b"\x01\x02\x03") == []
    tail = rechunker.flush(pad=False)
    assert tail is not None and tail.payload == b"\x01\x02"
    assert rechunker.timestamp == 0  # 1 sample at 8 kHz rounds to 0 ms
    rechunker.feed(b"\x09")
    assert rechunker.flush(pad=False) is None
    assert rechunker.flush() is None


def test_flush_pads_with_the_formats_silence() -> None:
    rechunker = Rechunker(PCMU)
    rechunker.feed(b"\x12" * 100)
    tail = rechunker.flush()
    assert tail is not None and tail.payload == b"\x12" * 100 + b"\xff" * 60
    assert rechunker.timestamp == 20


def test_clear_drops_the_remainder_but_keeps_the_clock() -> None:
    rechunker = Rechunker(PCMA)
    frames = rechunker.feed(b"\x01" * 250)
    assert len(frames) == 1 and rechunker.pending == 90
    rechunker.clear()
    assert rechunker.pending == 0
    nxt = rechunker.feed(b"\x02" * 160)
    assert [f.payload for f in nxt] == [b"\x02" * 160]
    assert nxt[0].timestamp == 20


def test_feed_frame_checks_the_format() -> None:
    rechunker = Rechunker(PCMU)
    assert len(rechunker.feed_frame(AudioFrame(PCMU, b"\xff" * 400, received_at=3.0))) == 2
    with pytest.raises(FormatMismatchError):
        rechunker.feed_frame(AudioFrame(PCMA, b"\xd5" * 160))
