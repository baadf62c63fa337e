"""Opening an agent's WebSocket, with every failure mapped to a categorised ProviderError.

All adapters connect through ``connect_agent`` so that a refused key, a throttled account,
an unreachable host and a slow handshake read the same way in every call record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from picows import WSHandshakeError, WSInvalidStatusError, WSInvalidURL

from providers.agent_socket import AgentSocket, open_agent_socket
from providers.base import (
    ErrorCategory,
    ProviderAuthError,
    ProviderConfigError,
    ProviderConnectError,
    ProviderError,
    ProviderRateLimitError,
)

logger = logging.getLogger(__name__)

# Agent audio is small, but a provider may batch a few seconds of it into one message.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def error_for_status(provider: str, status: int, body: str = "") -> ProviderError:
    """Classify an HTTP status answered by a provider (handshake or REST)."""
    detail = f" ({status})"
    if status in (401, 403):
        return ProviderAuthError(f"{provider} rejected the API key{detail}", status=status)
    if status == 429:
        if "quota" in body.lower() or "insufficient" in body.lower():
            return ProviderRateLimitError(
                f"{provider} account is out of quota{detail}",
                category=ErrorCategory.QUOTA,
                status=status,
            )
        return ProviderRateLimitError(f"{provider} rate-limited the call{detail}", status=status)
    if status == 404:
        return ProviderConfigError(
            f"{provider} endpoint or agent/model not found{detail}", status=status
        )
    if 500 <= status < 600:
        return ProviderError(f"{provider} had a server error{detail}", status=status)
    return ProviderError(f"{provider} refused the connection{detail}", status=status)


async def connect_agent(
    url: str,
    *,
    provider: str,
    headers: Mapping[str, str] | None = None,
    connect_timeout: float = 5.0,
    ping_interval: float | None = 20.0,
) -> AgentSocket:
    """Open the WebSocket to an agent within ``connect_timeout`` seconds.

    Keep-alive pings run every ``ping_interval`` seconds (a dead peer closes the socket
    after another interval). No compression is offered: audio does not compress and
    deflate only costs CPU. Raises ``ProviderAuthError``, ``ProviderRateLimitError``,
    ``ProviderConfigError``, ``ProviderConnectError`` or ``ProviderError``.
    """
    try:
        async with asyncio.timeout(connect_timeout):
            return await open_agent_socket(
                url,
                headers=headers,
                max_size=MAX_MESSAGE_BYTES,
                max_queue=64,
                ping_interval=ping_interval,
                ping_timeout=ping_interval,
                close_timeout=2,
            )
    except WSInvalidStatusError as exc:
        status = int(exc.response.status) if exc.response is not None else 0
        body = exc.raw_body.decode("utf-8", "replace") if exc.raw_body else ""
        raise error_for_status(provider, status, body) from exc
    except WSInvalidURL as exc:
        raise ProviderConfigError(f"{provider} endpoint URL is invalid: {url!r}") from exc
    except TimeoutError as exc:
        raise ProviderConnectError(
            f"{provider} did not answer within {connect_timeout:g} s"
        ) from exc
    except WSHandshakeError as exc:
        answered = _status_of(exc.raw_header)
        if answered is not None and answered != 101:
            # picows calls a status it has no name for (Cloudflare's 520, say) a malformed
            # answer; it is still the provider's answer, and says what kind of failure.
            body = exc.raw_body.decode("utf-8", "replace") if exc.raw_body else ""
            raise error_for_status(provider, answered, body) from exc
        raise ProviderConnectError(f"{provider} WebSocket handshake failed: {exc}") from exc
    except OSError as exc:
        raise ProviderConnectError(
            f"{provider} could not be reached: {exc.strerror or exc}"
        ) from exc


def _status_of(head: bytes | None) -> int | None:
    """The status code of an HTTP/1.1 answer's status line (RFC 9112 §4), if it has one."""
    if not head:
        return None
    parts = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        return None
    code = parts[1]
    return int(code) if len(code) == 3 and code.isdigit() else None
