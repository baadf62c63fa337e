"""The UAS core (RFC 3261 §8.2, §9, §12-15, RFC 6026) on recorded INVITEs, in virtual time.

The INVITEs are those of real peers (``baresip_invite_udp.sip``, sipp) and INVITEs in the
style of Twilio, Telnyx, Asterisk, FreeSWITCH and linphone (tests/data/sip; credentials
and addresses scrubbed).
"""

from __future__ import annotations

import pytest

from ingress.sip.errors import LocalProtocolError
from ingress.sip.message import Peer, Request, Response, TransportKind
from ingress.sip.offer_answer import IncompatibleMedia, SdpSession
from ingress.sip.uas import CallState
from ingress.sip.uas_events import (
    CallConfirmed,
    CallEnded,
    CallOffered,
    DtmfInfoReceived,
    EndCause,
    MediaUpdated,
    RequestRefused,
)
from media import G722_16K, PCMU
from tests.ingress.sip.test_uas_harness import (
    TCP_PEER,
    UDP_PEER,
    Harness,
    ack_for,
    in_dialog,
    recorded,
    sdp,
)

BARESIP = recorded("baresip_invite_udp.sip")
TWILIO = recorded("twilio_invite_pcmu.sip")
ASTERISK = recorded("asterisk_invite.sip")
TELNYX = recorded("telnyx_invite_g722.sip")
FREESWITCH = recorded("freeswitch_invite_session_timer.sip")
LINPHONE = recorded("linphone_invite_no_common_codec.sip")
BARESIP_PEER = Peer(TransportKind.UDP, "127.0.0.1", 5998)


def options(extra: str = "", to_tag: str = "") -> str:
    tag = f";tag={to_tag}" if to_tag else ""
    return (
        "OPTIONS sip:telepath@203.0.113.10 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 54.172.60.1:5060;branch=z9hG4bKopt1\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:ping@twilio.com>;tag=o1\r\n"
        f"To: <sip:telepath@203.0.113.10>{tag}\r\nCall-ID: opt-1\r\nCSeq: 7 OPTIONS\r\n"
        f"{extra}Content-Length: 0\r\n\r\n"
    )


# -- out of dialog ------------------------------------------------------------------------
def test_options_answers_200_with_capabilities() -> None:
    h = Harness()
    h.feed(options())
    [response] = h.responses()
    assert response.status == 200
    allow = response.headers.get("Allow") or ""
    assert {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "UPDATE"} <= {
        m.strip() for m in allow.split(",")
    }
    assert "application/sdp" in (response.headers.get("Accept") or "")
    assert response.headers.get("Supported") == "timer"
    assert response.to is not None and response.to.tag


def test_unknown_method_gets_501_with_allow_and_register_405() -> None:
    h = Harness()
    h.feed(options().replace("OPTIONS", "FROBNICATE"))
    [response] = h.responses()
    assert response.status == 501 and "INVITE" in (response.headers.get("Allow") or "")
    h.feed(options().replace("OPTIONS", "REGISTER").replace("opt1", "reg1"))
    assert h.statuses() == [405]
    assert [e.status for e in h.of_type(RequestRefused)] == [501, 405]


def test_unsupported_require_gets_420_with_unsupported() -> None:
    h = Harness()
    invite = ASTERISK.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nRequire: 100rel\r\n")
    h.feed(invite)
    statuses = [r for r in h.responses() if r.status >= 200]
    assert [r.status for r in statuses] == [420]
    assert statuses[0].headers.get("Unsupported") == "100rel"
    assert not h.of_type(type(h.events[0])) or all(not isinstance(e, CallEnded) for e in h.events)


def test_require_timer_is_supported() -> None:
    h = Harness()
    h.feed(TWILIO.replace(b"Supported: timer\r\n", b"Supported: timer\r\nRequire: timer\r\n"))
    h.offered()  # accepted for the owner to decide


