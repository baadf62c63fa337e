"""The asyncio SIP endpoint over real loopback sockets: UDP, TCP (byte by byte, RFC 5626
keep-alive pong, framing errors), TLS 1.2+ with a certificate made here."""

from __future__ import annotations

import asyncio
import secrets
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ingress.sip.message import TransportKind
from ingress.sip.transport.endpoint import SipEndpoint
from ingress.sip.transport.tcp import server_tls_context
from ingress.sip.uas import UasConfig, UserAgentServer
from ingress.sip.uas_events import CallOffered, UasEvent
from tests.sip_interop.support import tls_certificate


def options(transport: str, port: int, call_id: str = "ep-1") -> bytes:
    return (
        f"OPTIONS sip:telepath@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:{port};branch=z9hG4bK{call_id};rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p1\r\n"
        f"To: <sip:telepath@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


@pytest.fixture
async def endpoint(tmp_path: Path) -> AsyncIterator[tuple[SipEndpoint, list[UasEvent], Path]]:
    cert, key = tls_certificate(tmp_path)
    events: list[UasEvent] = []
    uas = UserAgentServer(
        UasConfig(public_address="127.0.0.1", ports={TransportKind.UDP: 0, TransportKind.TCP: 0}),
        random=secrets.token_bytes,
    )
    ep = SipEndpoint(uas, on_event=events.append)
    await ep.start(
        udp=("127.0.0.1", 0),
        tcp=("127.0.0.1", 0),
        tls=("127.0.0.1", 0, server_tls_context(cert, key)),
    )
    yield ep, events, cert
    await ep.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.received.put_nowait(data)


async def test_udp_options(endpoint: tuple[SipEndpoint, list[UasEvent], Path]) -> None:
    ep, _, _ = endpoint
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Udp, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    transport.sendto(options("UDP", port), ep.addresses[TransportKind.UDP])
    answer = await asyncio.wait_for(proto.received.get(), 2)
    assert answer.startswith(b"SIP/2.0 200 OK\r\n")
    transport.sendto(b"\r\n\r\n", ep.addresses[TransportKind.UDP])  # keep-alive: ignored
    transport.sendto(b"garbage that is no SIP\r\n\r\n", ep.addresses[TransportKind.UDP])
    transport.sendto(options("UDP", port, "ep-2"), ep.addresses[TransportKind.UDP])
    again = await asyncio.wait_for(proto.received.get(), 2)
    assert b"Call-ID: ep-2" in again
    transport.close()


async def test_tcp_byte_by_byte_ping_pong_and_framing_error(
    endpoint: tuple[SipEndpoint, list[UasEvent], Path],
) -> None:
    ep, _, _ = endpoint
    host, port = ep.addresses[TransportKind.TCP]
    reader, writer = await asyncio.open_connection(host, port)
    local = writer.get_extra_info("sockname")[1]
    for byte in options("TCP", local):
        writer.write(bytes([byte]))
        await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    assert head.startswith(b"SIP/2.0 200 OK\r\n")
    writer.write(b"\r\n\r\n")  # RFC 5626 §3.5.1 ping
    assert await asyncio.wait_for(reader.readexactly(2), 2) == b"\r\n"
    writer.write(
        b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKbad\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: bad\r\nCSeq: 1 OPTIONS\r\n"
        b"Content-Length: nonsense\r\n\r\n"
    )
    rest = await asyncio.wait_for(reader.read(), 2)  # the answer, then the close (§18.3)
    assert rest.startswith(b"SIP/2.0 400 ")
    writer.close()


async def test_tls_options(endpoint: tuple[SipEndpoint, list[UasEvent], Path]) -> None:
    ep, _, cert = endpoint
    context = ssl.create_default_context(cafile=str(cert))
    host, port = ep.addresses[TransportKind.TLS]
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname="127.0.0.1"
    )
    assert writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
    writer.write(options("TLS", 5061))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    assert head.startswith(b"SIP/2.0 200 OK\r\n")
    writer.close()


def test_server_tls_context_requires_tls_1_2(tmp_path: Path) -> None:
    cert, key = tls_certificate(tmp_path)
    context = server_tls_context(cert, key)
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.protocol is ssl.PROTOCOL_TLS_SERVER


async def test_invite_reaches_the_owner_and_timer_fires(
    endpoint: tuple[SipEndpoint, list[UasEvent], Path],
) -> None:
    ep, events, _ = endpoint
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Udp, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    invite = (
        f"INVITE sip:someone@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKinv1;rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:someone@127.0.0.1>\r\n"
        f"Call-ID: ep-inv\r\nCSeq: 1 INVITE\r\nContact: <sip:probe@127.0.0.1:{port}>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    transport.sendto(invite, ep.addresses[TransportKind.UDP])
    trying = await asyncio.wait_for(proto.received.get(), 2)
    assert trying.startswith(b"SIP/2.0 100 Trying")
    [offered] = [e for e in events if isinstance(e, CallOffered)]
    ep.act(lambda now: ep.uas.reject(offered.call, 486, now))
    busy = await asyncio.wait_for(proto.received.get(), 2)
    assert busy.startswith(b"SIP/2.0 486 ")
    # No ACK: the one re-armed loop timer retransmits the 486 (Timer G, T1 = 0.5 s).
    again = await asyncio.wait_for(proto.received.get(), 2)
    assert again == busy
    transport.close()
