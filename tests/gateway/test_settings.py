"""The settings object: flags over environment over defaults, and clear errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from gateway.settings import HostPort, Settings, SettingsError, add_serve_arguments, load_settings


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults() -> None:
    settings = load_settings(_args(), environ={})
    assert settings == Settings()
    assert settings.http == HostPort("0.0.0.0", 8080)
    assert settings.sip == HostPort("0.0.0.0", 5060)
    assert settings.rtp_ports == (10000, 20000)
    assert settings.database_url == "sqlite://./telepath.db"
    assert settings.key_file == Path("./telepath.key")


def test_environment_then_flags_win() -> None:
    env = {
        "TELEPATH_HTTP": "127.0.0.1:9000",
        "TELEPATH_SIP_DOMAIN": "sip.example.com",
        "TELEPATH_DEMO": "true",
        "TELEPATH_RATE_LIMIT": "10",
        "TELEPATH_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1",
        "TELEPATH_OPENAI_REALTIME_URL": "ws://127.0.0.1:1/v1/realtime",
    }
    settings = load_settings(
        _args("--http", "127.0.0.1:9100", "--rtp-ports", "30000-30100"), environ=env
    )
    assert settings.http == HostPort("127.0.0.1", 9100)
    assert settings.sip_domain == "sip.example.com"
    assert settings.demo is True
    assert settings.rate_limit_per_minute == 10
    assert settings.rtp_ports == (30000, 30100)
    assert settings.trusted_proxies == ("10.0.0.0/8", "192.0.2.1")
    assert settings.is_trusted_proxy("10.1.2.3") and not settings.is_trusted_proxy("192.0.2.2")
    assert settings.openai_realtime_url == "ws://127.0.0.1:1/v1/realtime"


@pytest.mark.parametrize(
    ("argv", "env", "text"),
    [
        (("--http", "nope"), {}, "HOST:PORT"),
        (("--rtp-ports", "20000-10000"), {}, "LO < HI"),
        (("--public-address", "example.com"), {}, "not an IP"),
        ((), {"TELEPATH_DEMO": "maybe"}, "true or false"),
        ((), {"TELEPATH_REDIS_URL": "http://x"}, "redis"),
        (("--sip-tls", "0.0.0.0:5061"), {}, "--tls-cert"),
        ((), {"TELEPATH_AGENT_READY_TIMEOUT": "600"}, "0.1 to 60"),
        (("--digest-algorithms", "SHA-512"), {}, "MD5 and/or SHA-256"),
        (("--digest-algorithms", "MD5,MD5"), {}, "MD5 and/or SHA-256"),
        (("--auth-failure-limit", "0"), {}, "positive integer"),
        ((), {"TELEPATH_AUTH_BLOCK_SECONDS": "0"}, "1 to 86400"),
        (("--event-loop", "trio"), {}, "auto, uvloop or asyncio"),
        ((), {"TELEPATH_EVENT_LOOP": "tokio"}, "TELEPATH_EVENT_LOOP: expected auto"),
        (("--media-listen", "8081"), {}, "HOST:PORT"),
        # Carriers stream over TLS only: a plain ws:// or http:// origin is refused.
        (("--media-url", "ws://media.example.com"), {}, "https/wss URL"),
        ((), {"TELEPATH_MEDIA_URL": "http://media.example.com"}, "TELEPATH_MEDIA_URL"),
    ],
)
def test_bad_values_are_clear_errors(argv: tuple[str, ...], env: dict[str, str], text: str) -> None:
    with pytest.raises(SettingsError, match=text):
        load_settings(_args(*argv), environ=env)


def test_postgres_has_no_key_file_and_public_url_wins() -> None:
    settings = load_settings(
        _args("--database", "postgres://u@h/db", "--public-url", "https://t.example.com/"),
        environ={},
    )
    assert settings.key_file is None
    assert settings.http_base_url == "https://t.example.com"


def test_event_loop_is_auto_by_default_and_the_flag_wins() -> None:
    assert load_settings(_args(), environ={}).event_loop == "auto"
    from_env = load_settings(_args(), environ={"TELEPATH_EVENT_LOOP": "AsyncIO"})
    assert from_env.event_loop == "asyncio"
    flag = load_settings(
        _args("--event-loop", "uvloop"), environ={"TELEPATH_EVENT_LOOP": "asyncio"}
    )
    assert flag.event_loop == "uvloop"


def test_media_streams_go_to_the_media_url_else_the_public_url() -> None:
    default = load_settings(_args("--public-url", "https://t.example.com"), environ={})
    assert default.media_listen is None
    assert default.media_stream_base_url == "https://t.example.com"
    own = load_settings(
        _args("--media-listen", "0.0.0.0:8081", "--public-url", "https://t.example.com"),
        environ={"TELEPATH_MEDIA_URL": "wss://media.example.com:8443/"},
    )
    assert own.media_listen == HostPort("0.0.0.0", 8081)
    # The https:// form of the origin: the stream URL and Twilio's signed URL use wss://.
    assert own.media_stream_base_url == "https://media.example.com:8443"
    assert own.http_base_url == "https://t.example.com"  # the API and webhooks stay there
    https = load_settings(_args("--media-url", "https://m.example.com/prefix"), environ={})
    assert https.media_stream_base_url == "https://m.example.com/prefix"
