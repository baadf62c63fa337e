"""Webhook responses that point a carrier's call at our media-stream WebSocket.

- Twilio: TwiML built with the ``twilio`` package (``VoiceResponse``/``Connect``/``Stream``/
  ``Parameter``). ``<Connect><Stream>`` is the bidirectional form; "the url does not
  support query string parameters" and Twilio drops them (TW-STREAM, carriers.md §1.2),
  so the per-call token is a *path* segment and the context goes in ``<Parameter>``s.
- Telnyx: TeXML built with ``xml.etree``. TeXML's ``bidirectionalMode`` defaults to
  ``mp3``, which would not play our audio, so we always say ``rtp`` (TX-TEXML-STREAM).

Both builders refuse a Stream URL that is not ``wss://`` (Twilio error 31922) or carries a
query string or fragment (``MediaStreamConfigError``).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Final, Literal
from urllib.parse import urlsplit

from twilio.twiml.voice_response import Connect, VoiceResponse

from ingress.media_streams.errors import MediaStreamConfigError
from ingress.media_streams.events import Carrier
from media import G722_16K, PCMA, PCMU, AudioFormat

__all__ = [
    "check_stream_url",
    "media_stream_url",
    "texml_connect_stream",
    "texml_reject",
    "twilio_connect_stream",
    "twilio_reject",
]

MEDIA_STREAM_PATH: Final = "/v1/media/{carrier}/{token}"
"""Path of the WS route, relative to the public base URL; ``token`` is one-time, per call."""

XML_DECLARATION: Final = '<?xml version="1.0" encoding="UTF-8"?>'
RejectReason = Literal["rejected", "busy"]
StreamTrack = Literal["inbound_track", "outbound_track", "both_tracks"]

_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,256}")
# XML 1.0 §2.2 Char: tab, LF, CR and everything from U+0020 except surrogates and U+FFFE/F.
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_MAX_PARAMETERS: Final = 64


def check_stream_url(url: str) -> None:
    """Raise ``MediaStreamConfigError`` unless ``url`` is a ``wss://`` URL with a host and
    no query string, fragment or user info (carriers.md §1.2, §4)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise MediaStreamConfigError(f"stream URL is malformed: {exc}") from None
    if parts.scheme != "wss":
        raise MediaStreamConfigError("stream URL must use wss:// (Twilio error 31922)")
    if not parts.hostname or port == 0:
        raise MediaStreamConfigError("stream URL needs a host")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise MediaStreamConfigError(
            "stream URL must not carry a query string or fragment: carriers drop them; "
            "put the call token in the path and context in parameters"
        )
    if parts.username is not None or parts.password is not None:
        raise MediaStreamConfigError("stream URL must not carry credentials")
    _check_xml_text(url, "stream URL")


def media_stream_url(public_base_url: str, carrier: Carrier, call_token: str) -> str:
    """``wss://{host}[:port][/prefix]/v1/media/{carrier}/{call_token}``.

    ``public_base_url`` is the configured public origin (``https://gw.example.com`` or
    ``https://gw.example.com:8443/telepath``); ``https`` becomes ``wss``. The token must be
    16–256 URL-safe characters (``secrets.token_urlsafe`` output).
    """
    if not _TOKEN.fullmatch(call_token):
        raise MediaStreamConfigError("call token must be 16-256 URL-safe base64 characters")
    try:
        parts = urlsplit(public_base_url)
    except ValueError as exc:
        raise MediaStreamConfigError(f"public base URL is malformed: {exc}") from None
    scheme = {"https": "wss", "wss": "wss"}.get(parts.scheme)
    if scheme is None:
        raise MediaStreamConfigError("public base URL must be https:// (carriers require wss)")
    if parts.query or parts.fragment:
        raise MediaStreamConfigError("public base URL must not carry a query string or fragment")
    path = parts.path.rstrip("/") + MEDIA_STREAM_PATH.format(
        carrier=carrier.value, token=call_token
    )
    url = f"{scheme}://{parts.netloc}{path}"
    check_stream_url(url)
    return url


