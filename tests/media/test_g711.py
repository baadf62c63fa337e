"""G.711 µ-law and A-law against the values of ITU-T G.711's tables."""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.errors import MediaError, PayloadError
from media.g711 import (
    ALAW_SILENCE,
    ULAW_SILENCE,
    decode_alaw,
    decode_ulaw,
    encode_alaw,
    encode_ulaw,
)


def l16(*samples: int) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def samples(pcm: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(pcm) // 2}h", pcm))


def test_silence_codes() -> None:
    assert encode_ulaw(l16(0)) == bytes([ULAW_SILENCE]) == b"\xff"
    assert encode_alaw(l16(0)) == bytes([ALAW_SILENCE]) == b"\xd5"


@pytest.mark.parametrize(
    ("sample", "ulaw", "alaw"),
    [
        (0, 0xFF, 0xD5),
        (-1, 0x7E, 0x55),
        (32767, 0x80, 0xAA),
        (-32768, 0x00, 0x2A),
        (1000, 0xCE, 0xFA),
    ],
)
def test_known_encodings(sample: int, ulaw: int, alaw: int) -> None:
    assert encode_ulaw(l16(sample)) == bytes([ulaw])
    assert encode_alaw(l16(sample)) == bytes([alaw])


@pytest.mark.parametrize(
    ("code", "ulaw", "alaw"),
    [
        # G.711 Table 2a/2b decoder outputs, scaled from 14/13 bits to 16 bits.
        (0xFF, 0, 848),
        (0x80, 32124, 5504),
        (0x00, -32124, -5504),
        (0xD5, 716, 8),
        (0xAA, 5372, 32256),
        (0x2A, -5372, -32256),
    ],
)
def test_known_decodings(code: int, ulaw: int, alaw: int) -> None:
    assert samples(decode_ulaw(bytes([code]))) == [ulaw]
    assert samples(decode_alaw(bytes([code]))) == [alaw]


def test_every_code_survives_decode_then_encode() -> None:
    codes = bytes(range(256))
    assert encode_alaw(decode_alaw(codes)) == codes
    # µ-law has two zeros (0x7F is "negative zero"); it encodes back to 0xFF.
    assert encode_ulaw(decode_ulaw(codes)) == codes.replace(b"\x7f", b"\xff")


@pytest.mark.parametrize(
    ("encode", "decode"), [(encode_ulaw, decode_ulaw), (encode_alaw, decode_alaw)]
)
def test_quantisation_error_is_logarithmic(
    encode: Callable[[bytes], bytes], decode: Callable[[bytes], bytes]
) -> None:
    x = np.arange(-32000, 32001, dtype=np.int16)
    y = np.frombuffer(decode(encode(x.tobytes())), dtype="<i2")
    error = np.abs(y.astype(np.int64) - x.astype(np.int64))
    assert np.all(error <= np.abs(x.astype(np.int64)) / 32 + 8)


@given(st.binary(max_size=400))
def test_any_bytes_decode_to_two_bytes_a_sample(data: bytes) -> None:
    assert len(decode_ulaw(data)) == 2 * len(data)
    assert len(decode_alaw(data)) == 2 * len(data)


@pytest.mark.parametrize("encode", [encode_ulaw, encode_alaw])
def test_odd_length_l16_is_a_payload_error(encode: Callable[[bytes], bytes]) -> None:
    with pytest.raises(PayloadError, match="whole number of samples") as info:
        encode(b"\x00\x01\x02")
    assert isinstance(info.value, MediaError)
    assert isinstance(info.value, ValueError)


def test_empty_input_is_empty_output() -> None:
    assert encode_ulaw(b"") == b""
    assert decode_alaw(b"") == b""
