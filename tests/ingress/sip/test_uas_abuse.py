"""A source that keeps failing authentication: one 403, then silence for a cool-off.

The digest authenticator decides when a source is blocked (tests/ingress/sip/test_digest.py);
the UAS core carries out the issue's "403 and silent drops for a cool-off": ``silence(host,
until)`` drops new INVITEs from the host before any transaction exists (not even 100
Trying), ``drop(call)`` discards an INVITE already offered without any response. Virtual
time throughout.
"""

from __future__ import annotations

import pytest

from ingress.sip.errors import LocalProtocolError
from ingress.sip.message import Peer, Request, Response, TransportKind
from ingress.sip.parser import parse_message
from ingress.sip.uas import CallState
from ingress.sip.uas_events import CallEnded, CallOffered, EndCause
from tests.ingress.sip.test_uas_harness import UDP_PEER, Harness, ack_for, in_dialog, recorded

TWILIO = recorded("twilio_invite_pcmu.sip")
OTHER_HOST = Peer(TransportKind.UDP, "198.51.100.77", 5060)
COOL_OFF = 300.0


def invite(n: int) -> bytes:
    """The Twilio INVITE as a new call ``n`` (own Call-ID and branch)."""
    return TWILIO.replace(b"9d6ab9c1c7b6e1a0f6f5b8d1f00e2a7e", f"call{n:028d}".encode()).replace(
        b"z9hG4bK65d4.", f"z9hG4bK65d4.n{n}".encode()
    )


def options(n: int) -> str:
    return (
        "OPTIONS sip:telepath@203.0.113.10 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 198.51.100.40:5060;branch=z9hG4bKopt{n}\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:ping@twilio.com>;tag=o1\r\n"
        f"To: <sip:telepath@203.0.113.10>\r\nCall-ID: opt-{n}\r\nCSeq: 7 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    )


def ack_for_failure(data: bytes, response: Response) -> str:
    """RFC 3261 §17.1.1.3: the ACK for a non-2xx, on the INVITE's own branch."""
    request = parse_message(data)
    assert isinstance(request, Request)
    return (
        f"ACK {request.uri} SIP/2.0\r\nVia: {request.headers.get('Via')}\r\n"
        f"Max-Forwards: 70\r\nFrom: {request.headers.get('From')}\r\n"
        f"To: {response.headers.get('To')}\r\nCall-ID: {request.call_id}\r\n"
        "CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    )


def blocked_after_403() -> Harness:
    """The owner's reaction to a newly blocked source: 403 once, then silence."""
    h = Harness()
    h.feed(invite(1))
    call = h.offered().call
    h.act(lambda now: h.uas.reject(call, 403, now))
    h.act(lambda now: h.uas.silence(UDP_PEER.host, now + COOL_OFF))
    [_, forbidden] = h.responses()
    assert forbidden.status == 403
    h.feed(ack_for_failure(invite(1), forbidden))  # ends Timer G's retransmissions
    return h


def test_silenced_source_gets_no_answer_at_all_for_new_invites() -> None:
    h = blocked_after_403()
    offered = len(h.of_type(CallOffered))
    h.feed(invite(2))
    h.advance(10)  # retransmission time: still nothing (no transaction, no timer)
    h.feed(invite(2))
    assert h.take() == []
    assert len(h.of_type(CallOffered)) == offered
    assert h.uas.silent_drops == 2 and h.uas.is_silenced(UDP_PEER.host, h.now)


def test_the_403_is_still_completed_by_its_ack_and_options_still_answered() -> None:
    h = Harness()
    h.feed(invite(1))
    call = h.offered().call
    h.act(lambda now: h.uas.reject(call, 403, now))
    [_, forbidden] = h.responses()
    h.act(lambda now: h.uas.silence(UDP_PEER.host, now + COOL_OFF))
    h.feed(ack_for_failure(invite(1), forbidden))
    h.advance(5)
    assert h.take() == []  # the ACK stopped Timer G: no 403 retransmission
    h.feed(options(1))
    assert h.statuses() == [200]  # keep-alives and other requests are not dropped


def test_other_sources_are_unaffected_and_the_cool_off_ends() -> None:
    h = blocked_after_403()
    h.feed(invite(3), OTHER_HOST)
    assert h.statuses() == [100] and h.offered().source == OTHER_HOST
    h.advance(COOL_OFF + 1)
    h.take()
    h.feed(invite(4))
    assert h.statuses() == [100]
    assert h.offered().request.call_id == f"call{4:028d}@0.0.0.0"
    assert not h.uas.is_silenced(UDP_PEER.host, h.now)


def test_calls_up_from_a_silenced_address_keep_their_dialog() -> None:
    h = Harness()
    call, ok = h.answered_call(invite(5))
    h.feed(ack_for(invite(5), ok))
    h.take()
    h.act(lambda now: h.uas.silence(UDP_PEER.host, now + COOL_OFF))
    h.feed(in_dialog(invite(5), ok, "INVITE", 2, branch="z9hG4bKre5"))  # a re-INVITE: answered
    assert h.statuses() == [100, 200]
    h.feed(in_dialog(invite(5), ok, "BYE", 3, branch="z9hG4bKbye5"))
    assert h.statuses() == [200]
    assert h.of_type(CallEnded)[-1].cause is EndCause.CALLER_BYE
    assert h.uas.call_state(call) is CallState.ENDED


def test_drop_discards_an_offered_invite_without_any_response() -> None:
    h = Harness()
    h.feed(invite(6))
    call = h.offered().call
    assert h.statuses() == [100]
    assert h.act(lambda now: h.uas.drop(call, now)) is True
    assert h.of_type(CallEnded)[-1] == CallEnded(call=call, cause=EndCause.DROPPED, status=None)
    h.advance(200)  # past the ring timeout and every transaction timer
    assert h.take() == [] and h.uas.get_timer() is None
    assert h.act(lambda now: h.uas.drop(call, now)) is False  # already over


def test_drop_after_a_final_response_is_a_local_error() -> None:
    h = Harness()
    call, _ = h.answered_call(invite(7))
    with pytest.raises(LocalProtocolError):
        h.act(lambda now: h.uas.drop(call, now))
