"""The datagram parser: limits, datagram framing (RFC 3261 §18.3), error responses, and a
fuzz property that nothing but ``SipParseError`` ever leaves it."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingress.sip.errors import MessageTooLarge, SipParseError
from ingress.sip.message import Request, Response
from ingress.sip.parser import MessageParser, error_response, parse_message
from ingress.sip.validation import check_request

DATA = Path(__file__).resolve().parents[2] / "data" / "sip"
CORPUS = Path("/work/shared/interop/rfc4475")
INVITE = (DATA / "sipp_uac_invite.sip").read_bytes()
OK = (DATA / "sipp_uas_200_ok.sip").read_bytes()


def test_leading_crlfs_are_ignored() -> None:
    """RFC 3261 §7.5."""
    assert parse_message(b"\r\n\r\n" + INVITE) == parse_message(INVITE)


def test_without_content_length_the_body_runs_to_the_end_of_the_datagram() -> None:
    data = INVITE.replace(b"Content-Length:   129\r\n", b"")
    message = parse_message(data)
    assert message.body == parse_message(INVITE).body


def test_octets_after_content_length_are_discarded() -> None:
    message = parse_message(INVITE + b"garbage")
    assert len(message.body) == 129 and message.serialise() == INVITE


def test_content_length_longer_than_the_datagram_is_a_400() -> None:
    with pytest.raises(SipParseError) as caught:
        parse_message(INVITE[:-10])
    assert caught.value.status_hint == 400


class TestLimits:
    def test_message_size_limit_gives_513_with_context(self) -> None:
        with pytest.raises(MessageTooLarge) as caught:
            MessageParser(max_size=200).parse(INVITE)
        assert caught.value.status_hint == 513
        response = error_response(caught.value, to_tag="abc")
        assert response is not None and response.status == 513
        assert response.call_id == "1-15312@127.0.0.1"

    def test_header_count_limit(self) -> None:
        many = INVITE.replace(b"Max-Forwards: 70\r\n", b"X-A: 1\r\n" * 300)
        with pytest.raises(MessageTooLarge):
            parse_message(many)
        assert isinstance(MessageParser(max_headers=400).parse(many), Request)


class TestErrorResponses:
    def test_400_carries_a_warning_and_the_request_headers(self) -> None:
        broken = INVITE.replace(b"CSeq: 1 INVITE", b"CSeq: one INVITE")
        with pytest.raises(SipParseError) as caught:
            parse_message(broken)
        response = error_response(caught.value, to_tag="t0")
        assert response is not None and response.status == 400
        assert response.headers.get("Warning") == '399 telepath "expected CSeq number"'
        assert response.headers.get("CSeq") == "one INVITE"  # copied as received
        assert response.to is not None and response.to.tag == "t0"

    def test_a_broken_response_is_dropped(self) -> None:
        with pytest.raises(SipParseError) as caught:
            parse_message(OK.replace(b"CSeq: 1 INVITE", b"CSeq: x"))
        assert caught.value.status_hint is None
        assert error_response(caught.value, to_tag="t") is None

    def test_a_broken_ack_is_never_answered(self) -> None:
        ack = (DATA / "sipp_auth_ack_401.sip").read_bytes().replace(b"CSeq: 1 ACK", b"CSeq: ACK")
        with pytest.raises(SipParseError) as caught:
            parse_message(ack)
        assert caught.value.status_hint == 400
        assert error_response(caught.value, to_tag="t") is None

    def test_without_via_there_is_nobody_to_answer(self) -> None:
        data = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n"
        with pytest.raises(SipParseError) as caught:
            parse_message(data)
        assert error_response(caught.value, to_tag="t") is None

    def test_the_warning_text_does_not_echo_peer_bytes(self) -> None:
        error = SipParseError('bad "\\\x00\r\n value')
        error = error.with_context(None)
        assert error_response(error, to_tag="t") is None  # no context, no answer


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n",
        b"INVITE\r\n\r\n",
        b"SIP/2.0 20\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nCSeq: 1 INVITE\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\n folded-first: x\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nno colon here\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP a\rb\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nMax-Forwards: 256\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCall-ID: a b\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nContent-Length: five\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h:70000\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h, ,\r\n\r\n",
        b"\xff\xfe sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n",
        b"INVITE sip:a@b HTTP/1.1\r\nVia: SIP/2.0/UDP h\r\n\r\n",
    ],
)
def test_malformed_input_raises_only_sip_parse_error(data: bytes) -> None:
    with pytest.raises(SipParseError):
        parse_message(data)


def test_a_response_without_reason_phrase_is_accepted() -> None:
    message = parse_message(
        b"SIP/2.0 180\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nCSeq: 1 INVITE\r\n\r\n"
    )
    assert isinstance(message, Response) and (message.status, message.reason) == (180, "")


SEEDS = [INVITE, OK, *(p.read_bytes() for p in sorted(CORPUS.glob("*.dat"))[:20])]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        op = draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        if op == "flip" and data:
            data[pos] = draw(st.sampled_from(b' \t\r\n:;,<>"\\%@=/0aZ\x00\xff'))
        elif op == "cut":
            del data[pos : pos + draw(st.integers(1, 20))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(max_size=8))
        else:
            del data[pos:]
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated() | st.binary(max_size=200))
def test_fuzz_only_sip_parse_error_escapes(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SipParseError as error:
        response = error_response(error, to_tag="fz")
        if response is not None:
            # Only requests with a readable top Via are answered, with the hinted status.
            assert response.status == error.status_hint
            assert response.headers.get_all("Via") and response.headers.get("Warning")
        return
    # Whatever parsed must serialise and parse again to the same message, and the UAS
    # checks must give an answer rather than raise.
    assert parse_message(message.serialise()) == message
    if isinstance(message, Request):
        status = check_request(message)
        assert status is None or 400 <= status < 600


def test_contact_star_is_accepted() -> None:
    data = INVITE.replace(b"Contact: sip:sipp@127.0.0.1:5991", b"Contact: *")
    message = parse_message(data)
    assert message.headers.get("Contact") == "*" and message.contacts == []


def test_salvage_of_unreadable_headers_is_none() -> None:
    assert MessageParser().salvage(b"INVITE sip:a@b SIP/2.0\r\n bad fold\r\n\r\n") is None
    assert MessageParser().salvage(b"") is None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated() | st.binary(max_size=200))
def test_the_transaction_layer_never_raises_on_peer_bytes(data: bytes) -> None:
    from ingress.sip.message import Peer, TransportKind
    from ingress.sip.transaction import TransactionLayer

    layer = TransactionLayer(random=lambda n: b"\x07" * n)
    peer = Peer(TransportKind.UDP, "192.0.2.9", 5060)
    layer.receive_bytes(data, peer, 0.0)
    layer.receive_bytes(data, peer, 0.1)  # and again, as a retransmission
    while (deadline := layer.get_timer()) is not None:
        layer.handle_timer(deadline)
    for out in layer.messages_to_send():
        assert out.destination.host == peer.host and out.message.serialise()
