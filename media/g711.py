"""G.711 µ-law (PCMU) and A-law (PCMA) companding, over the C code in ``audioop``.

ITU-T G.711 maps each 16-bit linear sample to one 8-bit code and back; there is no state,
so these are plain functions of bytes. L16 on our side is signed 16-bit little-endian mono
(``media.frames.Encoding.L16``). ``audioop`` works in native byte order, so on a
big-endian host the samples are swapped on the way in and out.

``audioop`` comes through :mod:`media.audioop_compat` (standard library up to 3.12,
``audioop-lts`` from 3.13 on).

Silence: µ-law encodes 0 as 0xFF and A-law as 0xD5 (G.711 Tables 1a/2a, the even bits of
A-law codes are inverted on the wire, hence 0x55 ^ 0x80).
"""

from __future__ import annotations

import sys
from typing import Final

from media.audioop_compat import audioop
from media.errors import PayloadError

__all__ = [
    "ALAW_SILENCE",
    "ULAW_SILENCE",
    "decode_alaw",
    "decode_ulaw",
    "encode_alaw",
    "encode_ulaw",
]

_Bytes = bytes | bytearray | memoryview

ULAW_SILENCE = 0xFF
"""The µ-law code of a zero sample."""

ALAW_SILENCE = 0xD5
"""The A-law code of a zero sample."""

_SWAP: Final = sys.byteorder != "little"


def _l16_in(pcm: _Bytes) -> _Bytes:
    size = memoryview(pcm).nbytes
    if size % 2:
        raise PayloadError(f"L16 payload of {size} bytes is not a whole number of samples")
    return audioop.byteswap(pcm, 2) if _SWAP else pcm


def _l16_out(pcm: bytes) -> bytes:
    return audioop.byteswap(pcm, 2) if _SWAP else pcm


def encode_ulaw(pcm: _Bytes) -> bytes:
    """µ-law-encode L16 little-endian samples: one byte out per sample in.

    Raises ``PayloadError`` for an odd number of bytes.
    """
    return audioop.lin2ulaw(_l16_in(pcm), 2)


def decode_ulaw(data: _Bytes) -> bytes:
    """Decode µ-law bytes to L16 little-endian samples (two bytes out per byte in)."""
    return _l16_out(audioop.ulaw2lin(data, 2))


def encode_alaw(pcm: _Bytes) -> bytes:
    """A-law-encode L16 little-endian samples: one byte out per sample in.

    Raises ``PayloadError`` for an odd number of bytes.
    """
    return audioop.lin2alaw(_l16_in(pcm), 2)


def decode_alaw(data: _Bytes) -> bytes:
    """Decode A-law bytes to L16 little-endian samples (two bytes out per byte in)."""
    return _l16_out(audioop.alaw2lin(data, 2))