def test_in_dialog_request_for_an_unknown_dialog_gets_481() -> None:
    h = Harness()
    h.feed(options(to_tag="nosuchtag").replace("OPTIONS", "BYE").replace("opt1", "bye1"))
    assert h.statuses() == [481]


def test_merged_request_gets_482() -> None:
    h = Harness()
    h.feed(TWILIO)
    again = TWILIO.replace(b"z9hG4bK65d4.6a0ea9f4", b"z9hG4bK65d4.OTHERPATH")
    h.feed(again)
    assert 482 in h.statuses()


# -- a call ------------------------------------------------------------------------------------
def test_baresip_call_ring_answer_ack_bye() -> None:
    h = Harness()
    h.feed(BARESIP, BARESIP_PEER)
    assert h.statuses() == [100]  # 100 Trying at once (RFC 3261 §17.2.1)
    call = h.offered().call
    session = SdpSession("203.0.113.10", 30000, rand_bits=lambda k: 7)
    media = h.act(lambda now: h.uas.set_offer(call, session))
    assert media is not None and media.codec == PCMU
    h.act(lambda now: h.uas.ring(call, now))
    [ringing] = h.responses()
    assert ringing.status == 180
    tag = ringing.to.tag if ringing.to else None
    assert tag
    assert ringing.headers.get("Contact") == "<sip:telepath@203.0.113.10:5060>"
    h.act(lambda now: h.uas.answer(call, now))
    [ok] = h.responses()
    assert ok.status == 200 and ok.to is not None and ok.to.tag == tag  # same tag (§12.1.1)
    assert ok.content_type == "application/sdp"
    assert b"c=IN IP4 203.0.113.10" in ok.body and b"m=audio 30000 RTP/AVP 0 101" in ok.body
    assert h.uas.call_state(call) is CallState.ANSWERED
    h.feed(ack_for(BARESIP, ok), BARESIP_PEER)
    assert h.of_type(CallConfirmed) == [CallConfirmed(call=call)]
    assert h.uas.call_state(call) is CallState.CONFIRMED
    h.feed(in_dialog(BARESIP, ok, "BYE", 11654, branch="z9hG4bKbye1"), BARESIP_PEER)
    assert h.statuses() == [200]
    assert h.of_type(CallEnded) == [CallEnded(call=call, cause=EndCause.CALLER_BYE)]
    assert h.uas.call_state(call) is CallState.ENDED


def test_record_route_is_copied_into_dialog_responses_and_used_for_our_bye() -> None:
    h = Harness()
    call, ok = h.answered_call(TWILIO)
    assert ok.headers.get_all("Record-Route") == [
        "<sip:54.172.60.0:5060;lr;twnat=sip:198.51.100.23:5060>"
    ]
    h.feed(ack_for(TWILIO, ok))
    h.act(lambda now: h.uas.hangup(call, now))
    [bye_sent] = h.sent
    bye = bye_sent.message
    assert isinstance(bye, Request) and bye.method == "BYE"
    assert str(bye.uri) == "sip:+14155550111@172.18.4.210:5060;transport=udp"  # remote target
    assert bye.headers.get_all("Route") == [
        "<sip:54.172.60.0:5060;lr;twnat=sip:198.51.100.23:5060>"
    ]
    assert bye_sent.destination == Peer(TransportKind.UDP, "54.172.60.0", 5060)  # loose route
    assert bye.from_ is not None and bye.from_.tag == ok.to.tag if ok.to else False
    assert (
        bye.to is not None
        and bye.to.tag == "64720389_6772d868_3d72c92b-1c1c-4e2e-b1a3-9c1a5d03e1d7"
    )
    assert bye.call_id == "9d6ab9c1c7b6e1a0f6f5b8d1f00e2a7e@0.0.0.0"
    h.sent.clear()
    h.feed(
        "SIP/2.0 200 OK\r\n"
        f"Via: {bye.headers.get('Via')}\r\nFrom: {bye.headers.get('From')}\r\n"
        f"To: {bye.headers.get('To')}\r\nCall-ID: {bye.call_id}\r\nCSeq: {bye.headers.get('CSeq')}\r\n"
        "Content-Length: 0\r\n\r\n",
        Peer(TransportKind.UDP, "54.172.60.0", 5060),
    )
    assert h.of_type(CallEnded) == [CallEnded(call=call, cause=EndCause.LOCAL_BYE)]


