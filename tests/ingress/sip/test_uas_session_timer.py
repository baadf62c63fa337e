"""RFC 4028 session timers: negotiation (422, refresher), refresh and expiry in virtual time."""

from __future__ import annotations

import pytest

from ingress.sip.errors import SipParseError
from ingress.sip.message import Request
from ingress.sip.parser import parse_message
from ingress.sip.session_timer import (
    IntervalTooSmall,
    Refresher,
    SessionTimer,
    SessionTimerAgreed,
    SessionTimerConfig,
    negotiate,
    parse_session_expires,
)
from ingress.sip.uas_events import CallEnded, EndCause
from tests.ingress.sip.test_uas_harness import (
    TCP_PEER,
    UDP_PEER,
    Harness,
    ack_for,
    in_dialog,
    recorded,
)

TWILIO = recorded("twilio_invite_pcmu.sip")
ASTERISK = recorded("asterisk_invite.sip")
FREESWITCH = recorded("freeswitch_invite_session_timer.sip")
BARESIP = recorded("baresip_invite_udp.sip")


def request(data: bytes) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def with_header(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data
    return data.replace(old, new)


# -- negotiation, pure -----------------------------------------------------------------------
def test_parse_session_expires() -> None:
    assert parse_session_expires("1800;refresher=uac") == (1800, Refresher.UAC)
    assert parse_session_expires("90") == (90, None)
    assert parse_session_expires("600 ; refresher=UAS") == (600, Refresher.UAS)
    for bad in ("", "abc", "0", "60;refresher=proxy", "99999999999"):
        with pytest.raises(SipParseError):
            parse_session_expires(bad)


def test_twilio_asks_to_refresh_itself() -> None:
    agreed = negotiate(request(TWILIO), SessionTimerConfig())
    assert agreed == SessionTimerAgreed(1800, Refresher.UAC, peer_supports_timer=True)
    assert agreed.headers == (("Session-Expires", "1800;refresher=uac"), ("Require", "timer"))


def test_asterisk_without_refresher_lets_the_caller_refresh() -> None:
    agreed = negotiate(request(ASTERISK), SessionTimerConfig())
    assert agreed == SessionTimerAgreed(1800, Refresher.UAC, peer_supports_timer=True)


def test_freeswitch_asks_us_to_refresh() -> None:
    agreed = negotiate(request(FREESWITCH), SessionTimerConfig())
    assert agreed == SessionTimerAgreed(120, Refresher.UAS, peer_supports_timer=True)


def test_no_session_expires_means_no_timer() -> None:
    assert negotiate(request(BARESIP), SessionTimerConfig()) is None


def test_too_small_interval_is_422_with_min_se() -> None:
    data = with_header(TWILIO, b"Session-Expires: 1800;refresher=uac", b"Session-Expires: 60")
    assert negotiate(request(data), SessionTimerConfig()) == IntervalTooSmall(90)
    assert negotiate(request(data), SessionTimerConfig(min_se=120)) == IntervalTooSmall(120)


def test_a_caller_without_timer_support_cannot_refresh() -> None:
    data = with_header(TWILIO, b"Supported: timer\r\n", b"")
    agreed = negotiate(request(data), SessionTimerConfig())
    assert agreed == SessionTimerAgreed(1800, Refresher.UAS, peer_supports_timer=False)
    assert agreed.headers == (("Session-Expires", "1800;refresher=uas"),)  # no Require


def test_long_intervals_are_capped() -> None:
    data = with_header(TWILIO, b"Session-Expires: 1800", b"Session-Expires: 86400")
    agreed = negotiate(request(data), SessionTimerConfig(max_se=3600))
    assert isinstance(agreed, SessionTimerAgreed) and agreed.interval == 3600


def test_timer_deadlines() -> None:
    timer = SessionTimer.start(SessionTimerAgreed(1800, Refresher.UAC, True), 100.0)
    assert timer.refresh_at is None
    assert timer.expires_at == 100.0 + 1800 - 32  # §10: SE - min(32, SE/3)
    ours = SessionTimer.start(SessionTimerAgreed(90, Refresher.UAS, True), 0.0)
    assert ours.refresh_at == 45.0 and ours.expires_at == 60.0 and ours.deadline == 45.0


# -- through the UAS core ------------------------------------------------------------------------
def test_422_from_the_uas() -> None:
    h = Harness()
    h.feed(with_header(TWILIO, b"Session-Expires: 1800;refresher=uac", b"Session-Expires: 30"))
    final = [r for r in h.responses() if r.status >= 200]
    assert [r.status for r in final] == [422]
    assert final[0].headers.get("Min-SE") == "90"
    assert h.events and not any(type(e).__name__ == "CallOffered" for e in h.events)


def test_200_carries_the_session_timer_and_expiry_sends_bye() -> None:
    h = Harness()
    call, ok = h.answered_call(TWILIO)
    assert ok.headers.get("Session-Expires") == "1800;refresher=uac"
    assert "timer" in ok.headers.get_all("Require")
    h.feed(ack_for(TWILIO, ok))
    h.take()
    h.advance(1800 - 32 - 1)
    assert [m for m in h.take() if isinstance(m, Request)] == []
    h.advance(2)
    byes = [m for m in h.take() if isinstance(m, Request) and m.method == "BYE"]
    assert byes and {b.headers.get("CSeq") for b in byes} == {byes[0].headers.get("CSeq")}
    assert 'text="Session expired"' in (byes[0].headers.get("Reason") or "")
    h.advance(40)
    assert h.of_type(CallEnded) == [CallEnded(call=call, cause=EndCause.SESSION_EXPIRED)]


def test_a_refresh_from_the_caller_restarts_the_timer() -> None:
    h = Harness()
    call, ok = h.answered_call(TWILIO)
    h.feed(ack_for(TWILIO, ok))
    h.advance(1000)
    refresh = in_dialog(
        TWILIO,
        ok,
        "UPDATE",
        2,
        branch="z9hG4bKrefresh",
        extra=("Session-Expires: 1800;refresher=uac", "Supported: timer"),
    )
    h.feed(refresh)
    assert [r.status for r in h.responses()] == [200]
    h.advance(1000)  # 2000 s after the answer, 1000 after the refresh: still up
    assert not h.of_type(CallEnded)
    assert [m for m in h.take() if isinstance(m, Request)] == []


def test_we_refresh_with_update_when_the_caller_allows_it() -> None:
    h = Harness()
    call, ok = h.answered_call(FREESWITCH, TCP_PEER)
    assert ok.headers.get("Session-Expires") == "120;refresher=uas"
    h.feed(ack_for(FREESWITCH, ok), TCP_PEER)
    h.take()
    h.advance(59)
    assert h.take() == []
    h.advance(2)  # half of 120 s
    [update] = [m for m in h.take() if isinstance(m, Request)]
    assert update.method == "UPDATE"
    assert update.headers.get("Session-Expires") == "120;refresher=uas"
    assert update.headers.get_all("Route") == [
        "<sip:198.51.100.51:5060;transport=tcp;lr;ftag=gUqFQ3pv8Srpc>"
    ]
    reply = (
        f"SIP/2.0 200 OK\r\nVia: {update.headers.get('Via')}\r\nFrom: {update.headers.get('From')}\r\n"
        f"To: {update.headers.get('To')}\r\nCall-ID: {update.call_id}\r\n"
        f"CSeq: {update.headers.get('CSeq')}\r\nSession-Expires: 120;refresher=uas\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    h.feed(reply, TCP_PEER)
    h.advance(50)  # the timer restarted at the 200: no BYE at the old expiry (t=~88 s)
    assert not h.of_type(CallEnded)
    assert [m for m in h.take() if isinstance(m, Request)] == []


def test_we_refresh_with_reinvite_and_ack_its_200() -> None:
    h = Harness()
    data = with_header(ASTERISK, b"Session-Expires: 1800", b"Session-Expires: 180;refresher=uas")
    data = with_header(
        data, b"INVITE, ACK, BYE, CANCEL, UPDATE, PRACK", b"INVITE, ACK, BYE, CANCEL, PRACK"
    )
    call, ok = h.answered_call(data)
    h.feed(ack_for(data, ok))
    h.take()
    h.advance(90.2)  # half of 180 s (before Timer A's first retransmission)
    [invite] = [m for m in h.take() if isinstance(m, Request)]
    assert invite.method == "INVITE" and invite.content_type == "application/sdp"
    body = (
        "v=0\r\no=- 1 3 IN IP4 198.51.100.40\r\ns=-\r\nc=IN IP4 198.51.100.40\r\nt=0 0\r\n"
        "m=audio 12042 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
    reply = (
        f"SIP/2.0 200 OK\r\nVia: {invite.headers.get('Via')}\r\nFrom: {invite.headers.get('From')}\r\n"
        f"To: {invite.headers.get('To')}\r\nCall-ID: {invite.call_id}\r\n"
        f"CSeq: {invite.headers.get('CSeq')}\r\nContact: <sip:asterisk@198.51.100.40:5060>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    )
    h.feed(reply, UDP_PEER)
    [ack] = [m for m in h.take() if isinstance(m, Request)]
    assert ack.method == "ACK" and ack.cseq is not None and invite.cseq is not None
    assert ack.cseq.seq == invite.cseq.seq
    assert ack.top_via is not None and invite.top_via is not None
    assert ack.top_via.branch != invite.top_via.branch  # §13.2.2.4: a new transaction
    h.feed(reply, UDP_PEER)  # a retransmitted 200 is ACKed again
    assert [m.method for m in h.take() if isinstance(m, Request)] == ["ACK"]


def test_481_to_our_refresh_ends_the_call() -> None:
    h = Harness()
    call, ok = h.answered_call(FREESWITCH, TCP_PEER)
    h.feed(ack_for(FREESWITCH, ok), TCP_PEER)
    h.take()
    h.advance(61)
    [update] = [m for m in h.take() if isinstance(m, Request)]
    reply = (
        f"SIP/2.0 481 Call/Transaction Does Not Exist\r\nVia: {update.headers.get('Via')}\r\n"
        f"From: {update.headers.get('From')}\r\nTo: {update.headers.get('To')}\r\n"
        f"Call-ID: {update.call_id}\r\nCSeq: {update.headers.get('CSeq')}\r\nContent-Length: 0\r\n\r\n"
    )
    h.feed(reply, TCP_PEER)
    [bye] = [m for m in h.take() if isinstance(m, Request)]
    assert bye.method == "BYE"
    h.advance(1)  # TCP: Timer F still bounds the BYE
    h.advance(40)
    ended = h.of_type(CallEnded)
    assert ended == [CallEnded(call=call, cause=EndCause.REFRESH_FAILED)]
