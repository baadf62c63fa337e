"""Real peers against a real gateway process: sipp, baresip, a recording agent, helpers.

* :func:`gateway` starts ``telepath serve`` with SIP on loopback (``tests.support.live_server``)
  and returns a :class:`Gateway` that creates trunks through the REST API.
* :func:`run_sipp` runs a scenario from ``scenarios/`` and returns the process result.
* :class:`Baresip` writes a baresip config folder and places one call.
* :class:`RecordingAgent` is a customer agent speaking Telepath's agent protocol
  (docs/agent-protocol.md) on a real WebSocket: it echoes audio, records the ``start`` and
  ``dtmf`` messages it gets, and can hang up after a while (our BYE).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import threading
import time
import wave
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import requests

from tests.support.live_server import free_port, live_server

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
SIPP = shutil.which("sipp") or "/usr/bin/sipp"
BARESIP = shutil.which("baresip") or "/usr/bin/baresip"


def free_udp_port() -> int:
    """A port free for both UDP and TCP a moment ago (SIP listens on both)."""
    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free SIP port")


def free_sip_listen_port() -> int:
    """A port free for UDP and TCP whose successor is free for TCP (baresip's TLS port)."""
    for _ in range(50):
        port = free_udp_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            try:
                tcp.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


def rtp_range(size: int = 200) -> tuple[int, int]:
    """A random even-based RTP range in 40000-59999 (parallel test runs rarely collide)."""
    low = random.randrange(40000, 60000 - size, 2)
    return low, low + size - 1


@dataclass
class Gateway:
    """A running gateway with SIP, and an API session of one account."""

    url: str
    sip_port: int
    tls_port: int | None
    api: requests.Session
    process: subprocess.Popen[str]
    usernames: list[str] = field(default_factory=list)

    def create_trunk(self, **fields: Any) -> dict[str, Any]:
        """Create a trunk (echo agent unless told otherwise); returns the API's view with
        the password in ``sip_password``."""
        username = fields.pop("sip_username", None) or f"t{secrets.token_hex(5)}"
        body = {
            "name": f"interop {username}",
            "ai_provider": "echo",
            "sip_username": username,
            "sip_password": "Interop-pass-" + secrets.token_hex(6),
            **fields,
        }
        response = self.api.post(self.url + "/v1/trunks", json=body, timeout=10)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        created["sip_password"] = body["sip_password"]
        return created

    def calls(self, **params: str) -> list[dict[str, Any]]:
        response = self.api.get(self.url + "/v1/calls", params={"limit": "100", **params})
        assert response.status_code == 200, response.text
        data: list[dict[str, Any]] = response.json()["data"]
        return data

    def call_by_sip_id(
        self, sip_call_id: str, *, final: bool = True, wait: float = 10.0
    ) -> dict[str, Any]:
        """The record of the call with ``sip_call_id`` (waiting until it is final)."""
        deadline = time.monotonic() + wait
        while True:
            found = [c for c in self.calls() if c["sip_call_id"] == sip_call_id]
            if found and (not final or found[0]["end_time"] is not None):
                detail = self.api.get(self.url + f"/v1/calls/{found[0]['id']}").json()
                return dict(detail)
            if time.monotonic() > deadline:
                raise AssertionError(f"no final record for {sip_call_id}: {found}")
            time.sleep(0.2)


@contextmanager
def gateway(
    tmp: Path,
    *,
    tls: tuple[Path, Path] | None = None,
    rtp_ports: tuple[int, int] | None = None,
    extra_args: Sequence[str] = (),
) -> Iterator[Gateway]:
    """``telepath serve`` with SIP on 127.0.0.1 (UDP+TCP, TLS with ``tls=(cert, key)``);
    ``extra_args`` are further ``serve`` flags (e.g. ``--max-calls 1``)."""
    sip_port = free_udp_port()
    low, high = rtp_ports or rtp_range()
    args = [
        "--sip",
        f"127.0.0.1:{sip_port}",
        "--rtp-ports",
        f"{low}-{high}",
        "--public-address",
        "127.0.0.1",
        "--sip-domain",
        "sip.interop.test",
    ]
    tls_port = None
    if tls is not None:
        tls_port = free_port()
        args += [
            "--sip-tls",
            f"127.0.0.1:{tls_port}",
            "--tls-cert",
            str(tls[0]),
            "--tls-key",
            str(tls[1]),
        ]
    args += extra_args
    database = f"sqlite://{tmp / 'telepath.db'}"
    with live_server(database, args=args, env={"TELEPATH_LOG_LEVEL": "INFO"}) as server:
        api = server.session(server.api_key())
        yield Gateway(server.url, sip_port, tls_port, api, server.process)


class SipTarget(Protocol):
    """Anything with a SIP port on 127.0.0.1 (a :class:`Gateway`, the dashboard's server)."""

    @property
    def sip_port(self) -> int: ...


def run_sipp(
    scenario: str | Path,
    gw: SipTarget,
    *,
    service: str,
    username: str | None = None,
    password: str | None = None,
    cwd: Path,
    extra: Sequence[str] = (),
    timeout: float = 40.0,
    transport: str = "u1",
) -> subprocess.CompletedProcess[str]:
    """Run one call of ``scenario`` against the gateway; logs land in ``cwd``."""
    path = scenario if isinstance(scenario, Path) else SCENARIOS / scenario
    args = [
        SIPP,
        "-sf",
        str(path),
        f"127.0.0.1:{gw.sip_port}",
        "-s",
        service,
        "-i",
        "127.0.0.1",
        "-p",
        str(free_udp_port()),
        "-m",
        "1",
        "-t",
        transport,
        "-timeout",
        f"{int(timeout)}",
        "-timeout_error",
        "-trace_err",
        "-trace_msg",
        "-nostdin",
        *extra,
    ]
    if username is not None:
        args += ["-au", username, "-ap", password or ""]
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout + 20)