def test_our_bye_that_times_out_still_ends_the_call() -> None:
    h = Harness()
    call, ok = h.answered_call(BARESIP, BARESIP_PEER)
    h.feed(ack_for(BARESIP, ok), BARESIP_PEER)
    h.act(lambda now: h.uas.hangup(call, now))
    h.advance(31.0)
    byes = [m for m in h.take() if isinstance(m, Request) and m.method == "BYE"]
    assert len(byes) > 3  # Timer E retransmissions over UDP
    assert not h.of_type(CallEnded)
    h.advance(2.0)  # Timer F = 64*T1 = 32 s
    assert h.of_type(CallEnded) == [CallEnded(call=call, cause=EndCause.LOCAL_BYE)]


def test_481_to_our_bye_ends_the_call() -> None:
    h = Harness()
    call, ok = h.answered_call(BARESIP, BARESIP_PEER)
    h.feed(ack_for(BARESIP, ok), BARESIP_PEER)
    h.act(lambda now: h.uas.hangup(call, now))
    [bye] = h.take()
    assert isinstance(bye, Request)
    h.feed(
        f"SIP/2.0 481 Call/Transaction Does Not Exist\r\nVia: {bye.headers.get('Via')}\r\n"
        f"From: {bye.headers.get('From')}\r\nTo: {bye.headers.get('To')}\r\n"
        f"Call-ID: {bye.call_id}\r\nCSeq: {bye.headers.get('CSeq')}\r\nContent-Length: 0\r\n\r\n",
        BARESIP_PEER,
    )
    assert h.of_type(CallEnded) == [CallEnded(call=call, cause=EndCause.LOCAL_BYE)]


def test_hangup_before_the_ack_waits_for_it() -> None:
    h = Harness()
    call, ok = h.answered_call(BARESIP, BARESIP_PEER)
    assert h.act(lambda now: h.uas.hangup(call, now)) is True
    assert not [m for m in h.take() if isinstance(m, Request)]  # §15: not before the ACK
    h.feed(ack_for(BARESIP, ok), BARESIP_PEER)
    assert [m.method for m in h.take() if isinstance(m, Request)] == ["BYE"]


# -- 2xx retransmission (§13.3.1.4) --------------------------------------------------------
def test_200_is_retransmitted_until_the_ack_then_bye_after_64_t1() -> None:
    h = Harness()
    call, ok = h.answered_call(BARESIP, BARESIP_PEER)
    h.advance(0.5)
    assert h.statuses() == [200]  # T1
    h.advance(1.0)
    assert h.statuses() == [200]  # 2*T1
    h.advance(2.0)
    assert h.statuses() == [200]  # 4*T1
    h.advance(28.0)
    retransmitted = h.statuses()
    assert retransmitted and set(retransmitted) == {200}  # capped at T2 = 4 s
    assert not h.of_type(CallEnded)
    h.advance(0.6)  # 64*T1 = 32 s after the 200: no ACK → BYE (§13.3.1.4)
    assert [m.method for m in h.take() if isinstance(m, Request)] == ["BYE"]
    h.advance(40.0)
    assert h.of_type(CallEnded) == [CallEnded(call=call, cause=EndCause.ACK_TIMEOUT)]


def test_no_200_retransmission_over_tcp() -> None:
    h = Harness()
    invite = FREESWITCH
    call, ok = h.answered_call(invite, TCP_PEER)
    h.advance(10.0)
    assert h.statuses() == []
    h.feed(ack_for(invite, ok), TCP_PEER)
    assert h.uas.call_state(call) is CallState.CONFIRMED
    assert ok.headers.get("Contact") == "<sip:telepath@203.0.113.10:5060;transport=tcp>"