def twilio_connect_stream(
    stream_url: str,
    parameters: Mapping[str, str] | None = None,
    *,
    status_callback: str | None = None,
    connect_action: str | None = None,
) -> str:
    """TwiML answering a voice webhook with a bidirectional stream to ``stream_url``.

    ``<Response><Connect><Stream url=…><Parameter name= value=/>…</Stream></Connect></Response>``.
    Parameters arrive in ``start.customParameters``. Nothing follows ``<Connect>``: when
    our socket closes Twilio ends the call (or requests ``connect_action``, TW-CONNECT).
    No ``track``: "For bidirectional Streams … you can only receive the inbound_track".
    """
    check_stream_url(stream_url)
    params = _check_parameters(parameters)
    response = VoiceResponse()
    connect = Connect(action=connect_action) if connect_action else Connect()
    stream = connect.stream(url=stream_url, status_callback=status_callback)
    for name, value in params.items():
        stream.parameter(name=name, value=value)
    response.append(connect)
    return str(response.to_xml())


def twilio_reject(reason: RejectReason | None = None) -> str:
    """TwiML ``<Reject/>`` (or ``<Reject reason="rejected|busy"/>``): refuse the call unanswered.

    TwiML ``<Reject>`` is not billed as an answered call; ``busy`` plays a busy signal.
    """
    response = VoiceResponse()
    if reason is None:
        response.reject()
    else:
        response.reject(reason=reason)
    return str(response.to_xml())


def texml_connect_stream(
    stream_url: str,
    parameters: Mapping[str, str] | None = None,
    *,
    codec: AudioFormat = PCMU,
    track: StreamTrack = "inbound_track",
    status_callback: str | None = None,
) -> str:
    """TeXML ``<Response><Connect><Stream url=… bidirectionalMode="rtp" bidirectionalCodec=…>``.

    ``codec`` is what we will send (give the same to ``TelnyxStreamCodec(outbound_format=…)``):
    TeXML knows PCMU, PCMA, G722 (and OPUS/AMR-WB, which we do not produce); L16 is
    Call Control only. ``bidirectionalSamplingRate`` is 8000 for G.711.
    """
    check_stream_url(stream_url)
    params = _check_parameters(parameters)
    if codec in (PCMU, PCMA):
        codec_name, rate = codec.encoding.value.upper(), "8000"
    elif codec == G722_16K:
        codec_name, rate = "G722", None
    else:
        raise MediaStreamConfigError(f"TeXML streams cannot carry {codec} back to the caller")
    response = ET.Element("Response")
    connect = ET.SubElement(response, "Connect")
    attributes = {
        "url": stream_url,
        "track": track,
        "bidirectionalMode": "rtp",  # TeXML default is mp3 (TX-TEXML-STREAM)
        "bidirectionalCodec": codec_name,
    }
    if rate is not None:
        attributes["bidirectionalSamplingRate"] = rate
    if status_callback is not None:
        _check_xml_text(status_callback, "status callback")
        attributes["statusCallback"] = status_callback
    stream = ET.SubElement(connect, "Stream", attributes)
    for name, value in params.items():
        ET.SubElement(stream, "Parameter", {"name": name, "value": value})
    return XML_DECLARATION + ET.tostring(response, encoding="unicode")


def texml_reject(reason: RejectReason | None = None) -> str:
    """TeXML ``<Response><Reject/></Response>`` (optionally ``reason``)."""
    response = ET.Element("Response")
    ET.SubElement(response, "Reject", {"reason": reason} if reason is not None else {})
    return XML_DECLARATION + ET.tostring(response, encoding="unicode")


def _check_parameters(parameters: Mapping[str, str] | None) -> dict[str, str]:
    params = dict(parameters or {})
    if len(params) > _MAX_PARAMETERS:
        raise MediaStreamConfigError(f"at most {_MAX_PARAMETERS} stream parameters")
    for name, value in params.items():
        if not isinstance(name, str) or not name or not isinstance(value, str):
            raise MediaStreamConfigError(
                "stream parameters must be non-empty names with string values"
            )
        _check_xml_text(name, "parameter name")
        _check_xml_text(value, "parameter value")
    return params


def _check_xml_text(text: str, what: str) -> None:
    if _NOT_XML_CHAR.search(text):
        raise MediaStreamConfigError(f"{what} contains a character XML cannot carry")
