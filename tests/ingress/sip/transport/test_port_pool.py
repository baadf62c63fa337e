"""The RTP port pool (virtual clock) and the socket pairs it feeds (real loopback sockets)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingress.sip.transport.port_pool import (
    InvalidPortRange,
    PortsExhausted,
    RtpPortPool,
    RtpTransportError,
    parse_port_range,
)
from ingress.sip.transport.rtp import open_rtp_socket_pair
from tests.ingress.sip.transport.rtp_peer import Clock, free_even_base, open_fds

# -- --rtp-ports ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10000-20000", (10000, 20000)),
        (" 40000-40001 ", (40000, 40001)),
        ("1025-1027", (1025, 1027)),
    ],
)
def test_parse_port_range(text: str, expected: tuple[int, int]) -> None:
    assert parse_port_range(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "10000",
        "10000-",
        "-20000",
        "20000-10000",
        "80-200",
        "10000-70000",
        "a-b",
        "1-2-3",
        "10001-10001",
        "10001-10002",
    ],
)
def test_parse_port_range_refuses(text: str) -> None:
    with pytest.raises(InvalidPortRange) as info:
        parse_port_range(text)
    assert isinstance(info.value, ValueError)  # settings validation can treat it as one
    assert isinstance(info.value, RtpTransportError)


@given(st.integers(1024, 65535), st.integers(0, 200))
def test_every_port_is_even_with_its_rtcp_neighbour_in_range(low: int, width: int) -> None:
    high = min(65535, low + width)
    try:
        pool = RtpPortPool(low, high)
    except InvalidPortRange:
        assert high - low < 2 and (low % 2 or high == low)
        return
    ports = [pool.acquire() for _ in range(pool.size)]
    assert len(set(ports)) == len(ports) == pool.size
    assert all(p % 2 == 0 and low <= p and p + 1 <= high for p in ports)
    assert pool.size == len(range(low + low % 2, high, 2))
    with pytest.raises(PortsExhausted):
        pool.acquire()


# -- exhaustion and drain ---------------------------------------------------------------


def test_exhaustion_is_a_typed_error_with_a_503_hint() -> None:
    clock = Clock()
    pool = RtpPortPool(30000, 30005, clock=clock)
    assert [pool.acquire() for _ in range(3)] == [30000, 30002, 30004]
    with pytest.raises(PortsExhausted) as info:
        pool.acquire()
    err = info.value
    assert err.status_hint == 503
    assert (err.low, err.high, err.in_use, err.draining) == (30000, 30005, 3, 0)
    assert "30000-30005" in str(err)


def test_released_port_drains_before_reuse() -> None:
    clock = Clock()
    pool = RtpPortPool(30000, 30003, drain_seconds=2.0, clock=clock)
    port = pool.acquire()
    pool.release(port)
    assert (pool.in_use, pool.draining, pool.available) == (0, 1, 1)
    assert pool.acquire() == 30002  # the other pair, not the one just freed
    with pytest.raises(PortsExhausted) as info:
        pool.acquire()
    assert info.value.draining == 1
    clock.now += 1.999
    with pytest.raises(PortsExhausted):
        pool.acquire()
    clock.now += 0.001
    assert pool.acquire() == port


def test_ports_rotate_oldest_released_first() -> None:
    clock = Clock()
    pool = RtpPortPool(30000, 30007, drain_seconds=0.0, clock=clock)
    a, b, c, d = (pool.acquire() for _ in range(4))
    pool.release(c)
    pool.release(a)
    assert [pool.acquire(), pool.acquire()] == [c, a]
    assert b != d


def test_per_release_drain_override_keeps_order() -> None:
    clock = Clock()
    pool = RtpPortPool(30000, 30005, drain_seconds=5.0, clock=clock)
    a, b, _ = (pool.acquire() for _ in range(3))
    pool.release(a)
    pool.release(b, drain_seconds=0.5)
    clock.now += 0.5
    assert pool.acquire() == b
    with pytest.raises(PortsExhausted):
        pool.acquire()


def test_double_release_is_a_local_error() -> None:
    pool = RtpPortPool(30000, 30001, clock=Clock())
    port = pool.acquire()
    pool.release(port)
    with pytest.raises(ValueError):
        pool.release(port)
    with pytest.raises(ValueError):
        pool.release(31000)


def test_from_range() -> None:
    pool = RtpPortPool.from_range("30001-30006")
    assert (pool.low, pool.high, pool.size) == (30001, 30006, 2)
    assert pool.acquire() == 30002


# -- real sockets -----------------------------------------------------------------------


async def test_socket_pair_binds_rtp_even_and_rtcp_next() -> None:
    base = free_even_base()
    clock = Clock()
    pool = RtpPortPool(base, base + 39, drain_seconds=2.0, clock=clock)
    fds = open_fds()
    pair = await open_rtp_socket_pair(pool, "127.0.0.1")
    assert pair.port == base and pair.rtcp_port == base + 1
    assert open_fds() == fds + 2
    # Both ports are really bound: nobody else can take them.
    for port in (pair.port, pair.rtcp_port):
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with pytest.raises(OSError):
            other.bind(("127.0.0.1", port))
        other.close()
    pair.close()
    pair.close()  # idempotent
    await pair.wait_closed()
    assert open_fds() == fds
    assert pool.in_use == 0 and pool.draining == 1
    clock.now += 2.0
    assert pool.draining == 0


async def test_a_port_held_by_someone_else_is_skipped() -> None:
    base = free_even_base()
    pool = RtpPortPool(base, base + 5, clock=Clock())
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("127.0.0.1", base + 1))  # the RTCP port of the first pair
    try:
        pair = await open_rtp_socket_pair(pool, "127.0.0.1")
        assert pair.port == base + 2
        assert pool.draining == 1  # the refused pair rests before it is tried again
        pair.close()
        await pair.wait_closed()
    finally:
        squatter.close()


async def test_all_pairs_refused_is_exhaustion() -> None:
    base = free_even_base()
    pool = RtpPortPool(base, base + 3, clock=Clock())
    squatters = []
    for port in (base, base + 2):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", port))
        squatters.append(s)
    fds = open_fds()
    try:
        with pytest.raises(PortsExhausted):
            await open_rtp_socket_pair(pool, "127.0.0.1")
        await asyncio.sleep(0)  # let a half-opened transport finish closing
        assert open_fds() == fds
        assert pool.in_use == 0
    finally:
        for s in squatters:
            s.close()


async def test_datagrams_before_attach_are_replayed_in_order() -> None:
    base = free_even_base()
    pool = RtpPortPool(base, base + 3, clock=Clock())
    pair = await open_rtp_socket_pair(pool, "127.0.0.1")
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    try:
        for n in range(3):
            sender.sendto(bytes([n]), ("127.0.0.1", pair.port))
        sender.sendto(b"rtcp", ("127.0.0.1", pair.rtcp_port))
        for _ in range(100):
            await asyncio.sleep(0.005)
            if len(pair._early) == 4:
                break
        got: list[tuple[bytes, int, bool]] = []
        pair.attach(lambda data, src, rtcp, at: got.append((data, src[1], rtcp)))
        me = sender.getsockname()[1]
        assert sorted(got) == sorted(
            [(b"\x00", me, False), (b"\x01", me, False), (b"\x02", me, False), (b"rtcp", me, True)]
        )
    finally:
        sender.close()
        pair.close()
        await pair.wait_closed()
