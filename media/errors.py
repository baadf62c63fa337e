"""Errors raised by the media primitives (codecs, resamplers, converters, chunking, VAD).

Every error is a ``ValueError``, so a caller that only knows "bad value" still catches it;
callers that care can tell the three cases apart::

    MediaError(ValueError)
    ├── PayloadError            bytes that cannot be audio of their format: an odd-length
    │                           L16 payload, an empty frame handed to a converter
    ├── FormatMismatchError     a frame in another format than the object was built for
    │                           (a wiring mistake in the caller, never the peer's fault)
    └── UnsupportedFormatError  a format or parameter no primitive here handles: G.722 not
                                at 16 kHz, a sample rate <= 0, a frame length that is not a
                                whole number of samples, an empty candidate list

Peer input (payloads from RTP or a provider) can only ever produce ``PayloadError``.
"""

from __future__ import annotations

__all__ = ["FormatMismatchError", "MediaError", "PayloadError", "UnsupportedFormatError"]


class MediaError(ValueError):
    """Root of the media package's errors."""


class PayloadError(MediaError):
    """A payload that cannot be audio of its declared format."""


class FormatMismatchError(MediaError):
    """A frame whose format is not the one this object was built for."""


class UnsupportedFormatError(MediaError):
    """A format, rate or framing that the media primitives do not handle."""