def sipp_logs(cwd: Path) -> str:
    """Everything sipp logged in ``cwd`` (for assertion messages)."""
    out = []
    for path in sorted(cwd.glob("*.log")):
        out.append(f"== {path.name}\n{path.read_text(errors='replace')[-6000:]}")
    return "\n".join(out)


def sipp_ok_or_logs(result: subprocess.CompletedProcess[str], cwd: Path) -> None:
    """Assert sipp's exit status 0, showing its logs otherwise."""
    assert result.returncode == 0, sipp_logs(cwd) + result.stdout[-2000:] + result.stderr[-2000:]


def sipp_messages(cwd: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(cwd.glob("*_messages.log")))


# -- audio -----------------------------------------------------------------------------------
def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.astype("<i2").tobytes())


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as wav:
        rate = wav.getframerate()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        if wav.getnchannels() > 1:
            data = data[:: wav.getnchannels()]
    return data.astype(np.float64), rate


def best_lag(
    sent: np.ndarray, heard: np.ndarray, rate: int, max_lag_s: float = 2.0
) -> tuple[float, int]:
    """The normalised cross-correlation peak of ``heard`` against ``sent`` and its lag (samples).

    Computed over the overlapping part for each lag in [0, max_lag]; both signals are
    mean-removed. 1.0 is a perfect (scaled) copy, ~0 unrelated signals.
    """
    best, best_lag_samples = -1.0, 0
    max_lag = int(max_lag_s * rate)
    a = sent - sent.mean()
    spectrum_len = 1 << int(np.ceil(np.log2(len(a) + len(heard))))
    b = heard - heard.mean()
    corr = np.fft.irfft(
        np.fft.rfft(b, spectrum_len) * np.conj(np.fft.rfft(a, spectrum_len)), spectrum_len
    )
    for lag in range(0, min(max_lag, len(b) - rate // 2)):
        value = corr[lag]
        n = min(len(a), len(b) - lag)
        if n <= rate // 2:
            break
        energy = np.sqrt(np.sum(a[:n] ** 2) * np.sum(b[lag : lag + n] ** 2))
        if energy <= 0:
            continue
        score = value / energy
        if score > best:
            best, best_lag_samples = float(score), lag
    return best, best_lag_samples


def windowed_correlation(
    sent: np.ndarray, heard: np.ndarray, lag: int, rate: int, window_ms: int = 250
) -> list[float]:
    """Normalised correlation of ``heard`` (shifted by ``lag``) with ``sent`` per window,
    over the windows where ``sent`` is not silent: a few concealed packets under load
    spoil a window or two, not the verdict."""
    size = rate * window_ms // 1000
    out = []
    for start in range(0, len(sent) - size, size):
        a = sent[start : start + size]
        b = heard[start + lag : start + lag + size]
        if len(b) < size or np.sqrt(np.mean(a**2)) < 300:
            continue
        a, b = a - a.mean(), b - b.mean()
        energy = np.sqrt(np.sum(a**2) * np.sum(b**2))
        out.append(float(np.sum(a * b) / energy) if energy > 0 else 0.0)
    return out


# -- baresip ---------------------------------------------------------------------------------
@dataclass
class Baresip:
    """One baresip UA in its own config folder (see /work/shared/interop/PEERS.md)."""

    folder: Path
    username: str
    password: str
    wav: Path
    codec: str = "PCMU/8000/1"
    rate: int = 8000
    transport: str = "udp"
    cafile: Path | None = None
    ctrl_port: int = field(default_factory=free_port)

    def write(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        low, high = rtp_range(20)
        sip_port = free_sip_listen_port()
        lines = [
            f"sip_listen 127.0.0.1:{sip_port}",
            f"rtp_ports {low}-{high}",
            f"audio_source aufile,{self.wav}",
            "audio_player aufile,/dev/null",
            f"ausrc_srate {self.rate}",
            f"auplay_srate {self.rate}",
            "module_path /usr/lib/baresip/modules",
            "module stdio.so",
            "module g711.so",
            "module g722.so",
            "module aufile.so",
            "module sndfile.so",
            "module_app account.so",
            "module_app menu.so",
            "module_app ctrl_tcp.so",
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}",
            f"snd_path {self.folder}",
        ]
        if self.cafile is not None:
            lines.append(f"sip_cafile {self.cafile}")
        (self.folder / "config").write_text("\n".join(lines) + "\n")
        params = ""
        if self.transport != "udp":
            params = f";transport={self.transport}"
        account = (
            f"<sip:{self.username}@127.0.0.1{params}>;auth_user={self.username};"
            f"auth_pass={self.password};audio_codecs={self.codec};answermode=manual;regint=0\n"
        )
        (self.folder / "accounts").write_text(account)

    def dial_uri(self, gw: Gateway) -> str:
        if self.transport == "tls":
            return f"sip:{self.username}@127.0.0.1:{gw.tls_port};transport=tls"
        suffix = "" if self.transport == "udp" else f";transport={self.transport}"
        return f"sip:{self.username}@127.0.0.1:{gw.sip_port}{suffix}"

    def start(self, gw: Gateway, seconds: int) -> subprocess.Popen[str]:
        self.write()
        return subprocess.Popen(
            [
                BARESIP,
                "-s",
                "-f",
                str(self.folder),
                "-e",
                f"/dial {self.dial_uri(gw)}",
                "-t",
                str(seconds),
            ],
            cwd=self.folder,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def command(self, command: str, params: str = "") -> None:
        """Send a ctrl_tcp command (netstring-framed JSON) to the running UA."""
        body = json.dumps({"command": command, "params": params, "token": "t"}).encode()
        with socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=5) as sock:
            sock.sendall(str(len(body)).encode() + b":" + body + b",")
            with suppress(OSError):
                sock.recv(4096)

    def recordings(self) -> tuple[Path | None, Path | None]:
        """(what it sent, what it received): sndfile's dump-*-enc.wav / dump-*-dec.wav."""
        enc = sorted(self.folder.glob("dump-*-enc.wav"))
        dec = sorted(self.folder.glob("dump-*-dec.wav"))
        return (enc[-1] if enc else None, dec[-1] if dec else None)


# -- a customer agent that records what it gets ---------------------------------------------
class RecordingAgent:
    """A ``telepath``-dialect agent on ws://127.0.0.1:PORT/ in a background thread.

    Echoes caller audio; records every ``start`` and ``dtmf`` message; with
    ``hangup_after`` it asks the gateway to hang up that many seconds after ``start``;
    ``connect_delay`` holds the WebSocket handshake back (the call keeps ringing).
    """

    def __init__(self, *, hangup_after: float | None = None, connect_delay: float = 0.0) -> None:
        self.hangup_after = hangup_after
        self.connect_delay = connect_delay
        self.starts: list[dict[str, Any]] = []
        self.digits: list[str] = []
        self.media_received = 0
        self.stops: list[dict[str, Any]] = []
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def __enter__(self) -> RecordingAgent:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("agent did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        from websockets.asyncio.server import serve

        self._stop = self._loop.create_future()

        async def slow_handshake(connection: Any, request: Any) -> None:
            # Keeps the agent "not ready" for a while: the call rings meanwhile.
            await asyncio.sleep(self.connect_delay)

        async with serve(self._call, "127.0.0.1", self.port, process_request=slow_handshake):
            self._ready.set()
            await self._stop

    async def _call(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            start = json.loads(await ws.recv())
            self.starts.append(start)
            hangup_task = None
            if self.hangup_after is not None:

                async def hangup() -> None:
                    await asyncio.sleep(self.hangup_after or 0)
                    await ws.send(json.dumps({"type": "hangup", "reason": "agent is done"}))

                hangup_task = asyncio.ensure_future(hangup())
            async for frame in ws:
                if isinstance(frame, bytes):
                    await ws.send(frame)
                    continue
                message = json.loads(frame)
                kind = message.get("type")
                if kind == "media":
                    self.media_received += 1
                    await ws.send(json.dumps({"type": "media", "payload": message["payload"]}))
                elif kind == "dtmf":
                    self.digits.append(message["digit"])
                elif kind == "stop":
                    self.stops.append(message)
                    break
            if hangup_task is not None:
                hangup_task.cancel()
        except ConnectionClosed:
            pass


def tls_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost (made with ``cryptography``)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_path, 0o600)
    return cert_path, key_path


class LoopbackCapture:
    """Counts UDP datagrams on the loopback interface by destination (AF_PACKET).

    The test runs as root here; it proves where the gateway's RTP actually went without
    touching sipp's sockets.
    """

    def __init__(
        self,
        destinations: frozenset[tuple[str, int]] | set[tuple[str, int]] = frozenset(),
        *,
        from_port: int | None = None,
    ) -> None:
        self.destinations = destinations
        self.from_port = from_port
        self.payloads: list[bytes] = []  # datagrams sent from ``from_port``, in order
        self._lock = threading.Lock()
        self.counts: dict[tuple[str, int], int] = {d: 0 for d in destinations}
        self.sources: dict[tuple[str, int], set[tuple[str, int]]] = {d: set() for d in destinations}
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.2)
        self._running = True
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LoopbackCapture:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._running = False
        self._thread.join(5)
        self._sock.close()

    def take(self) -> list[bytes]:
        """The datagrams captured from ``from_port`` so far (and forget them)."""
        with self._lock:
            out, self.payloads = self.payloads, []
        return out

    def _run(self) -> None:
        while self._running:
            try:
                frame, address = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if address[2] == socket.PACKET_OUTGOING:
                continue  # loopback shows each packet twice: count it once
            ip = frame[14:]
            if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
                continue
            header = (ip[0] & 0x0F) * 4
            src_port = int.from_bytes(ip[header : header + 2], "big")
            dst_port = int.from_bytes(ip[header + 2 : header + 4], "big")
            if src_port == self.from_port:
                length = int.from_bytes(ip[header + 4 : header + 6], "big")
                with self._lock:
                    self.payloads.append(bytes(ip[header + 8 : header + length]))
            destination = (socket.inet_ntoa(ip[16:20]), dst_port)
            if destination in self.destinations:
                self.counts[destination] += 1
                self.sources[destination].add((socket.inet_ntoa(ip[12:16]), src_port))


def sip_call_id(cwd: Path) -> str:
    """The Call-ID of the (first) call sipp logged in ``cwd``."""
    for line in sipp_messages(cwd).splitlines():
        if line.startswith("Call-ID:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no Call-ID in sipp's log")


def sipp_pcap_call(
    gw: Gateway, trunk: Mapping[str, Any], cwd: Path, *, media_port: int, decoy_ip: str
) -> None:
    """One authenticated sipp call that plays G.711 and RFC 2833 pcaps from
    ``127.0.0.1:media_port`` while its SDP names ``decoy_ip`` (uac_auth_rtp_latching.xml);
    fails the test with sipp's logs unless the call completed."""
    user, password = trunk["sip_username"], trunk["sip_password"]
    result = run_sipp(
        "uac_auth_rtp_latching.xml",
        gw,
        service=user,
        username=user,
        password=password,
        cwd=cwd,
        extra=["-mp", str(media_port), "-set", "decoy_ip", decoy_ip],
    )
    sipp_ok_or_logs(result, cwd)