def test_ack_with_a_wrong_cseq_is_ignored() -> None:
    h = Harness()
    call, ok = h.answered_call(BARESIP, BARESIP_PEER)
    h.feed(ack_for(BARESIP, ok).replace("CSeq: 11653 ACK", "CSeq: 99 ACK"), BARESIP_PEER)
    assert h.uas.call_state(call) is CallState.ANSWERED


# -- CANCEL (§9.2) ----------------------------------------------------------------------------
def cancel_for(invite: bytes) -> str:
    request = invite.split(b"\r\n\r\n")[0].decode()
    lines = request.split("\r\n")
    first = lines[0].replace("INVITE", "CANCEL", 1)
    keep = [
        ln
        for ln in lines[1:]
        if ln.split(":")[0] in ("Via", "From", "To", "Call-ID", "Max-Forwards")
    ]
    cseq = next(ln for ln in lines if ln.startswith("CSeq:")).replace("INVITE", "CANCEL")
    return "\r\n".join([first, *keep, cseq, "Content-Length: 0", "", ""])


def test_cancel_while_ringing_answers_200_and_487() -> None:
    h = Harness()
    h.feed(TELNYX)
    call = h.offered().call
    session = SdpSession("203.0.113.10", 30000, rand_bits=lambda k: 7)
    h.act(lambda now: h.uas.set_offer(call, session))
    h.act(lambda now: h.uas.ring(call, now))
    h.take()
    h.feed(cancel_for(TELNYX))
    responses = h.responses()
    assert sorted((r.status, r.cseq.method if r.cseq else "") for r in responses) == [
        (200, "CANCEL"),
        (487, "INVITE"),
    ]
    assert h.of_type(CallEnded) == [CallEnded(call=call, cause=EndCause.CALLER_CANCEL, status=487)]
    # The owner's late decisions are harmless no-ops, not errors.
    assert h.act(lambda now: h.uas.answer(call, now)) is False
    assert h.act(lambda now: h.uas.reject(call, 503, now)) is False
    assert h.uas.call_state(call) is CallState.ENDED


def test_cancel_before_any_decision_and_unmatched_cancel() -> None:
    h = Harness()
    h.feed(cancel_for(TELNYX).replace("z9hG4bK0N5Zc6Xe7g1Xp", "z9hG4bKnothing"))
    assert h.statuses() == [481]  # nothing to cancel
    h.feed(TELNYX)
    call = h.offered().call
    h.take()
    h.feed(cancel_for(TELNYX))
    assert sorted(h.statuses()) == [200, 487]
    with pytest.raises(LocalProtocolError):
        h.uas.set_offer(call, SdpSession("203.0.113.10", 30000, rand_bits=lambda k: 7))


def test_cancel_after_the_200_has_no_effect() -> None:
    h = Harness()
    call, ok = h.answered_call(TELNYX)
    h.feed(cancel_for(TELNYX))
    assert h.statuses() == [200]
    assert h.uas.call_state(call) is CallState.ANSWERED


# -- rejections ---------------------------------------------------------------------------------
def test_reject_with_challenge_headers_and_the_ack_is_absorbed() -> None:
    h = Harness()
    h.feed(TWILIO)
    call = h.offered().call
    challenge = ("WWW-Authenticate", 'Digest realm="sip.telepath.example", nonce="n", qop="auth"')
    h.act(lambda now: h.uas.reject(call, 401, now, extra=[challenge]))
    [_, unauthorized] = h.responses()
    assert unauthorized.status == 401
    assert unauthorized.headers.get("WWW-Authenticate") == challenge[1]
    assert h.of_type(CallEnded) == [CallEnded(call=call, cause=EndCause.REJECTED, status=401)]
    tag = unauthorized.to.tag if unauthorized.to else ""
    ack = TWILIO.split(b"\r\n\r\n")[0].decode().replace("INVITE sip", "ACK sip", 1)
    ack = ack.replace("CSeq: 1 INVITE", "CSeq: 1 ACK").replace(
        "To: <sip:+14155550199@sip.telepath.example>",
        f"To: <sip:+14155550199@sip.telepath.example>;tag={tag}",
    )
    ack = "\r\n".join(ln for ln in ack.split("\r\n") if not ln.startswith("Content-")) + (
        "\r\nContent-Length: 0\r\n\r\n"
    )
    h.feed(ack)
    h.advance(40)
    assert h.statuses() == []  # the ACK stopped Timer G: no 401 retransmissions


