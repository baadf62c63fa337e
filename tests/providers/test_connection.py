"""``providers.connection.connect_agent`` against a bare HTTP server on loopback: every
way a provider can refuse the opening handshake reads as the right ``ProviderError``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from providers.base import (
    ErrorCategory,
    ProviderAuthError,
    ProviderConnectError,
    ProviderError,
    ProviderRateLimitError,
)
from providers.connection import connect_agent


@asynccontextmanager
async def answering(head: bytes, body: bytes = b"") -> AsyncIterator[str]:
    """A server that reads the upgrade request and answers ``head`` and ``body``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(head + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/agent"


@pytest.mark.parametrize(
    ("head", "body", "error", "category", "status"),
    [
        (b"HTTP/1.1 401 Unauthorized", b"", ProviderAuthError, ErrorCategory.AUTH, 401),
        (
            b"HTTP/1.1 429 Too Many Requests",
            b'{"error":"insufficient_quota"}',
            ProviderRateLimitError,
            ErrorCategory.QUOTA,
            429,
        ),
        (b"HTTP/1.1 503 Service Unavailable", b"", ProviderError, None, 503),
        # A status Python's HTTPStatus has no name for, which picows calls malformed.
        (b"HTTP/1.1 520 Unknown Error", b"", ProviderError, None, 520),
    ],
    ids=["401", "429-quota", "503", "520"],
)
async def test_a_refused_handshake_reads_as_its_status(
    head: bytes,
    body: bytes,
    error: type[ProviderError],
    category: ErrorCategory | None,
    status: int,
) -> None:
    async with answering(head, body) as url:
        with pytest.raises(error) as refused:
            await connect_agent(url, provider="agent", connect_timeout=5)
    assert refused.value.status == status
    if category is not None:
        assert refused.value.category is category
    assert not isinstance(refused.value, ProviderConnectError)


async def test_an_answer_that_is_not_http_is_a_connect_error() -> None:
    async with answering(b"SSH-2.0-OpenSSH_9.2") as url:
        with pytest.raises(ProviderConnectError, match="handshake failed"):
            await connect_agent(url, provider="agent", connect_timeout=5)
