"""The RFC 4475 torture corpus against the live gateway over UDP.

Every message of /work/shared/interop/rfc4475 is sent to a running ``telepath serve``;
what the gateway sends back from its SIP port is captured on the loopback interface
(responses go where RFC 3261 §18.2.2 says: the Via's sent-by port, which is rarely ours).
The reaction must be the one INDEX.md gives (the parser-level expectations are the table
of ``tests/ingress/sip/test_rfc4475.py``), adapted to what this UAS implements:
REGISTER and MESSAGE are not among its methods (405), an acceptable INVITE for an unknown
user is challenged (401), an acceptable OPTIONS answered 200. Afterwards the server still
answers OPTIONS.
"""

from __future__ import annotations

import re
import socket
import time

import pytest

from ingress.sip.errors import SipParseError
from ingress.sip.message import Request
from ingress.sip.parser import parse_message
from ingress.sip.transaction import TransactionKey, server_key
from tests.ingress.sip.test_rfc4475 import ACCEPT, CORPUS, DROP, EXPECTED
from tests.sip_interop.support import Gateway, LoopbackCapture

pytestmark = pytest.mark.slow

NOT_OURS = {"REGISTER", "MESSAGE"}  # known methods this UAS does not allow: 405
# RFC 4475 §3.3.4's REGISTER with a non-SIP To: a registrar answers 400, but this UAS
# refuses the method first (RFC 3261 §8.2.1 comes before any REGISTER processing).
OVERRIDES = {"unksm2": 405}
CALL_ID = re.compile(rb"^(?:Call-ID|i)[ \t]*:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


def expected_reaction(name: str) -> int | None:
    """The final status the live server must send, or ``None`` for no response at all."""
    stage, reaction = EXPECTED[name]
    if name in OVERRIDES:
        return OVERRIDES[name]
    if reaction == DROP:
        return None
    if stage == "parse":
        # Responses (and the broadcast request the transaction layer drops) get no answer.
        return None if reaction == ACCEPT else int(reaction)
    if reaction != ACCEPT:
        return int(reaction)
    message = parse_message((CORPUS / f"{name}.dat").read_bytes())
    method = getattr(message, "method", "")
    if method in NOT_OURS:
        return 405
    if method == "ACK":
        return None
    if method == "OPTIONS":
        return 200
    to = message.to
    if method == "INVITE" and (to is None or to.tag is None):
        return 401  # no credentials: challenged (the user is unknown, which reads the same)
    return 481


def transaction_key(data: bytes) -> TransactionKey | None:
    try:
        message = parse_message(data)
    except SipParseError:
        return None  # answered statelessly
    return server_key(message) if isinstance(message, Request) else None


def final_statuses(datagrams: list[bytes], call_ids: set[bytes | None]) -> list[int]:
    """Final statuses among ``datagrams`` that belong to one of ``call_ids`` (earlier
    messages' 401s keep being retransmitted by Timer G: nobody ACKs them)."""
    out = []
    for data in datagrams:
        found = CALL_ID.search(data)
        if None not in call_ids and (found is None or found.group(1) not in call_ids):
            continue
        if data.startswith(b"SIP/2.0 "):
            status = int(data[8:11])
            if status >= 200:
                out.append(status)
    return out


def test_corpus_reactions_and_the_server_survives(gw: Gateway) -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
        LoopbackCapture(from_port=gw.sip_port) as capture,
    ):
        sock.bind(("127.0.0.1", 0))
        problems: dict[str, tuple[int | None, list[int]]] = {}
        transactions: dict[TransactionKey, tuple[bytes | None, int | None]] = {}
        for path in sorted(CORPUS.glob("*.dat")):
            name = path.stem
            capture.take()
            data = path.read_bytes()
            found = CALL_ID.search(data)
            call_id = found.group(1) if found else None
            want = expected_reaction(name)
            key = transaction_key(data)
            call_ids = {call_id}
            if key is not None and key in transactions:
                # RFC 3261 §17.2.3: same branch, sent-by and method as an earlier message
                # (the corpus reuses branches): a retransmission, answered with that
                # transaction's last response while it lives (Timer J, 32 s on UDP); on a
                # slow run it may be gone, and the message is then answered afresh.
                earlier_call_id, want = transactions[key]
                call_ids.add(earlier_call_id)
            elif key is not None:
                transactions[key] = (call_id, want)
            sock.sendto(data[:65000], ("127.0.0.1", gw.sip_port))
            deadline = time.monotonic() + (1.5 if want is not None else 0.6)
            got: list[int] = []
            while time.monotonic() < deadline and not got:
                time.sleep(0.05)
                got = final_statuses(capture.take(), call_ids)
            time.sleep(0.05)
            got += final_statuses(capture.take(), call_ids)
            if (want is None and got) or (want is not None and (not got or got[0] != want)):
                problems[name] = (want, got)
        assert problems == {}
        assert len(EXPECTED) == 49
        # Still alive and answering keep-alives.
        options = (
            f"OPTIONS sip:ping@127.0.0.1:{gw.sip_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{sock.getsockname()[1]};branch=z9hG4bKalive1;rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=a1\r\n"
            f"To: <sip:ping@127.0.0.1:{gw.sip_port}>\r\nCall-ID: alive-after-4475\r\n"
            "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        sock.settimeout(3)
        sock.sendto(options, ("127.0.0.1", gw.sip_port))
        answer = sock.recv(65535)
        while b"alive-after-4475" not in answer:  # earlier answers sent to our source address
            answer = sock.recv(65535)
    assert answer.startswith(b"SIP/2.0 200 OK"), answer
    assert b"Allow:" in answer and b"INVITE" in answer
