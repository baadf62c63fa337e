"""The signed conversation URL for private ElevenLabs agents.

``GET {api_url}/v1/convai/conversation/get-signed-url?agent_id=…`` with ``xi-api-key``
answers ``{"signed_url": "wss://…"}``; the URL is opaque and must be used within 15 minutes
(providers.md §2.1). The request goes through the standard library (``urllib``) in a worker
thread, bounded by ``timeout``: one small REST call per call set-up does not justify a new
dependency. Environment proxies are ignored, as for the agent WebSocket.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Final
from urllib.parse import urlencode, urlsplit

from providers.base import (
    ProviderConfigError,
    ProviderConnectError,
    ProviderProtocolError,
)
from providers.connection import error_for_status

PROVIDER: Final = "elevenlabs"
DEFAULT_API_URL: Final = "https://api.elevenlabs.io"
PATH: Final = "/v1/convai/conversation/get-signed-url"
MAX_BODY: Final = 64 * 1024


def signed_url_request(api_url: str, agent_id: str, api_key: str) -> urllib.request.Request:
    """The REST request (pure; exposed for tests and logs without the key)."""
    if urlsplit(api_url).scheme not in ("http", "https"):
        raise ProviderConfigError(f"ElevenLabs api_url must be http(s): {api_url!r}")
    url = api_url.rstrip("/") + PATH + "?" + urlencode({"agent_id": agent_id})
    return urllib.request.Request(
        url, headers={"xi-api-key": api_key, "Accept": "application/json"}, method="GET"
    )


def parse_signed_url(body: bytes) -> str:
    """Extract ``signed_url`` from the answer; it must be a ws(s) URL."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ProviderProtocolError("ElevenLabs signed-URL answer is not JSON") from exc
    url = obj.get("signed_url") if isinstance(obj, dict) else None
    if not isinstance(url, str) or urlsplit(url).scheme not in ("ws", "wss"):
        raise ProviderProtocolError("ElevenLabs signed-URL answer has no ws(s) signed_url")
    return url


def _fetch(request: urllib.request.Request, timeout: float) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            return parse_signed_url(response.read(MAX_BODY + 1)[:MAX_BODY])
    except urllib.error.HTTPError as exc:
        body = exc.read(MAX_BODY).decode("utf-8", "replace") if exc.fp else ""
        raise error_for_status(PROVIDER, exc.code, body) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ProviderConnectError(f"ElevenLabs API could not be reached: {reason}") from None


async def get_signed_url(api_url: str, agent_id: str, api_key: str, limit_s: float) -> str:
    """Fetch a signed conversation URL within ``limit_s`` seconds.

    Raises ``ProviderAuthError`` (401/403), ``ProviderRateLimitError``,
    ``ProviderConfigError`` (404: unknown agent), ``ProviderConnectError`` or
    ``ProviderProtocolError``.
    """
    request = signed_url_request(api_url, agent_id, api_key)
    try:
        async with asyncio.timeout(limit_s):
            return await asyncio.to_thread(_fetch, request, limit_s)
    except TimeoutError as exc:
        raise ProviderConnectError(f"ElevenLabs API did not answer within {limit_s:g} s") from exc