def test_linphone_offer_without_common_codec() -> None:
    h = Harness()
    h.feed(LINPHONE)
    call = h.offered().call
    with pytest.raises(IncompatibleMedia) as caught:
        h.uas.set_offer(call, SdpSession("203.0.113.10", 30000, rand_bits=lambda k: 7))
    h.act(lambda now: h.uas.reject(call, 488, now, extra=[("Warning", caught.value.warning)]))
    final = [r for r in h.responses() if r.status >= 200]
    assert [r.status for r in final] == [488]
    assert (final[0].headers.get("Warning") or "").startswith("305 ")


def test_ring_timeout_sends_480() -> None:
    h = Harness()
    h.feed(ASTERISK)
    call = h.offered().call
    h.take()
    h.advance(119)
    assert h.statuses() == []
    h.advance(1.2)
    assert h.statuses() == [480]  # then Timer G retransmits it until an ACK
    assert h.of_type(CallEnded) == [CallEnded(call=call, cause=EndCause.RING_TIMEOUT, status=480)]


def test_local_misuse_raises() -> None:
    h = Harness()
    h.feed(ASTERISK)
    call = h.offered().call
    with pytest.raises(LocalProtocolError):
        h.uas.answer(call, h.now)  # no set_offer yet
    with pytest.raises(LocalProtocolError):
        h.uas.hangup(call, h.now)  # unanswered calls are rejected
    with pytest.raises(LocalProtocolError):
        h.uas.reject(call, 200, h.now)
    with pytest.raises(LocalProtocolError):
        h.uas.ring("no-such-call", h.now)


# -- in-dialog requests ---------------------------------------------------------------------------
def confirmed(invite: bytes, source: Peer = UDP_PEER) -> tuple[Harness, str, Response]:
    h = Harness()
    call, ok = h.answered_call(invite, source)
    h.feed(ack_for(invite, ok), source)
    h.take()
    return h, call, ok


def test_out_of_order_cseq_gets_500_and_wrong_tag_481() -> None:
    h, call, ok = confirmed(ASTERISK)
    h.feed(in_dialog(ASTERISK, ok, "INFO", 21457, branch="z9hG4bKold"))
    assert h.statuses() == [500]  # §12.2.2: not above the INVITE's CSeq
    h.feed(in_dialog(ASTERISK, ok, "BYE", 21460, branch="z9hG4bKbadtag", to_tag="nope"))
    assert h.statuses() == [481]
    assert h.uas.call_state(call) is CallState.CONFIRMED


def test_options_inside_the_dialog() -> None:
    h, call, ok = confirmed(ASTERISK)
    h.feed(in_dialog(ASTERISK, ok, "OPTIONS", 21458, branch="z9hG4bKopt"))
    [response] = h.responses()
    assert response.status == 200 and response.to is not None
    assert response.to.tag == (ok.to.tag if ok.to else None)


