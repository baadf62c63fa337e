"""``RedisTicketStore`` against the real Redis on loopback: two store instances are two nodes.

Each store has its own client (as each gateway node has), so what one issues the other
must find through Redis alone. Outside CI an unreachable Redis skips these tests with the
reason; in CI it fails them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.media_streams.tokens import (
    CallTicket,
    LocalTicketStore,
    RedisTicketStore,
    TicketStoreError,
    call_key,
    ticket_key,
)
from gateway.secret_box import Keyring
from tests.media_streams.conftest import free_port

REDIS_URL = os.environ.get("TELEPATH_TEST_REDIS", "redis://127.0.0.1:6379/0")
AUTH_TOKEN = "stream-auth-" + "s3cr3t" * 6


def client() -> Redis:
    return Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    """A client for inspecting Redis; skips (fails in CI) when Redis is not reachable."""
    probe = client()
    try:
        await probe.ping()
    except (RedisError, OSError) as exc:
        await probe.aclose()
        if os.environ.get("CI"):
            pytest.fail(f"Redis at {REDIS_URL} is required in CI: {exc}")
        pytest.skip(f"Redis at {REDIS_URL} not reachable: {exc}")
    yield probe
    await probe.aclose()


@pytest.fixture
def keyring() -> Keyring:
    return Keyring(secrets.token_bytes(32))


@pytest.fixture
async def nodes(redis: Redis, keyring: Keyring) -> AsyncIterator[tuple[RedisTicketStore, ...]]:
    """Two stores, each with its own connection pool, sharing the keyring (two nodes)."""
    clients = [client(), client()]
    yield tuple(RedisTicketStore(c, keyring, ttl_s=30) for c in clients)
    for c in clients:
        await c.aclose()


def ticket(call_id: str, *, carrier: str = "twilio") -> CallTicket:
    return CallTicket(
        carrier=carrier,  # type: ignore[arg-type]  # the two carriers, as a test parameter
        trunk_id="trk_1",
        account_id="acc_1",
        call_id=call_id,
        carrier_call_id="CA" + "0" * 32,
        from_number="+15550100001",
        to_number="+15550100002",
        codec="pcmu/8000",
        telnyx_mode="call_control" if carrier == "telnyx" else None,
        carrier_account_id="AC" + "3" * 32,
        stream_auth_token=AUTH_TOKEN,
    )


def call_id() -> str:
    return f"call_{secrets.token_hex(6)}"


async def test_issued_on_one_node_redeemed_once_on_another(
    nodes: tuple[RedisTicketStore, RedisTicketStore],
) -> None:
    a, b = nodes
    original = ticket(call_id(), carrier="telnyx")
    token = await a.issue(original, now=1000.0)
    redeemed = await b.redeem(token, "telnyx", now=5.0)  # node B's clock differs: fine
    assert redeemed is not None
    assert redeemed.stream_auth_token == AUTH_TOKEN
    assert (redeemed.call_id, redeemed.telnyx_mode, redeemed.carrier_account_id) == (
        original.call_id,
        "call_control",
        original.carrier_account_id,
    )
    # expires_at on the redeeming node's clock: now + what Redis had left of the TTL.
    assert 5.0 + 29.0 < redeemed.expires_at <= 5.0 + 30.0
    assert await b.redeem(token, "telnyx", now=6.0) is None  # spent
    assert await a.redeem(token, "telnyx", now=1001.0) is None  # spent cluster-wide


async def test_concurrent_redeems_on_two_nodes_let_exactly_one_in(
    nodes: tuple[RedisTicketStore, RedisTicketStore],
) -> None:
    a, b = nodes
    tokens = [await a.issue(ticket(call_id()), now=0.0) for _ in range(20)]
    for token in tokens:
        results = await asyncio.gather(
            a.redeem(token, "twilio", now=1.0), b.redeem(token, "twilio", now=1.0)
        )
        assert sum(r is not None for r in results) == 1


async def test_the_ttl_is_honoured(redis: Redis, keyring: Keyring) -> None:
    # Redis keeps the TTL (PX), so this waits in real time: 0.2 s to live, 0.4 s waited.
    store = RedisTicketStore(redis, keyring, ttl_s=0.2)
    token = await store.issue(ticket(call_id()), now=0.0)
    assert 0 < await redis.pttl(ticket_key(token)) <= 200
    await asyncio.sleep(0.4)
    assert await store.redeem(token, "twilio", now=0.4) is None


async def test_a_token_on_the_wrong_carrier_route_is_spent(
    nodes: tuple[RedisTicketStore, RedisTicketStore],
) -> None:
    a, b = nodes
    token = await a.issue(ticket(call_id()), now=0.0)
    assert await b.redeem(token, "telnyx", now=1.0) is None  # a probe on the other route
    assert await a.redeem(token, "twilio", now=1.0) is None  # and the probe spent it


async def test_revoke_call_drops_every_ticket_of_the_call_only(
    redis: Redis, nodes: tuple[RedisTicketStore, RedisTicketStore]
) -> None:
    a, b = nodes
    ended, other = call_id(), call_id()
    first = await a.issue(ticket(ended), now=0.0)
    second = await b.issue(ticket(ended), now=0.0)
    kept = await a.issue(ticket(other), now=0.0)
    assert 0 < await redis.pttl(call_key(ended)) <= 30_000  # the call's set expires too
    assert await b.revoke_call(ended) == 2
    assert await redis.exists(call_key(ended)) == 0
    assert await a.redeem(first, "twilio", now=1.0) is None
    assert await a.redeem(second, "twilio", now=1.0) is None
    assert await b.redeem(kept, "twilio", now=1.0) is not None
    assert await a.revoke_call(ended) == 0


async def test_redis_holds_neither_the_token_nor_the_auth_token_in_clear(
    redis: Redis, nodes: tuple[RedisTicketStore, RedisTicketStore]
) -> None:
    a, _ = nodes
    the_call = call_id()
    token = await a.issue(ticket(the_call), now=0.0)
    stored = await redis.get(ticket_key(token))
    assert stored is not None and stored.startswith(b"v1.")
    for secret in (AUTH_TOKEN, token, the_call, "+15550100001"):
        assert secret.encode() not in stored
    assert await redis.keys(f"*{token}*") == []
    # What Redis stores is bound to its key: moved under another token, it does not open.
    other = await a.issue(ticket(call_id()), now=0.0)
    await redis.set(ticket_key(other), stored, px=30_000)
    assert await a.redeem(other, "twilio", now=1.0) is None
    # Nor does a node with another master key open it.
    foreign = RedisTicketStore(redis, Keyring(secrets.token_bytes(32)))
    assert await foreign.redeem(token, "twilio", now=1.0) is None


@pytest.mark.parametrize(
    "value",
    [b"", b"garbage", b"v1.00000000.AAAA", b"x" * 20_000, b"\xff\xfe"],
    ids=["empty", "garbage", "unknown-key", "huge", "not-ascii"],
)
async def test_values_written_by_someone_else_are_refused(
    redis: Redis, keyring: Keyring, value: bytes
) -> None:
    store = RedisTicketStore(redis, keyring)
    token = secrets.token_urlsafe(32)
    await redis.set(ticket_key(token), value, px=30_000)
    assert await store.redeem(token, "twilio", now=0.0) is None
    assert await redis.exists(ticket_key(token)) == 0  # spent all the same


async def test_a_sealed_value_that_is_not_a_ticket_is_refused(
    redis: Redis, keyring: Keyring
) -> None:
    store = RedisTicketStore(redis, keyring)
    token = secrets.token_urlsafe(32)
    digest = ticket_key(token).rsplit(":", 1)[1]
    for body in (b"[1,2]", b'{"carrier":"sip"}', b"not json"):
        sealed = keyring.seal(body, f"stream-ticket:{digest}")
        await redis.set(ticket_key(token), sealed, px=30_000)
        assert await store.redeem(token, "twilio", now=0.0) is None


async def test_implausible_tokens_are_refused_without_asking_redis(keyring: Keyring) -> None:
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    store = RedisTicketStore(dead, keyring)
    assert await store.redeem("short", "twilio", now=0.0) is None
    assert await store.redeem("x" * 300, "twilio", now=0.0) is None
    await dead.aclose()


async def test_an_unreachable_redis_is_a_store_error_not_a_pass(keyring: Keyring) -> None:
    # Nothing listens on the port: every operation raises (the routes then fail closed).
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    store = RedisTicketStore(dead, keyring)
    with pytest.raises(TicketStoreError, match="ConnectionError"):
        await store.issue(ticket(call_id()), now=0.0)
    with pytest.raises(TicketStoreError):
        await store.redeem(secrets.token_urlsafe(32), "twilio", now=0.0)
    with pytest.raises(TicketStoreError):
        await store.revoke_call(call_id())
    await dead.aclose()


async def test_a_repeating_token_source_is_refused(redis: Redis, keyring: Keyring) -> None:
    fixed = secrets.token_urlsafe(32)
    store = RedisTicketStore(redis, keyring, token_source=lambda: fixed)
    await store.issue(ticket(call_id()), now=0.0)
    with pytest.raises(ValueError, match="repeated"):
        await store.issue(ticket(call_id()), now=0.0)
    assert (await store.redeem(fixed, "twilio", now=0.0)) is not None


async def test_the_local_store_keeps_the_in_memory_behaviour() -> None:
    store = LocalTicketStore()
    token = await store.issue(ticket(call_id()), now=100.0)
    assert len(store) == 1
    redeemed = await store.redeem(token, "twilio", now=101.0)
    assert redeemed is not None and redeemed.expires_at == 100.0 + store.ttl_s
    assert await store.redeem(token, "twilio", now=101.0) is None
    the_call = call_id()
    await store.issue(ticket(the_call), now=100.0)
    assert await store.revoke_call(the_call) == 1 and len(store) == 0
