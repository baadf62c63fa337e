"""How the generator marks its frames so the agent can tell which one it received.

* PCMU (zero-transcode path): the gateway forwards the payload untouched, so every 160-byte
  payload starts with ``MAGIC`` and the frame's index (32-bit big-endian); the rest is a
  fixed µ-law pattern.
* Transcoding path (G.722 leg, agent L16 16 kHz): the payload is decoded and re-encoded,
  so no bytes survive. The generator sends ``ONSET_FRAME`` frames of silence, then a tone;
  the agent takes the first loud frame as index ``ONSET_FRAME`` and counts on from there by
  the media clock (``timestamp`` in ms / 20).
"""

from __future__ import annotations

import struct

MAGIC = b"TPB1"
FRAME_MS = 20
ONSET_FRAME = 25  # 500 ms of silence before the tone on the transcoding path
_FILL = bytes((0x20 + (i * 37) % 0x5F) for i in range(160))  # never µ-law silence (0xFF)


def pcmu_payload(index: int) -> bytes:
    """The 20 ms µ-law payload of frame ``index``."""
    return MAGIC + struct.pack("!I", index & 0xFFFFFFFF) + _FILL[8:]


def pcmu_index(payload: bytes) -> int | None:
    """The frame index a marked µ-law payload carries, or ``None`` (silence, concealment)."""
    if len(payload) < 8 or payload[:4] != MAGIC:
        return None
    index: int = struct.unpack_from("!I", payload, 4)[0]
    return index


def l16_loud(payload: bytes, threshold: int = 1000) -> bool:
    """Whether signed 16-bit little-endian PCM has a sample above ``threshold``."""
    if len(payload) < 2:
        return False
    samples = memoryview(payload[: len(payload) // 2 * 2]).cast("h")
    return max(samples) > threshold or min(samples) < -threshold
