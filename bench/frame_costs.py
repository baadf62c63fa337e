"""CPU per 20 ms frame of the caller-side turn-metrics path: ``python -m bench.frame_costs``.

What the bridge does for every caller frame when it runs its own VAD (``run_vad``, for
agents without one) and what it does for every frame it hands on (``TurnTracker.gateway``
-> ``LogHistogram.add``), timed in-process with ``timeit``, no sockets, no event loop:

* ``vad``: ``gateway.bridge._Vad.feed`` exactly as ``CallBridge`` calls it, on a leg of
  ``pcmu/8000``, ``g722/16000`` or ``l16/16000``, over three kinds of caller audio:
  ``silence`` (digital zeros), ``low noise`` (white noise at -50 dBFS, a hissy line) and
  ``speech`` (a sentence spoken by espeak-ng when it is installed, else the synthetic
  ``media.tones.speech_like`` voice; the table says which). One ``_Vad`` per row lives
  across all runs, so the figures are a long call's steady state, not a fresh detector's.
* ``parts``: the pieces of that path alone (G.711/G.722 decoding, ``webrtcvad``), to show
  what is left to save.
* ``histogram``: ``LogHistogram.add`` on realistic per-frame gateway latencies
  (log-normal around 0.1 ms) and ``TurnTracker.gateway``, which wraps it.
* ``handoff``: what passing one item from a loop callback (as a datagram arrives) to its
  consumer costs on the gateway's event loop: a plain call, ``media.inbox.Inbox`` to a
  waiting task (a task hop, as leg events reach the bridge), ``asyncio.Queue`` to a
  waiting task; ``loop tick`` is the producer's own ``call_soon`` chain, included in the
  others. The difference to ``callback`` is what removing one hop per frame would save.

Each figure is the best of ``--repeats`` runs (``timeit``'s advice: the minimum is the
least disturbed), in microseconds per frame (per call for the histogram), loop overhead
included. The budget this is measured against (issue 9): at most 100 µs of CPU per call
per 20 ms, both directions together.

    .venv/bin/python -m bench.frame_costs [--repeats 7] [--seconds 3] [--no-espeak]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import math
import shutil
import subprocess
import time
import timeit
import wave
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import webrtcvad
from numpy.typing import NDArray

from gateway.bridge import _Vad
from gateway.turns import LogHistogram, TurnTracker
from media.converters import Converter, make_converter
from media.frames import G722_16K, L16_16K, PCMU, AudioFormat, AudioFrame, Encoding
from media.g711 import encode_ulaw
from media.g722 import G722Encoder
from media.inbox import Inbox
from media.resample import StreamResampler, samples_to_pcm
from media.tones import noise, speech_like

FRAME_MS = 20
SENTENCE = (
    "Hello, I am calling about my order. It was supposed to arrive on Tuesday, "
    "but nothing has come yet. Could you check where it is, please?"
)


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table."""

    section: str
    what: str
    signal: str
    us: float


def espeak_speech(rate: int) -> NDArray[np.int16] | None:
    """``SENTENCE`` spoken by espeak-ng and resampled to ``rate``; None without espeak-ng."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        return None
    wav = subprocess.run(
        [binary, "--stdout", "-v", "en-us", "-s", "160", SENTENCE],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    with wave.open(io.BytesIO(wav)) as reader:
        source_rate = reader.getframerate()
        raw = reader.readframes(reader.getnframes())
    samples = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    resampler = StreamResampler(source_rate, rate)
    return np.concatenate((resampler.process(samples), resampler.flush()))


def signals(rate: int, seconds: float, use_espeak: bool) -> dict[str, NDArray[np.int16]]:
    """Silence, -50 dBFS hiss and speech at ``rate``, whole 20 ms frames each."""
    ms = int(seconds * 1000)
    spoken = espeak_speech(rate) if use_espeak else None
    speech_name = "speech (espeak-ng)" if spoken is not None else "speech (synthetic)"
    if spoken is None:
        spoken = speech_like(rate, ms)
    out = {
        "silence": np.zeros(rate * ms // 1000, dtype=np.int16),
        "low noise": noise(rate, ms, 10 ** (-50 / 20)),
        speech_name: spoken,
    }
    step = rate * FRAME_MS // 1000
    return {name: s[: len(s) - len(s) % step] for name, s in out.items()}


def leg_frames(format_: AudioFormat, samples: NDArray[np.int16]) -> list[AudioFrame]:
    """``samples`` cut into 20 ms frames and encoded as a caller's leg would send them."""
    step = format_.sample_rate * FRAME_MS // 1000
    encoder = G722Encoder() if format_.encoding is Encoding.G722 else None
    frames = []
    for n, i in enumerate(range(0, len(samples), step)):
        pcm = samples_to_pcm(samples[i : i + step])
        if format_.encoding is Encoding.PCMU:
            payload = encode_ulaw(pcm)
        elif encoder is not None:
            payload = encoder.encode(pcm)
        else:
            payload = pcm
        frames.append(AudioFrame(format_, payload, n * FRAME_MS))
    return frames


def best_us(run: Callable[[], object], per_run: int, repeats: int) -> float:
    """Best of ``repeats`` runs of ``run``, in µs per item (``per_run`` items a run)."""
    run()  # warm up caches and the detector's state
    times = timeit.Timer(run).repeat(repeat=repeats, number=1)
    return min(times) / per_run * 1e6