def test_reinvite_hold_and_resume() -> None:
    h, call, ok = confirmed(ASTERISK)
    h.feed(in_dialog(ASTERISK, ok, "INVITE", 21458, branch="z9hG4bKhold", body=sdp("sendonly")))
    [held] = [r for r in h.responses() if r.status == 200]
    assert b"a=recvonly" in held.body  # RFC 3264 §6.1: sendonly is answered recvonly
    [update] = h.of_type(MediaUpdated)
    assert update.media.on_hold
    h.feed(ack_for(ASTERISK, held, branch="z9hG4bKackhold").replace("CSeq: 21457", "CSeq: 21458"))
    h.feed(in_dialog(ASTERISK, ok, "INVITE", 21459, branch="z9hG4bKres", body=sdp("sendrecv")))
    [resumed] = [r for r in h.responses() if r.status == 200]
    assert b"a=sendrecv" in resumed.body
    assert not h.of_type(MediaUpdated)[-1].media.on_hold
    assert h.uas.call_state(call) is CallState.CONFIRMED


def test_reinvite_with_no_common_codec_gets_488_and_the_call_stays() -> None:
    h, call, ok = confirmed(ASTERISK)
    body = sdp(codecs="96").replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:96 opus/48000/2")
    h.feed(in_dialog(ASTERISK, ok, "INVITE", 21458, branch="z9hG4bKbad", body=body))
    [final] = [r for r in h.responses() if r.status >= 200]
    assert final.status == 488 and (final.headers.get("Warning") or "").startswith("305")
    assert h.uas.call_state(call) is CallState.CONFIRMED


def test_reinvite_before_the_ack_gets_500_with_retry_after() -> None:
    h = Harness()
    call, ok = h.answered_call(ASTERISK)
    h.feed(in_dialog(ASTERISK, ok, "INVITE", 21458, branch="z9hG4bKearly", body=sdp()))
    [final] = [r for r in h.responses() if r.status >= 200 and r.cseq and r.cseq.seq == 21458]
    assert final.status == 500 and final.headers.get("Retry-After") == "1"


def test_update_without_sdp_refreshes_the_session() -> None:
    h, call, ok = confirmed(TELNYX)
    h.feed(
        in_dialog(
            TELNYX,
            ok,
            "UPDATE",
            45338103,
            branch="z9hG4bKupd",
            extra=("Session-Expires: 600;refresher=uac", "Supported: timer"),
        )
    )
    [response] = h.responses()
    assert response.status == 200
    assert response.headers.get("Session-Expires") == "600;refresher=uac"


def test_reinvite_without_sdp_is_offered_in_the_200_and_answered_in_the_ack() -> None:
    h, call, ok = confirmed(ASTERISK)
    h.feed(in_dialog(ASTERISK, ok, "INVITE", 21458, branch="z9hG4bKlate"))
    [offer] = [r for r in h.responses() if r.status == 200]
    assert b"m=audio 30000" in offer.body
    ack = ack_for(ASTERISK, offer, branch="z9hG4bKlateack", body=sdp(port=13000))
    h.feed(ack.replace("CSeq: 21457", "CSeq: 21458"))
    [update] = h.of_type(MediaUpdated)
    assert update.media.remote_port == 13000


@pytest.mark.parametrize(
    ("content_type", "body", "digit", "duration"),
    [
        ("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n", "5", 160),
        ("application/dtmf-relay", "Signal= #\r\nDuration= 250\r\n", "#", 250),
        ("application/dtmf", "9", "9", None),
    ],
)
def test_info_dtmf(content_type: str, body: str, digit: str, duration: int | None) -> None:
    h, call, ok = confirmed(ASTERISK)
    h.feed(
        in_dialog(
            ASTERISK, ok, "INFO", 21458, branch="z9hG4bKinfo", body=body, content_type=content_type
        )
    )
    assert h.statuses() == [200]
    assert h.of_type(DtmfInfoReceived) == [
        DtmfInfoReceived(call=call, digit=digit, duration_ms=duration)
    ]


def test_info_with_another_body_type_gets_415() -> None:
    h, call, ok = confirmed(ASTERISK)
    h.feed(
        in_dialog(
            ASTERISK,
            ok,
            "INFO",
            21458,
            branch="z9hG4bKinfo",
            body="<xml/>",
            content_type="application/media_control+xml",
        )
    )
    [response] = h.responses()
    assert response.status == 415 and "application/dtmf-relay" in (
        response.headers.get("Accept") or ""
    )
    assert not h.of_type(DtmfInfoReceived)


