"""The modules compiled to C with mypyc, and whether this process runs them compiled.

Every frame of every call runs through the modules below (the RTP stream, the bridge,
the agent socket and dialect): a frame pair cost about 180 µs of CPU at 60 calls, most
of it interpreted Python (docs/performance.md). mypyc, the mypy project's compiler for
typed Python, turns them into C extensions from the same annotated source: most of the
interpreter's per-bytecode and per-call overhead goes, the code and its behaviour stay
(mypyc also checks the annotations at run time, a stricter contract than the
interpreter's). Measured: 30 % fewer instructions per frame pair.

Compiling is a build step, not a requirement: without it the same modules run
interpreted. ``scripts/compile.sh`` (``setup.py`` with ``TELEPATH_COMPILE=1``) builds
them in place beside their sources; the container image builds them into its wheel.
A compiled module shadows its source, so an edited source with an older compiled
module beside it would run stale code. The build records a digest of every source it
compiled (``native-sources.json`` in this package); the gateway refuses to start while
a compiled module's source differs from its record (``stale``), and so does the test
suite, until it is rebuilt or removed (``scripts/compile.sh --clean``). Digests, not
file times: installing a wheel gives its files arbitrary times.

What is not here, and why: classes that tests or other adapters subclass from
interpreted code (``providers.base.AgentSession``, the ``providers.errors`` tree),
modules with async generators (``media.pull``, which mypyc cannot compile), the
subclass of picows' Cython ``WSListener`` (``providers.ws_listener``: a compiled class
cannot extend an extension type), and the SIP signalling core (per call, not per frame;
``ingress.sip.call``, the leg the bridge plays every frame through, is compiled).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os

__all__ = [
    "COMPILED",
    "GROUP",
    "SOURCES_RECORD",
    "changed_since_build",
    "compiled",
    "source_digest",
    "stale",
]

# The frame path, in the order a caller's frame meets it, then the agent's way back.
COMPILED: tuple[str, ...] = (
    "ingress.sip.transport.rtp",
    "ingress.sip.rtp.packet",
    "ingress.sip.rtp.latching",
    "ingress.sip.rtp.stats",
    "ingress.sip.rtp.reorder",
    "ingress.sip.rtp.jitter",
    "ingress.sip.rtp.dtmf",
    "ingress.sip.rtp.rtcp",
    "ingress.sip.rtp.pacer",
    "ingress.sip.transport.media",
    "ingress.sip.call",
    "media.frames",
    "media.relay",
    "media.g711",
    "media.converters",
    "media.chunking",
    "media.vad",
    "gateway.recorded_leg",
    "gateway.turns",
    "gateway.playout",
    "gateway.bridge",
    "providers.events",
    "providers.wire",
    "providers.agent_socket",
    "providers.ws_session",
    "providers.custom_ws.messages",
    "providers.custom_ws.telepath_dialect",
    "providers.custom_ws.session",
    # Subclasses of providers.ws_session.WebSocketAgentSession: an interpreted class
    # cannot inherit from a compiled one.
    "providers.openai_realtime.session",
    "providers.elevenlabs.session",
    # The media-stream path: the carriers' codecs and the leg.
    "ingress.media_streams.errors",
    "ingress.media_streams.events",
    "ingress.media_streams.stream_codec",
    "ingress.media_streams.twilio",
    "ingress.media_streams.telnyx",
    "gateway.media_streams.leg",
)

# The shared library that holds them all (mypyc's group), inside the gateway package so
# that it is found wherever the packages are (an editable install, a wheel, a checkout).
GROUP = "gateway.native"

# Written by setup.py beside this module when it compiles: {module: source_digest(...)}.
SOURCES_RECORD = "native-sources.json"


def _origin(module: str) -> str | None:
    spec = importlib.util.find_spec(module)
    return spec.origin if spec is not None else None


def _is_extension(path: str | None) -> bool:
    return path is not None and path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def compiled() -> list[str]:
    """The modules of ``COMPILED`` that import as compiled extensions here."""
    return [module for module in COMPILED if _is_extension(_origin(module))]


def source_digest(path: str) -> str:
    """SHA-256 of a source file, as the build records it."""
    with open(path, "rb") as source:
        return hashlib.sha256(source.read()).hexdigest()


def stale() -> list[str]:
    """Compiled modules whose source is not the one they were built from (they would
    run the old code, since an extension module shadows its source)."""
    try:
        with open(os.path.join(os.path.dirname(__file__), SOURCES_RECORD)) as record_file:
            record: dict[str, str] = json.load(record_file)
    except (OSError, ValueError):
        record = {}  # compiled with no record of its sources: cannot be trusted either
    built = {}
    for module in compiled():
        # Not beside the spec's origin: a module that the group's library loaded while
        # initialising another names that library as its origin.
        package, _, name = module.rpartition(".")
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            built[module] = os.path.join(spec.submodule_search_locations[0], name + ".py")
    return changed_since_build(built, record)


def changed_since_build(sources: dict[str, str], record: dict[str, str]) -> list[str]:
    """The modules (of ``sources``: module -> its source file) whose source digest is not
    the recorded one. A source that is not there (a wheel may leave them out) is not."""
    return [
        module
        for module, path in sources.items()
        if os.path.exists(path) and source_digest(path) != record.get(module)
    ]
