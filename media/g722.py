"""G.722 at 64 kbit/s over the ``G722`` package (libg722, a bit-exact C implementation).

G.722 (ITU-T G.722, 09/2012) is sub-band ADPCM: 16 kHz audio is split into two bands and
each band is coded with an adaptive predictor and step size. That adaptation is state
that carries from one frame to the next, so a stream needs one ``G722Encoder`` and one
``G722Decoder`` for its whole life; a fresh codec per frame would restart the adaptation
at every frame edge and click.

Sizes at 64 kbit/s: one byte holds two samples (6 bits low band + 2 bits high band per
pair), so 20 ms = 320 samples = 160 bytes. The audio is 16 kHz even though RTP clocks
G.722 at 8000 Hz (RFC 3551 §4.5.2); that quirk belongs to the RTP layer, not here.

Silence: a fresh encoder fed zeros does not settle on one code (its idle pattern wanders
after the first 44 bytes), so ``G722_SILENCE`` is a constant measured against this codec
instead: 0xFC repeated decodes to exact zeros in a fresh decoder and to a residue below
-58 dBFS after loud speech, where the often-quoted 0xFA leaves a -44 dBFS hum.
``tests/media/test_g722.py`` checks both claims.
"""

from __future__ import annotations

import array
import sys
from typing import TYPE_CHECKING

import G722
import numpy as np

from media.errors import PayloadError

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["G722_BIT_RATE", "G722_SAMPLE_RATE", "G722_SILENCE", "G722Decoder", "G722Encoder"]

_Bytes = bytes | bytearray | memoryview

G722_SAMPLE_RATE = 16000
G722_BIT_RATE = 64000
G722_SILENCE = 0xFC
"""One G.722 byte (two samples) of silence; see the module docstring."""

_LITTLE = sys.byteorder == "little"


class G722Encoder:
    """Stateful G.722 encoder for one stream: L16 (16 kHz) in, G.722 bytes out.

    G.722 codes samples in pairs. An odd sample at the end of a chunk is kept and coded
    with the first sample of the next chunk, so chunks of any length can be fed.
    """

    __slots__ = ("_codec", "_pending")

    def __init__(self) -> None:
        self._codec = G722.G722(G722_SAMPLE_RATE, G722_BIT_RATE, use_numpy=False)
        self._pending: NDArray[np.int16] | None = None

    def encode(self, pcm: _Bytes) -> bytes:
        """Encode L16 little-endian samples; returns ``len(pcm) // 4`` bytes or one more.

        Raises ``PayloadError`` for an odd number of bytes.
        """
        size = memoryview(pcm).nbytes
        if size % 2:
            raise PayloadError(f"L16 payload of {size} bytes is not a whole number of samples")
        return self.encode_samples(np.frombuffer(pcm, dtype="<i2"))

    def encode_samples(self, samples: NDArray[np.int16]) -> bytes:
        """Encode a 1-D array of 16-bit samples (any byte order numpy knows)."""
        if self._pending is not None:
            samples = np.concatenate((self._pending, samples))
            self._pending = None
        if len(samples) % 2:
            self._pending = samples[-1:].copy()
            samples = samples[:-1]
        if not len(samples):
            return b""
        if samples.dtype != np.int16 or not samples.flags.c_contiguous:
            samples = np.ascontiguousarray(samples, dtype=np.int16)
        data: bytes = self._codec.encode(samples)
        return data

    def reset(self) -> None:
        """Forget all state: the next sample starts a new G.722 stream."""
        self._codec = G722.G722(G722_SAMPLE_RATE, G722_BIT_RATE, use_numpy=False)
        self._pending = None


class G722Decoder:
    """Stateful G.722 decoder for one stream: G.722 bytes in, L16 (16 kHz) out."""

    __slots__ = ("_codec",)

    def __init__(self) -> None:
        self._codec = G722.G722(G722_SAMPLE_RATE, G722_BIT_RATE, use_numpy=False)

    def decode(self, data: _Bytes) -> bytes:
        """Decode to L16 little-endian samples: four bytes out per byte in."""
        samples = self._decode(data)
        if not _LITTLE:
            samples.byteswap()
        return samples.tobytes()

    def decode_samples(self, data: _Bytes) -> NDArray[np.int16]:
        """Decode to a 1-D native ``int16`` array (a view on the decoder's output)."""
        return np.frombuffer(self._decode(data), dtype=np.int16)

    def _decode(self, data: _Bytes) -> array.array[int]:
        if not isinstance(data, bytes):
            data = bytes(data)  # the extension takes ``bytes`` only
        samples: array.array[int] = self._codec.decode(data)
        return samples

    def reset(self) -> None:
        """Forget all state: the next byte starts a new G.722 stream."""
        self._codec = G722.G722(G722_SAMPLE_RATE, G722_BIT_RATE, use_numpy=False)