def vad_rows(seconds: float, repeats: int, use_espeak: bool) -> list[Row]:
    rows = []
    by_rate: dict[int, dict[str, NDArray[np.int16]]] = {}
    for format_ in (PCMU, G722_16K, L16_16K):
        rate = format_.sample_rate
        if rate not in by_rate:
            by_rate[rate] = signals(rate, seconds, use_espeak)
        for name, samples in by_rate[rate].items():
            frames = leg_frames(format_, samples)
            vad = _Vad(format_)

            def run(vad: _Vad = vad, frames: list[AudioFrame] = frames) -> None:
                for frame in frames:
                    vad.feed(frame)

            rows.append(
                Row("vad", f"_Vad.feed {format_}", name, best_us(run, len(frames), repeats))
            )
    return rows


def part_rows(seconds: float, repeats: int, use_espeak: bool) -> list[Row]:
    rows = []
    for format_ in (PCMU, G722_16K):
        rate = format_.sample_rate
        speech = [s for n, s in signals(rate, seconds, use_espeak).items() if "speech" in n][0]
        frames = leg_frames(format_, speech)
        converter = make_converter(format_, AudioFormat(Encoding.L16, rate))

        def decode(c: Converter = converter, frames: list[AudioFrame] = frames) -> None:
            for frame in frames:
                c.convert(frame)

        rows.append(
            Row(
                "parts", f"decode {format_} -> L16", "speech", best_us(decode, len(frames), repeats)
            )
        )
        vad = webrtcvad.Vad(2)
        pcm = [
            samples_to_pcm(speech[i : i + rate // 50]) for i in range(0, len(speech), rate // 50)
        ]

        def classify(v: webrtcvad.Vad = vad, pcm: list[bytes] = pcm, rate: int = rate) -> None:
            for chunk in pcm:
                v.is_speech(chunk, rate)

        rows.append(
            Row(
                "parts",
                f"webrtcvad.is_speech {rate} Hz",
                "speech",
                best_us(classify, len(pcm), repeats),
            )
        )
    return rows


def histogram_rows(repeats: int) -> list[Row]:
    rng = np.random.default_rng(9)
    values = [float(v) for v in rng.lognormal(math.log(0.1), 1.0, 10_000)]
    hist = LogHistogram()

    def add(hist: LogHistogram = hist) -> None:
        for value in values:
            hist.add(value)

    tracker = TurnTracker(0.0)
    stamps = [(1.0, 1.0 + v / 1000) for v in values]

    def gateway(tracker: TurnTracker = tracker) -> None:
        for received_at, now in stamps:
            tracker.gateway(received_at, now)

    return [
        Row(
            "histogram", "LogHistogram.add", "0.1 ms log-normal", best_us(add, len(values), repeats)
        ),
        Row(
            "histogram",
            "TurnTracker.gateway",
            "0.1 ms log-normal",
            best_us(gateway, len(values), repeats),
        ),
    ]


async def _handoff_us(kind: str, items: int) -> float:
    """µs of CPU per item: a ``call_soon`` chain hands ``items`` items to a consumer."""
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    inbox: Inbox[int] = Inbox()
    queue: asyncio.Queue[int] = asyncio.Queue()
    received: list[int] = []
    consumer: asyncio.Task[None] | None = None

    async def consume() -> None:
        get = inbox.get if kind == "inbox" else queue.get
        while True:
            received.append(await get())

    if kind in ("inbox", "queue"):
        consumer = loop.create_task(consume())
        await asyncio.sleep(0)  # the consumer waits before the first item
    deliver: Callable[[int], object] = {
        "tick": lambda item: None,
        "callback": received.append,
        "inbox": inbox.put,
        "queue": queue.put_nowait,
    }[kind]
    count = 0

    def tick() -> None:
        nonlocal count
        deliver(count)
        count += 1
        if count < items:
            loop.call_soon(tick)
        else:
            loop.call_soon(finished.set_result, None)

    started = time.process_time()
    loop.call_soon(tick)
    await finished
    spent = time.process_time() - started
    if consumer is not None:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
    if kind != "tick" and len(received) != items:
        raise RuntimeError(f"handoff {kind}: {len(received)} of {items} items arrived")
    return spent / items * 1e6


def handoff_rows(repeats: int, items: int = 50_000) -> list[Row]:
    loop_name = "asyncio"
    try:
        import uvloop

        loop = uvloop.new_event_loop()
        loop_name = "uvloop"
    except ImportError:
        loop = asyncio.new_event_loop()
    rows = []
    try:
        for kind, what in (
            ("tick", "loop tick"),
            ("callback", "callback"),
            ("inbox", "Inbox -> task"),
            ("queue", "asyncio.Queue -> task"),
        ):
            best = min(loop.run_until_complete(_handoff_us(kind, items)) for _ in range(repeats))
            rows.append(Row("handoff", what, loop_name, best))
    finally:
        loop.close()
    return rows


def format_rows(rows: list[Row]) -> str:
    width = max(len(r.what) for r in rows)
    signal_width = max(len(r.signal) for r in rows)
    lines = [f"{'section':<10} {'what':<{width}} {'signal':<{signal_width}} {'µs/frame':>9}"]
    for row in rows:
        lines.append(
            f"{row.section:<10} {row.what:<{width}} {row.signal:<{signal_width}} {row.us:9.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=7, help="runs per figure; best is kept")
    parser.add_argument("--seconds", type=float, default=3.0, help="audio per signal")
    parser.add_argument(
        "--no-espeak", action="store_true", help="use the synthetic voice even if espeak-ng exists"
    )
    args = parser.parse_args(argv)
    use_espeak = not args.no_espeak
    rows = vad_rows(args.seconds, args.repeats, use_espeak)
    rows += part_rows(args.seconds, args.repeats, use_espeak)
    rows += histogram_rows(args.repeats)
    rows += handoff_rows(args.repeats)
    print(format_rows(rows))


if __name__ == "__main__":
    main()
