"""SDP parsing and serialisation (RFC 4566) on offers written in carriers' and UAs' styles."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingress.sip.sdp import (
    Attribute,
    Connection,
    MalformedSdp,
    MediaSection,
    Origin,
    SdpError,
    SdpLimits,
    SessionDescription,
    parse_sdp,
)

DATA = Path(__file__).resolve().parent.parent.parent / "data" / "sdp"


def fixture(name: str, *, crlf: bool = True) -> bytes:
    """A fixture body without its ``#`` header comment, CRLF line ends unless asked not."""
    lines = [line for line in (DATA / name).read_text().splitlines() if not line.startswith("#")]
    return ("\r\n" if crlf else "\n").join(lines).encode() + (b"\r\n" if crlf else b"\n")


ALL = sorted(p.name for p in DATA.glob("*.sdp"))


def test_twilio_offer_fields() -> None:
    sdp = parse_sdp(fixture("twilio_offer.sdp"))
    assert sdp.origin == Origin("root", 1580416723, 1580416723, "198.51.100.21")
    assert sdp.session_name == "Twilio Media Gateway"
    assert sdp.connection == Connection("198.51.100.21")
    (audio,) = sdp.media
    assert (audio.media, audio.port, audio.proto) == ("audio", 13218, "RTP/AVP")
    assert audio.formats == ("0", "8", "101")
    assert audio.rtpmaps()[101].encoding == "telephone-event"
    assert audio.rtpmaps()[101].clock_rate == 8000
    assert audio.fmtp(101) == "0-16"
    assert audio.int_attribute("ptime") == 20
    assert audio.int_attribute("maxptime") == 150
    assert audio.has("sendrecv")
    assert sdp.connection_for(audio) == Connection("198.51.100.21")


def test_baresip_lf_line_ends_and_unknown_attributes_kept() -> None:
    sdp = parse_sdp(fixture("baresip_offer.sdp", crlf=False))
    assert Attribute("tool", "baresip 3.10.1") in sdp.attributes
    (audio,) = sdp.media
    assert audio.has("rtcp-mux")
    assert audio.attribute("label") == "1"
    assert audio.attribute("ssrc") == "2736254219 cname:5f81e2b4-b8a2-4f10-a8fe-8c1a3d2e1f00"
    assert audio.other == (("b", "AS:96"),)
    assert audio.rtpmaps()[96].channels == 2


def test_freeswitch_two_media_sections_with_own_attributes() -> None:
    sdp = parse_sdp(fixture("freeswitch_offer_video.sdp"))
    audio, video = sdp.media
    assert audio.attribute("rtcp") == "16385 IN IP4 198.51.100.7"
    assert video.media == "video"
    assert video.port == 16386
    assert video.rtpmaps()[96].clock_rate == 90000
    assert audio.rtpmaps().keys() == {102, 9, 0, 8, 101, 13}


def test_media_level_connection_overrides_session_level() -> None:
    body = (
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 0\r\nc=IN IP4 192.0.2.99\r\n"
    )
    sdp = parse_sdp(body)
    assert sdp.connection_for(sdp.media[0]) == Connection("192.0.2.99")


@pytest.mark.parametrize("name", ALL)
def test_round_trip_is_stable(name: str) -> None:
    first = parse_sdp(fixture(name))
    again = parse_sdp(bytes(first))
    assert again == first
    assert bytes(again) == bytes(first)


def test_serialise_order_and_crlf() -> None:
    sdp = SessionDescription(
        origin=Origin("-", 7, 8, "203.0.113.5"),
        session_name="Telepath",
        connection=Connection("203.0.113.5"),
        media=(
            MediaSection(
                "audio",
                4000,
                "RTP/AVP",
                ("0", "101"),
                attributes=(Attribute("rtpmap", "0 PCMU/8000"), Attribute("sendrecv")),
            ),
        ),
    )
    assert str(sdp) == (
        "v=0\r\no=- 7 8 IN IP4 203.0.113.5\r\ns=Telepath\r\nc=IN IP4 203.0.113.5\r\n"
        "t=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"o=- 1 1 IN IP4 192.0.2.1\r\n",  # no v=0
        b"v=1\r\no=- 1 1 IN IP4 192.0.2.1\r\n",
        b"v=0\r\ns=-\r\n",  # no o=
        b"v=0\r\no=- x 1 IN IP4 192.0.2.1\r\n",
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nm=audio seven RTP/AVP 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nm=audio 70000 RTP/AVP 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nm=audio\r\n",
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nc=IN IP4\r\n",
    ],
)
def test_malformed_bodies_raise_typed_error(body: bytes) -> None:
    with pytest.raises(MalformedSdp) as info:
        parse_sdp(body)
    assert info.value.status_hint == 400


def test_limits_bound_hostile_input() -> None:
    head = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n"
    with pytest.raises(MalformedSdp, match="bytes"):
        parse_sdp(head + b"a=x\r\n" * 5000)
    with pytest.raises(MalformedSdp, match="media sections"):
        parse_sdp(head + b"m=audio 1 RTP/AVP 0\r\n" * 20, SdpLimits(max_bytes=1 << 20))
    with pytest.raises(MalformedSdp, match="lines"):
        parse_sdp(head + b"a=x\r\n" * 600, SdpLimits(max_bytes=1 << 20))


def test_junk_lines_and_bad_rtpmaps_are_ignored() -> None:
    body = (
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nthis is not sdp\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 0 96\r\na=rtpmap:96 PCMU\r\na=rtpmap:zz PCMU/8000\r\n"
        b"a=ptime:abc\r\n"
    )
    (audio,) = parse_sdp(body).media
    assert audio.rtpmaps() == {}
    assert audio.int_attribute("ptime") is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_only_raise_sdp_errors(data: bytes) -> None:
    try:
        sdp = parse_sdp(b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n" + data)
    except SdpError:
        return
    assert parse_sdp(bytes(sdp)) == sdp


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="vosctmabirk=:/ 0123456789INP4RTAV\r\n.-", max_size=300))
def test_sdp_like_text_parses_to_a_fixed_point_or_raises(text: str) -> None:
    try:
        sdp = parse_sdp(text)
    except SdpError as exc:
        assert exc.status_hint == 400
        return
    assert parse_sdp(str(sdp)) == sdp


def test_non_ascii_digits_and_huge_numbers_are_not_numbers() -> None:
    # Found by Hypothesis: "20¹".isdigit() is True, but int() refuses it.
    head = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n"
    (audio,) = parse_sdp(
        head + "m=audio 4000 RTP/AVP 0\r\na=ptime:20¹\r\na=rtpmap:9 G722/8000¹\r\n"
    ).media
    assert audio.int_attribute("ptime") is None
    assert audio.rtpmaps() == {}
    with pytest.raises(MalformedSdp):
        parse_sdp(head + "m=audio 4٣00 RTP/AVP 0\r\n")
    huge = "9" * 5000  # int() refuses more than 4300 digits
    (audio,) = parse_sdp(
        head + f"m=audio 4000 RTP/AVP 0\r\na=rtpmap:{huge} PCMU/{huge}\r\n",
        SdpLimits(max_bytes=1 << 20),
    ).media
    assert audio.rtpmaps() == {}
    with pytest.raises(MalformedSdp):
        parse_sdp(f"v=0\r\no=- {huge} 1 IN IP4 192.0.2.1\r\n", SdpLimits(max_bytes=1 << 20))