def test_bye_retransmission_is_absorbed_and_late_requests_get_481() -> None:
    h, call, ok = confirmed(ASTERISK)
    bye = in_dialog(ASTERISK, ok, "BYE", 21458, branch="z9hG4bKbye")
    h.feed(bye)
    h.feed(bye)  # retransmission: the transaction answers again, no second end
    assert h.statuses() == [200, 200]
    assert len(h.of_type(CallEnded)) == 1
    h.feed(
        in_dialog(
            ASTERISK,
            ok,
            "INFO",
            21459,
            branch="z9hG4bKlate",
            body="5",
            content_type="application/dtmf",
        )
    )
    assert h.statuses() == [481]


def test_g722_preference_from_the_trunk() -> None:
    h = Harness()
    h.feed(TWILIO)
    call = h.offered().call
    session = SdpSession("203.0.113.10", 30000, rand_bits=lambda k: 7, preference=(G722_16K,))
    media = h.uas.set_offer(call, session)
    assert media is not None and media.codec == PCMU  # Twilio offers no G.722
    h2 = Harness()
    h2.feed(FREESWITCH, TCP_PEER)
    call2 = h2.offered().call
    session2 = SdpSession("203.0.113.10", 30002, rand_bits=lambda k: 7, preference=(G722_16K,))
    media2 = h2.uas.set_offer(call2, session2)
    assert media2 is not None and media2.codec == G722_16K and media2.clock_rate == 8000


def test_invite_without_sdp_gets_our_offer_and_the_ack_answer() -> None:
    h = Harness()
    invite = ASTERISK.split(b"\r\n\r\n")[0].replace(b"Content-Length: 263", b"Content-Length: 0")
    invite = invite.replace(b"Content-Type: application/sdp\r\n", b"") + b"\r\n\r\n"
    h.feed(invite)
    call = h.offered().call
    session = SdpSession("203.0.113.10", 30000, rand_bits=lambda k: 7, supported=(PCMU,))
    assert h.uas.set_offer(call, session) is None
    h.act(lambda now: h.uas.answer(call, now))
    [ok] = [r for r in h.responses() if r.status == 200]
    assert b"m=audio 30000 RTP/AVP 0 101" in ok.body
    h.feed(ack_for(invite, ok, body=sdp(port=14000)))
    [update] = h.of_type(MediaUpdated)
    assert update.media.remote_port == 14000 and update.media.codec == PCMU
    assert h.of_type(CallConfirmed)


def test_a_closed_connection_ends_only_unanswered_calls() -> None:
    h = Harness()
    h.feed(FREESWITCH, TCP_PEER)
    ringing = h.offered().call
    answered_h = Harness()
    answered, ok = answered_h.answered_call(FREESWITCH, TCP_PEER)
    answered_h.feed(ack_for(FREESWITCH, ok), TCP_PEER)
    h.uas.transport_failed(TCP_PEER, h.now)
    h.act(lambda now: None)
    assert h.of_type(CallEnded) == [CallEnded(call=ringing, cause=EndCause.TRANSPORT_FAILED)]
    answered_h.uas.transport_failed(TCP_PEER, answered_h.now)
    assert answered_h.uas.call_state(answered) is CallState.CONFIRMED


def test_183_session_progress_carries_the_answer_for_early_media() -> None:
    h = Harness()
    h.feed(TWILIO)
    call = h.offered().call
    h.uas.set_offer(call, SdpSession("203.0.113.10", 30000, rand_bits=lambda k: 7))
    h.take()
    h.act(lambda now: h.uas.ring(call, now, status=183, early_media=True))
    [progress] = h.responses()
    assert progress.status == 183 and progress.content_type == "application/sdp"
    assert b"m=audio 30000 RTP/AVP 0 101" in progress.body
    h.act(lambda now: h.uas.answer(call, now))
    [ok] = h.responses()
    assert ok.body == progress.body  # the same answer, unchanged session version


