"""Voice-activity detection on telephone-like signals: speech, silence, hiss, hum."""

from __future__ import annotations

import numpy as np
import pytest

from media.errors import FormatMismatchError, PayloadError, UnsupportedFormatError
from media.frames import L16_8K, L16_16K, PCMU, AudioFrame
from media.resample import samples_to_pcm
from media.tones import noise, sine, speech_like
from media.vad import SpeechStarted, SpeechStopped, VadEvent, VoiceActivityDetector


def detect(rate: int, signal: np.ndarray, chunk_ms: int = 20, **options: int) -> list[VadEvent]:
    vad = VoiceActivityDetector(rate, **options)
    pcm = samples_to_pcm(signal)
    step = rate * chunk_ms // 1000 * 2
    events: list[VadEvent] = []
    for i in range(0, len(pcm), step):
        events += vad.feed(pcm[i : i + step])
    return events


def silence(rate: int, ms: int) -> np.ndarray:
    return np.zeros(rate * ms // 1000, dtype=np.int16)


def mix(*parts: np.ndarray) -> np.ndarray:
    return np.concatenate(parts)


def assert_alternates(events: list[VadEvent]) -> None:
    kinds = [type(e) for e in events]
    assert kinds == [SpeechStarted, SpeechStopped] * (len(kinds) // 2)
    times = [e.at_ms for e in events]
    assert times == sorted(times)


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
def test_two_utterances_between_silences(rate: int) -> None:
    voice = speech_like(rate, 1500)
    events = detect(
        rate, mix(silence(rate, 1000), voice, silence(rate, 1000), voice, silence(rate, 1000))
    )
    assert_alternates(events)
    assert len(events) == 4
    starts = [e.at_ms for e in events if isinstance(e, SpeechStarted)]
    stops = [e.at_ms for e in events if isinstance(e, SpeechStopped)]
    assert starts == [pytest.approx(1000, abs=60), pytest.approx(3500, abs=60)]
    assert stops == [pytest.approx(2500, abs=80), pytest.approx(5000, abs=80)]


def test_pauses_inside_a_turn_do_not_flap() -> None:
    """Syllables dip every 250 ms and a 200 ms pause is shorter than stop_ms: one turn."""
    rate = 8000
    voice = speech_like(rate, 1000, pitch=190.0)
    events = detect(
        rate, mix(silence(rate, 500), voice, silence(rate, 200), voice, silence(rate, 1000))
    )
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped]
    assert events[0].at_ms == pytest.approx(500, abs=60)
    assert events[1].at_ms == pytest.approx(2700, abs=80)


def test_a_pause_longer_than_stop_ms_ends_the_turn() -> None:
    rate = 8000
    voice = speech_like(rate, 1000)
    events = detect(rate, mix(voice, silence(rate, 800), voice, silence(rate, 800)), stop_ms=300)
    assert_alternates(events)
    assert len(events) == 4


@pytest.mark.parametrize(
    ("name", "signal"),
    [
        ("digital silence", silence(8000, 3000)),
        ("line hiss at -50 dBFS", noise(8000, 3000, 0.003)),
        ("loud hiss at -30 dBFS", noise(8000, 3000, 0.03)),
        ("1 kHz tone", sine(8000, 1000, 3000, 0.3)),
        ("440 Hz dial tone", sine(8000, 440, 3000, 0.3)),
    ],
)
def test_steady_sounds_are_not_speech(name: str, signal: np.ndarray) -> None:
    """webrtcvad alone calls hiss and tones speech in modes 0-2; the energy gate must not."""
    assert detect(8000, signal) == [], name


def test_speech_in_line_noise_is_found() -> None:
    rate = 16000
    hiss = noise(rate, 2000, 0.01)
    voice = (speech_like(rate, 1500).astype(np.int32) + noise(rate, 1500, 0.01, seed=1)).astype(
        np.int16
    )
    events = detect(rate, mix(hiss, voice, hiss))
    assert_alternates(events)
    assert len(events) == 2
    assert events[0].at_ms == pytest.approx(2000, abs=100)


def test_events_do_not_depend_on_chunk_size() -> None:
    rate = 16000
    signal = mix(silence(rate, 700), speech_like(rate, 900), silence(rate, 900))
    reference = detect(rate, signal, chunk_ms=20)
    assert len(reference) == 2
    for chunk_ms in (5, 30, 250, 2500):
        assert detect(rate, signal, chunk_ms=chunk_ms) == reference


def test_origin_and_reset() -> None:
    rate = 8000
    pcm = samples_to_pcm(mix(silence(rate, 500), speech_like(rate, 800), silence(rate, 800)))
    vad = VoiceActivityDetector(rate, origin_ms=10_000)
    first = vad.feed(pcm)
    assert isinstance(first[0], SpeechStarted)
    assert first[0].at_ms == pytest.approx(10_500, abs=60)
    assert vad.position_ms == 10_000 + 2100
    vad.feed(samples_to_pcm(speech_like(rate, 300)))
    vad.reset(origin_ms=0)
    assert not vad.speaking
    assert vad.feed(pcm) == [
        SpeechStarted(first[0].at_ms - 10_000),
        SpeechStopped(first[1].at_ms - 10_000),
    ]


def test_feed_frame_checks_the_format() -> None:
    vad = VoiceActivityDetector(8000)
    assert vad.feed_frame(AudioFrame(L16_8K, bytes(320))) == []
    with pytest.raises(FormatMismatchError):
        vad.feed_frame(AudioFrame(L16_16K, bytes(640)))
    with pytest.raises(FormatMismatchError):
        vad.feed_frame(AudioFrame(PCMU, bytes(160)))


def test_odd_length_pcm_is_a_payload_error() -> None:
    with pytest.raises(PayloadError):
        VoiceActivityDetector(8000).feed(b"\x00\x00\x00")
    assert VoiceActivityDetector(8000).feed(b"") == []


@pytest.mark.parametrize(
    "options",
    [{"aggressiveness": 4}, {"aggressiveness": -1}, {"start_ms": 0}, {"stop_ms": 10}],
)
def test_bad_options_are_refused(options: dict[str, int]) -> None:
    with pytest.raises(UnsupportedFormatError):
        VoiceActivityDetector(8000, **options)
    with pytest.raises(UnsupportedFormatError):
        VoiceActivityDetector(0)


def test_quiet_speech_is_found_at_the_default_aggressiveness() -> None:
    """Why the default is mode 2: synthetic vowels peaking at -34 dBFS open one full turn;
    mode 3 drops them within the first syllables."""
    rate = 8000
    quiet = mix(silence(rate, 1000), speech_like(rate, 1500, amplitude=0.02), silence(rate, 1000))
    events = detect(rate, quiet)
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped]
    assert events[1].at_ms - events[0].at_ms > 1300
    strict = detect(rate, quiet, aggressiveness=3)
    assert strict[1].at_ms - strict[0].at_ms < 500
