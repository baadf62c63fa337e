"""The one typed settings object, built from command-line flags and ``TELEPATH_*`` variables.

Nothing else in Telepath reads the environment: every component gets what it needs from
``Settings``. A flag wins over its environment variable, which wins over the default.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from gateway.runtime import EVENT_LOOP_SETTINGS, EventLoopSetting


class SettingsError(ValueError):
    """A flag or environment variable has a value Telepath cannot use."""


@dataclass(frozen=True, slots=True)
class HostPort:
    """An address to listen on."""

    host: str
    port: int

    @classmethod
    def parse(cls, value: str, *, name: str) -> HostPort:
        """Parse ``HOST:PORT`` (``[::1]:5060`` for IPv6)."""
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise SettingsError(f"{name}: expected HOST:PORT, got {value!r}")
        return cls(host.strip("[]") or "0.0.0.0", int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable about one Telepath process."""

    http: HostPort = HostPort("0.0.0.0", 8080)
    http_tls: bool = False
    sip: HostPort = HostPort("0.0.0.0", 5060)
    sip_tls: HostPort | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    rtp_ports: tuple[int, int] = (10000, 20000)
    public_address: str | None = None
    sip_domain: str = "sip.telepath.local"
    public_url: str | None = None
    media_listen: HostPort | None = None
    media_url: str | None = None
    database_url: str = "sqlite://./telepath.db"
    redis_url: str | None = None
    demo: bool = False
    require_https: bool = False
    trusted_proxies: tuple[str, ...] = ()
    sip_trusted_proxies: tuple[str, ...] = ()
    digest_algorithms: tuple[str, ...] = ("MD5", "SHA-256")
    auth_failure_limit: int = 20
    auth_block_seconds: float = 300.0
    secret_key: str | None = None
    secret_key_file: Path | None = None
    rate_limit_per_minute: int = 6000
    drain_timeout: float = 30.0
    overload_lag_ms: float = 50.0
    jitter_buffer: bool = False
    validate_provider_credentials: bool = False
    openai_api_url: str = "https://api.openai.com"
    openai_realtime_url: str = "wss://api.openai.com/v1/realtime"
    elevenlabs_api_url: str = "https://api.elevenlabs.io"
    elevenlabs_ws_url: str = "wss://api.elevenlabs.io/v1/convai/conversation"
    twilio_api_url: str = "https://api.twilio.com"
    telnyx_api_url: str = "https://api.telnyx.com"
    agent_ready_timeout: float = 5.0
    max_calls: int = 1000
    log_level: str = "INFO"
    log_json: bool = True
    event_loop: EventLoopSetting = "auto"
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def key_file(self) -> Path | None:
        """Where the master key lives on the embedded default: beside the SQLite file."""
        if self.secret_key_file is not None:
            return self.secret_key_file
        if self.database_url.startswith("sqlite://"):
            path = self.database_url[len("sqlite://") :]
            if path and path != ":memory:":
                return Path(path).with_suffix(".key")
        return None

    @property
    def http_base_url(self) -> str:
        """How carriers and browsers reach our HTTP(S)/WS(S): ``--public-url`` or the listener."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.public_address or (
            "127.0.0.1" if self.http.host in ("0.0.0.0", "::") else self.http.host
        )
        scheme = "https" if self.http_tls else "http"
        return f"{scheme}://{host}:{self.http.port}"

    @property
    def media_stream_base_url(self) -> str:
        """The public origin carriers are told to stream to, in ``https://`` form.

        ``--media-url`` when set (``wss://`` written as ``https://``: the builders of the
        stream URL and of Twilio's signed URL turn it back), else ``http_base_url``: a
        proxy in front then routes ``/v1/media/`` to ``--media-listen`` if there is one.
        """
        if self.media_url:
            url = self.media_url.rstrip("/")
            return "https://" + url[len("wss://") :] if url.startswith("wss://") else url
        return self.http_base_url

    def is_trusted_sip_proxy(self, address: str) -> bool:
        """Whether SIP requests from ``address`` come through a proxy we trust."""
        return _in_networks(address, self.sip_trusted_proxies)

    def is_trusted_proxy(self, address: str) -> bool:
        """Whether ``X-Forwarded-Proto`` from ``address`` may be believed."""
        return _in_networks(address, self.trusted_proxies)


def _in_networks(address: str, networks: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in networks)


# flag name -> (environment variable, help text). The order is the --help order.
_SERVE_FLAGS: dict[str, tuple[str, str]] = {
    "http": ("TELEPATH_HTTP", "HTTP(S)/WS(S) listener, HOST:PORT (default 0.0.0.0:8080)"),
    "sip": ("TELEPATH_SIP", "SIP over UDP and TCP, HOST:PORT (default 0.0.0.0:5060)"),
    "sip_tls": ("TELEPATH_SIP_TLS", "SIP over TLS, HOST:PORT (needs --tls-cert/--tls-key)"),
    "tls_cert": (
        "TELEPATH_TLS_CERT",
        "PEM certificate for SIP TLS and, with --http-tls, HTTPS/WSS",
    ),
    "tls_key": ("TELEPATH_TLS_KEY", "PEM private key for --tls-cert"),
    "rtp_ports": ("TELEPATH_RTP_PORTS", "RTP port range LO-HI (default 10000-20000)"),
    "public_address": ("TELEPATH_PUBLIC_ADDRESS", "IP address advertised in SDP and Contact"),
    "sip_domain": (
        "TELEPATH_SIP_DOMAIN",
        "host of origination URIs and the digest realm (default sip.telepath.local)",
    ),
    "public_url": (
        "TELEPATH_PUBLIC_URL",
        "public base URL of the HTTPS/WSS listener, e.g. https://telepath.example.com",
    ),
    "media_listen": (
        "TELEPATH_MEDIA_LISTEN",
        "carrier media-stream WebSockets on a listener of their own, HOST:PORT (optional; "
        "about 2.5 times less CPU per stream than on --http, see docs/media-listener.md)",
    ),
    "media_url": (
        "TELEPATH_MEDIA_URL",
        "public https:// or wss:// origin carriers stream to (default --public-url), "
        "e.g. wss://telepath.example.com:8443 in front of --media-listen",
    ),
    "database": (
        "TELEPATH_DATABASE_URL",
        "database URL: sqlite://./telepath.db (default) or postgres://user:pass@host/db",
    ),
    "redis": ("TELEPATH_REDIS_URL", "Redis URL for state shared between nodes (optional)"),
    "drain_timeout": (
        "TELEPATH_DRAIN_TIMEOUT",
        "on SIGTERM, seconds running calls may go on before they end (default 30)",
    ),
    "overload_lag_ms": (
        "TELEPATH_OVERLOAD_LAG_MS",
        "new calls (SIP INVITEs, carrier voice webhooks) get 503 while the event loop runs "
        "this many ms late on average (default 50; 0: never)",
    ),
    "trusted_proxies": (
        "TELEPATH_TRUSTED_PROXIES",
        "comma-separated CIDRs whose X-Forwarded-Proto is believed",
    ),
    "sip_trusted_proxies": (
        "TELEPATH_SIP_TRUSTED_PROXIES",
        "comma-separated CIDRs of SIP proxies in front (e.g. Kamailio) whose Via names the caller",
    ),
    "digest_algorithms": (
        "TELEPATH_DIGEST_ALGORITHMS",
        "digest challenges in order: MD5,SHA-256 (default; many carriers take the first), SHA-256,MD5 or SHA-256",
    ),
    "auth_failure_limit": (
        "TELEPATH_AUTH_FAILURE_LIMIT",
        "failed digest attempts a minute from one address before it is blocked (default 20)",
    ),
    "rate_limit": ("TELEPATH_RATE_LIMIT", "API requests per minute per key (default 6000)"),
    "max_calls": ("TELEPATH_MAX_CALLS", "SIP calls at once; more get 503 (default 1000)"),
    "log_level": ("TELEPATH_LOG_LEVEL", "DEBUG, INFO (default), WARNING, ERROR"),
    "event_loop": (
        "TELEPATH_EVENT_LOOP",
        "auto (default: uvloop if installed, else asyncio), uvloop or asyncio",
    ),
}
_SERVE_SWITCHES: dict[str, tuple[str, str]] = {
    "http_tls": ("TELEPATH_HTTP_TLS", "serve HTTPS/WSS on --http with --tls-cert/--tls-key"),
    "demo": ("TELEPATH_DEMO", "create a demo account, API key and echo trunk, and print them"),
    "require_https": ("TELEPATH_REQUIRE_HTTPS", "refuse API requests that came over plain HTTP"),
    "jitter_buffer": (
        "TELEPATH_JITTER_BUFFER",
        "hold SIP callers' audio 20-40 ms in an adaptive jitter buffer instead of forwarding "
        "each packet to the agent as it arrives",
    ),
}
# Settings with no flag, from the environment only.
_ENV_ONLY = {
    "TELEPATH_AUTH_BLOCK_SECONDS": "auth_block_seconds",
    "TELEPATH_SECRET_KEY": "secret_key",
    "TELEPATH_SECRET_KEY_FILE": "secret_key_file",
    "TELEPATH_VALIDATE_PROVIDER_CREDENTIALS": "validate_provider_credentials",
    "TELEPATH_OPENAI_API_URL": "openai_api_url",
    "TELEPATH_OPENAI_REALTIME_URL": "openai_realtime_url",
    "TELEPATH_ELEVENLABS_API_URL": "elevenlabs_api_url",
    "TELEPATH_ELEVENLABS_WS_URL": "elevenlabs_ws_url",
    "TELEPATH_TWILIO_API_URL": "twilio_api_url",
    "TELEPATH_TELNYX_API_URL": "telnyx_api_url",
    "TELEPATH_AGENT_READY_TIMEOUT": "agent_ready_timeout",
    "TELEPATH_LOG_JSON": "log_json",
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``telepath serve``'s flags (each also read from its environment variable)."""
    for name, (env, text) in _SERVE_FLAGS.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(
            flag, dest=name, default=None, metavar=name.upper(), help=f"{text} [{env}]"
        )
    for name, (env, text) in _SERVE_SWITCHES.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(
            flag, dest=name, action="store_true", default=None, help=f"{text} [{env}]"
        )


def add_database_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--database`` to a subcommand that touches data."""
    env, text = _SERVE_FLAGS["database"]
    parser.add_argument(
        "--database", dest="database", default=None, metavar="URL", help=f"{text} [{env}]"
    )


def _bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise SettingsError(f"{name}: expected true or false, got {value!r}")


def _port_range(value: str, name: str) -> tuple[int, int]:
    lo, sep, hi = value.partition("-")
    if not sep or not lo.strip().isdigit() or not hi.strip().isdigit():
        raise SettingsError(f"{name}: expected LO-HI, got {value!r}")
    low, high = int(lo), int(hi)
    if not 1024 <= low < high <= 65535 or high - low < 3:
        raise SettingsError(f"{name}: need 1024 <= LO < HI <= 65535 with room for a port pair")
    return low, high


def _url(value: str, name: str, schemes: Sequence[str]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        raise SettingsError(f"{name}: expected a {'/'.join(schemes)} URL, got {value!r}")
    return value.rstrip("/")


# Numeric settings: allowed ranges (seconds) and upper bounds (counts, from 1).
_SECONDS: dict[str, tuple[float, float]] = {
    "agent_ready_timeout": (0.1, 60),
    "auth_block_seconds": (1, 86_400),
    "drain_timeout": (0, 86_400),
}
_COUNTS: dict[str, int] = {
    "rate_limit_per_minute": 1_000_000_000,
    "auth_failure_limit": 100_000,
    "max_calls": 1_000_000,
}


def _convert(attr: str, value: str, name: str) -> object:
    """Turn one raw string into the typed value of ``Settings.attr``."""
    if attr in ("http", "sip", "sip_tls", "media_listen"):
        return HostPort.parse(value, name=name)
    if attr in ("tls_cert", "tls_key", "secret_key_file"):
        return Path(value)
    if attr == "rtp_ports":
        return _port_range(value, name)
    if attr in (
        "http_tls",
        "demo",
        "require_https",
        "jitter_buffer",
        "validate_provider_credentials",
        "log_json",
    ):
        return _bool(value, name)
    if attr in ("trusted_proxies", "sip_trusted_proxies"):
        nets = tuple(v.strip() for v in value.split(",") if v.strip())
        for net in nets:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise SettingsError(f"{name}: {net!r} is not a CIDR") from exc
        return nets
    if attr in _SECONDS:
        low, high = _SECONDS[attr]
        try:
            seconds = float(value)
        except ValueError as exc:
            raise SettingsError(f"{name}: expected seconds") from exc
        if not low <= seconds <= high:
            raise SettingsError(f"{name}: expected {low:g} to {high:g} seconds")
        return seconds
    if attr in _COUNTS:
        high_count = _COUNTS[attr]
        if not value.isdigit() or not 1 <= int(value) <= high_count:
            raise SettingsError(f"{name}: expected a positive integer up to {high_count}")
        return int(value)
    if attr == "digest_algorithms":
        names = tuple(v.strip().upper() for v in value.split(",") if v.strip())
        if not names or len(set(names)) != len(names) or not set(names) <= {"MD5", "SHA-256"}:
            raise SettingsError(f"{name}: a list of MD5 and/or SHA-256, e.g. MD5,SHA-256")
        return names
    if attr in ("openai_api_url", "elevenlabs_api_url", "twilio_api_url", "telnyx_api_url"):
        return _url(value, name, ("http", "https"))
    if attr in ("openai_realtime_url", "elevenlabs_ws_url"):
        return _url(value, name, ("ws", "wss"))
    if attr == "database_url":
        if not value.startswith(("sqlite://", "postgres://", "postgresql://")):
            raise SettingsError(
                f"{name}: use sqlite://PATH or postgres://user:pass@host/db, got {value[:40]!r}"
            )
        return value
    if attr == "redis_url":
        return _url(value, name, ("redis", "rediss", "unix"))
    if attr == "public_url":
        return _url(value, name, ("http", "https"))
    if attr == "media_url":
        # Carriers stream over TLS only (TW-WSM, TX-MS): no plain ws:// here.
        return _url(value, name, ("https", "wss"))
    if attr == "public_address":
        try:
            return str(ipaddress.ip_address(value))
        except ValueError as exc:
            raise SettingsError(f"{name}: {value!r} is not an IP address") from exc
    if attr == "log_level":
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError(f"{name}: unknown level {value!r}")
        return value.upper()
    if attr == "overload_lag_ms":
        try:
            ms = float(value)
        except ValueError as exc:
            raise SettingsError(f"{name}: expected milliseconds") from exc
        if not 0 <= ms <= 60_000:
            raise SettingsError(f"{name}: expected 0 to 60000 ms")
        return ms
    if attr == "event_loop":
        if value.lower() not in EVENT_LOOP_SETTINGS:
            raise SettingsError(f"{name}: expected auto, uvloop or asyncio, got {value!r}")
        return value.lower()
    return value


_FLAG_TO_ATTR = {
    "database": "database_url",
    "redis": "redis_url",
    "rate_limit": "rate_limit_per_minute",
}


def load_settings(
    args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build ``Settings`` from parsed flags and the environment (``os.environ`` by default)."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    known = {f.name for f in fields(Settings)}
    for flag, (var, _) in {**_SERVE_FLAGS, **_SERVE_SWITCHES}.items():
        attr = _FLAG_TO_ATTR.get(flag, flag)
        raw = getattr(args, flag, None) if args is not None else None
        if raw is True:  # a switch given on the command line
            values[attr] = True
            continue
        if raw is None:
            raw = env.get(var)
        if raw is None:
            continue
        values[attr] = _convert(
            attr,
            str(raw),
            f"--{flag.replace('_', '-')}" if getattr(args, flag, None) is not None else var,
        )
    for var, attr in _ENV_ONLY.items():
        if var in env and attr in known:
            values[attr] = _convert(attr, env[var], var)
    settings = replace(Settings(), **cast(dict[str, Any], values))  # _convert typed each value
    if (settings.sip_tls or settings.http_tls) and not (settings.tls_cert and settings.tls_key):
        raise SettingsError("--sip-tls and --http-tls need --tls-cert and --tls-key")
    return settings