def test_responses_carry_received_and_rport() -> None:
    """RFC 3261 §18.2.1 / RFC 3581 §4: the top Via of the answer says where the request
    really came from (baresip asks with ``rport``; Twilio's edge does not)."""
    h = Harness()
    natted = Peer(TransportKind.UDP, "192.0.2.77", 40123)
    h.feed(BARESIP, natted)
    [trying] = h.responses()
    assert trying.headers.get_all("Via")[0] == (
        "SIP/2.0/UDP 127.0.0.1:5998;branch=z9hG4bK2a2f7dbf32bd8aa7;received=192.0.2.77;rport=40123"
    )
    h2 = Harness()
    h2.feed(TWILIO, Peer(TransportKind.UDP, "54.172.60.0", 5060))
    vias = h2.responses()[0].headers.get_all("Via")
    assert vias[0].endswith("branch=z9hG4bK65d4.6a0ea9f4c4b5ef1e87bd7d0d9fd7f3e5.0")  # same host
    assert vias[1] == "SIP/2.0/UDP 172.18.4.210:5060;rport=5060;branch=z9hG4bKS8Bt6Q4N6rHjK"
    h3 = Harness()
    h3.feed(TWILIO, Peer(TransportKind.UDP, "54.172.61.9", 5060))
    [sent] = h3.sent
    assert "received=54.172.61.9" in (sent.message.headers.get_all("Via")[0])
    assert sent.destination == Peer(TransportKind.UDP, "54.172.61.9", 5060)


def test_draining_answers_options_and_new_invites_503_but_keeps_dialogs() -> None:
    """gateway.drain: a draining node fails OPTIONS probes so the load balancer takes it out."""
    h, call, ok = confirmed(ASTERISK)
    h.act(lambda now: h.uas.set_draining(30))
    h.feed(options())
    [probe] = h.responses()
    assert probe.status == 503 and probe.headers.get("Retry-After") == "30"
    # A call already up still gets its in-dialog OPTIONS answered.
    h.feed(in_dialog(ASTERISK, ok, "OPTIONS", 21458, branch="z9hG4bKoptd"))
    [inside] = h.responses()
    assert inside.status == 200
    # A new call is refused before it is ever offered to the owner.
    offered_before = len(h.of_type(CallOffered))
    fresh = ASTERISK.replace(b"Call-ID: ", b"Call-ID: drained-").replace(b"z9hG4bK", b"z9hG4bKdr")
    h.feed(fresh)
    assert h.statuses() == [100, 503] or h.statuses() == [503]
    assert len(h.of_type(CallOffered)) == offered_before


def test_a_sips_call_over_tls_gets_a_sips_contact() -> None:
    """RFC 3261 §12.1.1 / §19.1: a dialog set up with a SIPS Request-URI keeps SIPS in our
    Contact, so in-dialog requests stay on TLS."""
    tls_peer = Peer(TransportKind.TLS, "198.51.100.40", 5061)
    invite = (
        ASTERISK.replace(
            b"INVITE sip:telepath-pbx@203.0.113.10:5060",
            b"INVITE sips:telepath-pbx@203.0.113.10:5061",
        )
        .replace(b"Via: SIP/2.0/UDP 198.51.100.40:5060", b"Via: SIP/2.0/TLS 198.51.100.40:5061")
        .replace(
            b"Contact: <sip:asterisk@198.51.100.40:5060>",
            b"Contact: <sips:asterisk@198.51.100.40:5061>",
        )
    )
    h = Harness()
    _, ok = h.answered_call(invite, tls_peer)
    assert ok.status == 200
    [contact] = ok.contacts
    assert str(contact.uri).startswith("sips:")
    plain = Harness()
    _, ok_plain = plain.answered_call(ASTERISK, UDP_PEER)
    assert str(ok_plain.contacts[0].uri).startswith("sip:")
