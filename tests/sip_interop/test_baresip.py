"""baresip (Debian baresip-core 1.0) calls the gateway: UDP, TCP, TLS; PCMU and G.722.

The end-to-end check of issue 5: baresip dials an echo-agent trunk with digest
credentials, plays a speech-like WAV (voiced harmonics plus noise, so the correlation has
one sharp peak) and records what it hears (sndfile's ``dump-*-dec.wav``). What it hears
must be what it sent, delayed by the round trip: normalised cross-correlation well above
chance at one lag, which the test reports. DTMF pressed at baresip (``sndcode`` over
ctrl_tcp) reaches a recording agent once per key press.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from media.tones import noise, speech_like
from tests.sip_interop.support import (
    Baresip,
    Gateway,
    RecordingAgent,
    best_lag,
    read_wav,
    windowed_correlation,
    write_wav,
)

pytestmark = pytest.mark.slow


def speech_file(path: Path, rate: int, talk_ms: int = 3000) -> np.ndarray:
    """Half a second of silence, ``talk_ms`` of speech-like sound, then 3 s of silence
    (baresip hangs up when its source file ends: the echo needs time to come back)."""
    talk = speech_like(rate, talk_ms).astype(np.float64) + noise(rate, talk_ms, 0.05, seed=7)
    signal = np.concatenate([np.zeros(rate // 2), talk, np.zeros(rate * 3)])
    samples = np.clip(signal, -32768, 32767).astype(np.int16)
    write_wav(path, samples, rate)
    result: np.ndarray = samples.astype(np.float64)
    return result


def place_call(ua: Baresip, gw: Gateway, seconds: int = 12) -> str:
    process = ua.start(gw, seconds)
    out, _ = process.communicate(timeout=seconds + 30)
    return out


def assert_echo(ua: Baresip, sent: np.ndarray, rate: int, out: str) -> float:
    _, heard_path = ua.recordings()
    assert heard_path is not None, out[-3000:]
    heard, heard_rate = read_wav(heard_path)
    assert heard_rate == rate
    score, lag = best_lag(sent, heard, rate)
    noise_score, _ = best_lag(sent, np.random.default_rng(1).normal(0, 3000, len(heard)), rate)
    windows = windowed_correlation(sent, heard, lag, rate)
    median = float(np.median(windows)) if windows else 0.0
    delay_ms = lag * 1000 / rate
    print(
        f"echo correlation {score:.4f} (chance {noise_score:.4f}), median per 250 ms window "
        f"{median:.4f} over {len(windows)} windows, round trip {delay_ms:.0f} ms"
    )
    assert noise_score < 0.1
    assert score > 0.5, (score, median, delay_ms)  # one peak, far above chance
    assert median > 0.9, (score, median, delay_ms)  # and most of the speech came back intact
    assert len(windows) >= 10
    assert 0 < delay_ms < 1000
    return delay_ms


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_pcmu_echo_call(gw: Gateway, tmp_path: Path, transport: str) -> None:
    trunk = gw.create_trunk()
    sent = speech_file(tmp_path / "speech.wav", 8000)
    ua = Baresip(
        tmp_path / "ua",
        trunk["sip_username"],
        trunk["sip_password"],
        tmp_path / "speech.wav",
        transport=transport,
    )
    out = place_call(ua, gw)
    assert_echo(ua, sent, 8000, out)
    [call] = gw.calls(trunk_id=trunk["id"])
    assert call["status"] == "completed", call
    assert call["transport"] == transport
    assert call["codec"] == "pcmu/8000"
    assert call["disconnect_reason"] == "hangup" and call["blame"] == "caller"
    assert call["sip_status"] == 200


def test_g722_echo_call(gw: Gateway, tmp_path: Path) -> None:
    trunk = gw.create_trunk()
    sent = speech_file(tmp_path / "speech16k.wav", 16000)
    ua = Baresip(
        tmp_path / "ua",
        trunk["sip_username"],
        trunk["sip_password"],
        tmp_path / "speech16k.wav",
        codec="G722/16000/1",
        rate=16000,
    )
    out = place_call(ua, gw)
    assert_echo(ua, sent, 16000, out)
    [call] = gw.calls(trunk_id=trunk["id"])
    assert call["codec"] == "g722/16000", call
    assert call["status"] == "completed"


def test_tls_call(gw: Gateway, tmp_path: Path, tls_files: tuple[Path, Path]) -> None:
    trunk = gw.create_trunk()
    sent = speech_file(tmp_path / "speech.wav", 8000)
    ua = Baresip(
        tmp_path / "ua",
        trunk["sip_username"],
        trunk["sip_password"],
        tmp_path / "speech.wav",
        transport="tls",
        cafile=tls_files[0],
    )
    out = place_call(ua, gw)
    assert_echo(ua, sent, 8000, out)
    [call] = gw.calls(trunk_id=trunk["id"])
    assert call["transport"] == "tls", call
    assert call["status"] == "completed"


def test_dtmf_from_baresip_reaches_the_agent_once_per_key(gw: Gateway, tmp_path: Path) -> None:
    with RecordingAgent() as agent:
        trunk = gw.create_trunk(ai_provider="custom", custom_endpoint=agent.url)
        speech_file(tmp_path / "speech.wav", 8000, talk_ms=4000)
        ua = Baresip(
            tmp_path / "ua", trunk["sip_username"], trunk["sip_password"], tmp_path / "speech.wav"
        )
        process = ua.start(gw, 12)
        time.sleep(2.0)
        for digit in "15#":
            ua.command("sndcode", digit)
            time.sleep(0.7)
        out, _ = process.communicate(timeout=40)
        deadline = time.monotonic() + 5
        while not agent.stops and time.monotonic() < deadline:
            time.sleep(0.1)
    assert agent.starts, out[-3000:]
    assert agent.digits == ["1", "5", "#"], (agent.digits, out[-2000:])
    assert agent.media_received > 50
