"""SDP offer/answer (RFC 3264) against offers written in carriers' and UAs' styles."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingress.sip.offer_answer import (
    Direction,
    IncompatibleMedia,
    NegotiatedMedia,
    OfferAnswerError,
    SdpSession,
)
from ingress.sip.sdp import MalformedSdp, SdpError, SdpLimits, SessionDescription, parse_sdp
from media.frames import G722_16K, PCMA, PCMU

DATA = Path(__file__).resolve().parent.parent.parent / "data" / "sdp"
PUBLIC = "203.0.113.5"


def fixture(name: str) -> bytes:
    lines = [line for line in (DATA / name).read_text().splitlines() if not line.startswith("#")]
    return "\r\n".join(lines).encode() + b"\r\n"


def session(**kwargs: object) -> SdpSession:
    rng = random.Random(7)
    return SdpSession(PUBLIC, 40000, rand_bits=rng.getrandbits, **kwargs)  # type: ignore[arg-type]


def answer_of(s: SdpSession, name: str) -> tuple[NegotiatedMedia, SessionDescription]:
    answered = s.receive_offer(fixture(name))
    return answered.media, parse_sdp(answered.answer)


def test_twilio_pcmu_answer() -> None:
    media, answer = answer_of(session(), "twilio_offer.sdp")
    assert media == NegotiatedMedia(
        remote_address="198.51.100.21",
        remote_port=13218,
        payload_type=0,
        codec=PCMU,
        clock_rate=8000,
        ptime=20,
        direction=Direction.SENDRECV,
        rtcp_mux=False,
        remote_rtcp_address="198.51.100.21",
        remote_rtcp_port=13219,
        telephone_event_pt=101,
        telephone_event_clock_rate=8000,
    )
    assert answer.origin.address == PUBLIC
    assert answer.connection is not None and answer.connection.address == PUBLIC
    (audio,) = answer.media
    assert (audio.port, audio.proto, audio.formats) == (40000, "RTP/AVP", ("0", "101"))
    assert audio.rtpmaps()[0].encoding == "PCMU"
    assert audio.rtpmaps()[101].encoding == "telephone-event"
    assert audio.fmtp(101) == "0-16"
    assert audio.int_attribute("ptime") == 20
    assert audio.has("sendrecv")
    assert not audio.has("rtcp-mux")


def test_answer_bytes_for_twilio_are_exact() -> None:
    s = session()
    body = s.receive_offer(fixture("twilio_offer.sdp")).answer.decode()
    sess_id = parse_sdp(body).origin.session_id
    assert body == (
        f"v=0\r\no=- {sess_id} 0 IN IP4 {PUBLIC}\r\ns=Telepath\r\nc=IN IP4 {PUBLIC}\r\n"
        "t=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
        "a=maxptime:20\r\na=sendrecv\r\n"
    )


def test_telnyx_g722_first_is_taken_with_8000_clock() -> None:
    media, answer = answer_of(session(), "telnyx_offer_g722.sdp")
    assert media.codec == G722_16K
    assert media.payload_type == 9
    # RFC 3551 §4.5.2: 16 kHz audio, 8 kHz RTP clock; 20 ms is 160 timestamp units.
    assert media.clock_rate == 8000 and media.codec.sample_rate == 16000
    assert media.samples_per_packet == 160
    assert answer.media[0].rtpmaps()[9].clock_rate == 8000
    assert media.comfort_noise_pt is None  # not asked for


def test_comfort_noise_when_enabled() -> None:
    media, answer = answer_of(session(comfort_noise=True), "telnyx_offer_g722.sdp")
    assert media.comfort_noise_pt == 13
    assert answer.media[0].formats == ("9", "101", "13")


def test_asterisk_caller_order_is_pcma() -> None:
    media, answer = answer_of(session(), "asterisk_offer.sdp")
    assert (media.codec, media.payload_type) == (PCMA, 8)
    assert answer.media[0].formats == ("8", "101")


def test_trunk_preference_overrides_caller_order() -> None:
    media, _ = answer_of(session(preference=[G722_16K]), "asterisk_offer.sdp")
    assert (media.codec, media.payload_type) == (G722_16K, 9)


def test_supported_restricts_choice() -> None:
    media, _ = answer_of(session(supported=[PCMU]), "asterisk_offer.sdp")
    assert media.codec == PCMU


def test_freeswitch_video_rejected_with_port_zero_and_rtcp_parsed() -> None:
    media, answer = answer_of(session(), "freeswitch_offer_video.sdp")
    assert (media.codec, media.payload_type) == (G722_16K, 9)  # opus skipped
    assert (media.remote_rtcp_address, media.remote_rtcp_port) == ("198.51.100.7", 16385)
    audio, video = answer.media
    assert audio.port == 40000
    assert (video.media, video.port, video.proto, video.formats) == ("video", 0, "RTP/AVP", ("96",))


def test_baresip_rtcp_mux_honoured() -> None:
    s = session()
    answered = s.receive_offer(fixture("baresip_offer.sdp").replace(b"\r\n", b"\n"))
    media = answered.media
    assert media.rtcp_mux
    assert (media.remote_rtcp_address, media.remote_rtcp_port) == ("203.0.113.77", 30428)
    assert parse_sdp(answered.answer).media[0].has("rtcp-mux")
    assert media.codec == G722_16K


def test_linphone_picks_pcmu_and_matching_event_clock() -> None:
    media, answer = answer_of(session(), "linphone_offer.sdp")
    assert (media.codec, media.payload_type) == (PCMU, 0)
    assert (media.telephone_event_pt, media.telephone_event_clock_rate) == (100, 8000)
    assert answer.media[0].rtpmaps()[100].clock_rate == 8000
    assert media.ptime == 20  # no ptime offered: our default


def test_dynamic_payload_type_by_rtpmap_name() -> None:
    offer = (
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.8\r\ns=-\r\nc=IN IP4 192.0.2.8\r\nt=0 0\r\n"
        b"m=audio 5004 RTP/AVP 112 96\r\na=rtpmap:112 pcma/8000\r\n"
        b"a=rtpmap:96 telephone-event/16000\r\na=ptime:30\r\n"
    )
    media = session().receive_offer(offer).media
    assert (media.payload_type, media.codec) == (112, PCMA)
    # Only a 16000 event clock offered: take it although it differs (RFC 4733 §2.1 SHOULD).
    assert (media.telephone_event_pt, media.telephone_event_clock_rate) == (96, 16000)
    assert media.ptime == 30


def test_static_payload_type_restated_with_other_codec_is_not_taken() -> None:
    offer = (
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.8\r\ns=-\r\nc=IN IP4 192.0.2.8\r\nt=0 0\r\n"
        b"m=audio 5004 RTP/AVP 0 8\r\na=rtpmap:0 G729/8000\r\n"
    )
    assert session().receive_offer(offer).media.codec == PCMA


@pytest.mark.parametrize(
    ("ptime", "maxptime", "expected"),
    [
        (None, None, 20),
        ("30", None, 30),
        ("25", None, 20),
        ("20", "10", 10),
        (None, "40", 20),
        ("60", "40", 40),
    ],
)
def test_ptime_and_maxptime(ptime: str | None, maxptime: str | None, expected: int) -> None:
    offer = "v=0\r\no=- 1 1 IN IP4 192.0.2.8\r\ns=-\r\nc=IN IP4 192.0.2.8\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n"
    if ptime:
        offer += f"a=ptime:{ptime}\r\n"
    if maxptime:
        offer += f"a=maxptime:{maxptime}\r\n"
    assert session().receive_offer(offer).media.ptime == expected


def test_srtp_only_offer_is_488_with_warning() -> None:
    with pytest.raises(IncompatibleMedia) as info:
        session().receive_offer(fixture("twilio_srtp_offer.sdp"))
    assert info.value.status_hint == 488
    assert info.value.warning == '305 telepath "Incompatible media format"'


def test_no_common_codec_is_488() -> None:
    offer = (
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.8\r\ns=-\r\nc=IN IP4 192.0.2.8\r\nt=0 0\r\n"
        b"m=audio 5004 RTP/AVP 18 3\r\na=rtpmap:18 G729/8000\r\n"
    )
    with pytest.raises(IncompatibleMedia):
        session().receive_offer(offer)


def test_audio_without_connection_is_malformed() -> None:
    offer = b"v=0\r\no=- 1 1 IN IP4 192.0.2.8\r\ns=-\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n"
    with pytest.raises(MalformedSdp):
        session().receive_offer(offer)


@pytest.mark.parametrize(
    ("offered", "ours"),
    [
        ("sendrecv", Direction.SENDRECV),
        ("sendonly", Direction.RECVONLY),
        ("recvonly", Direction.SENDONLY),
        ("inactive", Direction.INACTIVE),
    ],
)
def test_direction_is_mirrored(offered: str, ours: Direction) -> None:
    offer = (
        "v=0\r\no=- 1 1 IN IP4 192.0.2.8\r\ns=-\r\nc=IN IP4 192.0.2.8\r\nt=0 0\r\n"
        f"m=audio 5004 RTP/AVP 0\r\na={offered}\r\n"
    )
    answered = session().receive_offer(offer)
    assert answered.media.direction is ours
    assert parse_sdp(answered.answer).media[0].has(ours.value)
    assert answered.media.on_hold == (ours is not Direction.SENDRECV)


def test_session_level_direction_applies() -> None:
    offer = (
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.8\r\ns=-\r\nc=IN IP4 192.0.2.8\r\nt=0 0\r\n"
        b"a=sendonly\r\nm=audio 5004 RTP/AVP 0\r\n"
    )
    assert session().receive_offer(offer).media.direction is Direction.RECVONLY


def test_asterisk_hold_and_resume_reinvites_bump_version() -> None:
    s = session()
    first = s.receive_offer(fixture("asterisk_offer.sdp"))
    v0 = parse_sdp(first.answer).origin
    hold = s.receive_offer(fixture("asterisk_reinvite_hold.sdp"))
    v1 = parse_sdp(hold.answer).origin
    assert hold.media.direction is Direction.RECVONLY and hold.media.on_hold
    assert parse_sdp(hold.answer).media[0].has("recvonly")
    assert v1.session_id == v0.session_id
    assert v1.session_version == v0.session_version + 1
    resume = s.receive_offer(fixture("asterisk_offer.sdp"))
    v2 = parse_sdp(resume.answer).origin
    assert resume.media.direction is Direction.SENDRECV
    assert v2.session_version == v1.session_version + 1
    # A refresh re-INVITE with the same offer: nothing changed, the version stays (RFC 3264 §8).
    again = s.receive_offer(fixture("asterisk_offer.sdp"))
    assert parse_sdp(again.answer).origin.session_version == v2.session_version
    assert again.answer == resume.answer


def test_cisco_c0_hold_is_treated_as_hold() -> None:
    s = session()
    s.receive_offer(fixture("twilio_offer.sdp"))
    held = s.receive_offer(fixture("cisco_hold_c0.sdp"))
    assert held.media.direction is Direction.RECVONLY
    assert held.media.remote_address == "0.0.0.0"
    assert parse_sdp(held.answer).media[0].has("recvonly")


def test_reinvite_keeps_the_codec_in_use() -> None:
    s = session()
    s.receive_offer(fixture("asterisk_offer.sdp"))  # PCMA chosen
    reordered = fixture("asterisk_offer.sdp").replace(b"RTP/AVP 8 0 3 9", b"RTP/AVP 0 8 3 9")
    assert s.receive_offer(reordered).media.codec == PCMA


def test_failed_reoffer_leaves_state_alone() -> None:
    s = session()
    good = s.receive_offer(fixture("twilio_offer.sdp"))
    with pytest.raises(IncompatibleMedia):
        s.receive_offer(fixture("twilio_srtp_offer.sdp"))
    assert s.media == good.media
    assert s.receive_offer(fixture("twilio_offer.sdp")).answer == good.answer


def test_offer_for_invite_without_sdp_then_answer_from_ack() -> None:
    s = session(preference=[PCMA])
    offer = parse_sdp(s.create_offer())
    (audio,) = offer.media
    assert audio.formats == ("8", "0", "9", "101")
    assert audio.rtpmaps()[9].clock_rate == 8000
    assert audio.has("sendrecv")
    assert s.awaiting_answer
    media = s.receive_answer(fixture("telnyx_answer.sdp"))
    assert (media.codec, media.payload_type, media.remote_port) == (PCMA, 8, 21470)
    assert media.telephone_event_pt == 101
    assert media.direction is Direction.SENDRECV
    assert not s.awaiting_answer
    with pytest.raises(OfferAnswerError):
        s.receive_answer(fixture("telnyx_answer.sdp"))


def test_answer_rejecting_audio_is_488() -> None:
    s = session()
    s.create_offer()
    rejected = fixture("telnyx_answer.sdp").replace(b"m=audio 21470", b"m=audio 0")
    with pytest.raises(IncompatibleMedia):
        s.receive_answer(rejected)


def test_ipv6_public_address() -> None:
    s = SdpSession("2001:db8::5", 40000, rand_bits=random.Random(1).getrandbits)
    answer = parse_sdp(s.receive_offer(fixture("twilio_offer.sdp")).answer)
    assert answer.origin.addrtype == "IP6"
    assert answer.connection is not None and answer.connection.addrtype == "IP6"


def test_best_effort_srtp_pair_takes_the_plain_rtp_stream() -> None:
    offer = (
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.8\r\ns=-\r\nc=IN IP4 192.0.2.8\r\nt=0 0\r\n"
        b"m=audio 5004 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\n"
        b"m=audio 5006 RTP/AVP 0\r\n"
    )
    answered = session().receive_offer(offer)
    assert answered.media.remote_port == 5006
    first, second = parse_sdp(answered.answer).media
    assert (first.port, first.proto) == (0, "RTP/SAVP")
    assert (second.port, second.formats) == (40000, ("0",))  # no telephone-event offered


_LINES = fixture("telnyx_offer_g722.sdp").decode().split("\r\n")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(_LINES) - 1),
            st.sampled_from(["drop", "dup", "cut", "junk"]),
            st.text(max_size=12),
        ),
        max_size=6,
    )
)
def test_mangled_offers_yield_an_answer_or_an_sdp_error(
    edits: list[tuple[int, str, str]],
) -> None:
    lines = list(_LINES)
    for index, action, junk in edits:
        index %= len(lines) or 1
        if not lines:
            break
        if action == "drop":
            del lines[index]
        elif action == "dup":
            lines.insert(index, lines[index])
        elif action == "cut":
            lines[index] = lines[index][: len(lines[index]) // 2]
        else:
            lines[index] = lines[index] + junk
    s = session()
    try:
        answered = s.receive_offer("\r\n".join(lines))
    except SdpError as exc:
        assert exc.status_hint in (400, 488)
        assert s.media is None
        return
    media = answered.media
    assert media.codec in (PCMU, PCMA, G722_16K)
    assert media.clock_rate == 8000
    answer = parse_sdp(answered.answer)
    assert any(section.port == 40000 for section in answer.media)


def test_hostile_numbers_in_offer_attributes() -> None:
    huge = "9" * 5000
    offer = (
        "v=0\r\no=- 1 1 IN IP4 192.0.2.8\r\ns=-\r\nc=IN IP4 192.0.2.8\r\nt=0 0\r\n"
        f"m=audio 5004 RTP/AVP 0 {huge} 1¹\r\na=rtcp:{huge}\r\na=ptime:{huge}\r\n"
    )
    s = SdpSession(
        PUBLIC, 40000, rand_bits=random.Random(1).getrandbits, limits=SdpLimits(max_bytes=1 << 20)
    )
    media = s.receive_offer(offer).media
    assert (media.payload_type, media.ptime, media.remote_rtcp_port) == (0, 20, 5005)
