"""Messages, headers and URIs: round trips and RFC 3261 §8.2.6 responses.

Recorded messages in tests/data/sip (exact bytes, CRLF line ends, captured on loopback;
credentials are test values):

* ``sipp_uac_invite.sip``: sipp 3.6.1 ``-sn uac`` INVITE.
* ``sipp_uas_180_ringing.sip``, ``sipp_uas_200_ok.sip``: sipp ``-sn uas`` answering it.
* ``sipp_auth_invite_unauthenticated.sip``, ``sipp_auth_ack_401.sip``,
  ``sipp_auth_invite_md5.sip``: sipp with ``-au alice -ap s3cret-pass`` against
  ``DigestAuthenticator(realm="127.0.0.1", secret=b"telepath-test-secret-0123456789",
  random=bytes(range(n)))`` challenging at now=1.8e9 (``telepath_401_challenge.sip``).
* ``baresip_invite_udp.sip``, ``baresip_invite_tcp.sip``: baresip 1.0.0 ``/dial`` over UDP,
  and the raw bytes of its TCP stream.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingress.sip.errors import SipParseError
from ingress.sip.headers import CSeq, HeaderField, Headers, NameAddr, Via, split_list
from ingress.sip.message import Request, Response, build_response, new_branch, new_tag
from ingress.sip.parser import parse_message
from ingress.sip.uri import AbsoluteUri, SipUri, parse_uri, unescape

DATA = Path(__file__).resolve().parents[2] / "data" / "sip"
RECORDED = sorted(p.name for p in DATA.glob("*.sip"))


def load_sip(name: str) -> bytes:
    return (DATA / name).read_bytes()


def test_there_are_recorded_messages() -> None:
    assert len(RECORDED) >= 9


@pytest.mark.parametrize("name", RECORDED)
def test_recorded_messages_round_trip_byte_for_byte(name: str) -> None:
    data = load_sip(name)
    assert parse_message(data).serialise() == data


def test_sipp_invite_accessors() -> None:
    invite = parse_message(load_sip("sipp_uac_invite.sip"))
    assert isinstance(invite, Request)
    assert invite.method == "INVITE"
    assert invite.uri == SipUri("sip", "127.0.0.1", user="service", port=5990)
    assert invite.top_via == Via("UDP", "127.0.0.1", 5991, (("branch", "z9hG4bK-15312-1-0"),))
    assert invite.from_ is not None and invite.from_.tag == "15312SIPpTag001"
    assert invite.from_.display_name == "sipp"
    assert invite.to is not None and invite.to.tag is None
    assert invite.cseq == CSeq(1, "INVITE")
    assert invite.call_id == "1-15312@127.0.0.1"
    assert invite.content_type == "application/sdp"
    assert invite.body.startswith(b"v=0\r\n") and len(invite.body) == 129


def test_baresip_rport_and_empty_supported() -> None:
    invite = parse_message(load_sip("baresip_invite_udp.sip"))
    via = invite.top_via
    assert via is not None and via.param("rport") == "" and via.branch is not None
    assert invite.headers.get("Supported") == ""
    assert invite.headers.get_all("Allow")[:3] == ["INVITE", "ACK", "BYE"]


def test_sipp_responses() -> None:
    ringing = parse_message(load_sip("sipp_uas_180_ringing.sip"))
    ok = parse_message(load_sip("sipp_uas_200_ok.sip"))
    assert isinstance(ringing, Response) and (ringing.status, ringing.reason) == (180, "Ringing")
    assert isinstance(ok, Response) and ok.status == 200
    assert ok.to is not None and ok.to.tag == "16027SIPpTag011"


class TestHeaderNames:
    """RFC 3261 §7.3.1 (case-insensitive names) and §7.3.3 (compact forms)."""

    def test_compact_and_case_insensitive(self) -> None:
        headers = Headers.of(("v", "SIP/2.0/UDP a"), ("VIA", "SIP/2.0/TCP b"), ("i", "x@y"))
        assert headers.get_all("Via") == ["SIP/2.0/UDP a", "SIP/2.0/TCP b"]
        assert headers.get("call-id") == "x@y"
        assert "CALL-ID" in headers and "To" not in headers

    def test_list_headers_split_outside_quotes_and_brackets(self) -> None:
        value = '"A, B" <sip:a@x;p=1,2>, <sip:b@y>'
        assert split_list(value) == ['"A, B" <sip:a@x;p=1,2>', "<sip:b@y>"]
        headers = Headers.of(("Contact", value), ("m", "<sip:c@z>"))
        assert len(headers.get_all("Contact")) == 3
        # Non-list headers are never split.
        assert Headers.of(("Subject", "a, b")).get_all("Subject") == ["a, b"]

    def test_replace_keeps_position_and_drops_duplicates(self) -> None:
        headers = Headers.of(("A", "1"), ("l", "5"), ("B", "2"), ("Content-Length", "6"))
        replaced = headers.replace("Content-Length", "0")
        assert [(f.name, f.value) for f in replaced] == [
            ("A", "1"),
            ("Content-Length", "0"),
            ("B", "2"),
        ]

    def test_raw_bytes_do_not_count_for_equality(self) -> None:
        assert HeaderField("To", "<sip:a@b>", b"to:   <sip:a@b>\r\n") == HeaderField(
            "To", "<sip:a@b>"
        )


class TestNameAddr:
    """RFC 3261 §20.10 and §25.1 name-addr / addr-spec."""

    def test_quoted_display_name_with_escapes(self) -> None:
        value = NameAddr.parse(r'"Mr \"X\" \\ Y" <sip:x@example.com>;tag=abc')
        assert value.display_name == r'Mr "X" \ Y'
        assert value.tag == "abc"
        assert NameAddr.parse(str(value)) == value

    def test_token_display_name(self) -> None:
        value = NameAddr.parse("Alice  Smith <sips:alice@example.com:5061>")
        assert value.display_name == "Alice Smith"
        assert value.uri == SipUri("sips", "example.com", user="alice", port=5061)

    @pytest.mark.parametrize(
        "text",
        [
            "sip:a@b?x=y",  # '?' needs <> (RFC 3261 §20.10)
            '"unterminated <sip:a@b>',
            "<sip:a@b",
            "<sip:a@b>;;",
            "Bell, Alexander <sip:a@b>",
            "< sip:a@b >",
        ],
    )
    def test_rejected(self, text: str) -> None:
        with pytest.raises(SipParseError):
            NameAddr.parse(text)


class TestUri:
    """RFC 3261 §19.1."""

    def test_full_sip_uri(self) -> None:
        uri = parse_uri("sip:alice:pw@[2001:db8::1]:5070;transport=tcp;lr?subject=hi&x=%20")
        assert uri == SipUri(
            "sip",
            "[2001:db8::1]",
            "alice",
            "pw",
            5070,
            (("transport", "tcp"), ("lr", None)),
            (("subject", "hi"), ("x", "%20")),
        )
        assert isinstance(uri, SipUri) and uri.param("LR") == "" and uri.param("maddr") is None
        assert parse_uri(str(uri)) == uri

    def test_other_schemes_are_opaque(self) -> None:
        assert parse_uri("tel:+15551234567;phone-context=x") == AbsoluteUri(
            "tel", "+15551234567;phone-context=x"
        )

    @pytest.mark.parametrize(
        "text", ["", "sip:", "nocolon", "sip:a@b:99999", "sip:a b@c", "sip:a@[::1", "sip:a@b;"]
    )
    def test_rejected(self, text: str) -> None:
        with pytest.raises(SipParseError):
            parse_uri(text)

    def test_unescape(self) -> None:
        assert unescape("I%20have%20spaces") == "I have spaces"
        assert unescape("%ZZ") == "%ZZ"


def test_via_with_lws_and_ipv6() -> None:
    via = Via.parse("SIP / 2.0 / tcp [2001:db8::9] : 5060 ; branch = z9hG4bKx ; received=[::1]")
    assert via.transport == "TCP" and via.host == "[2001:db8::9]" and via.port == 5060
    assert via.branch == "z9hG4bKx" and via.param("received") == "[::1]"
    assert via.sent_by == "[2001:db8::9]:5060"
    assert Via.parse(str(via.with_param("rport", "5062"))).param("rport") == "5062"


@pytest.mark.parametrize("text", ["4294967296 INVITE", "1", "x INVITE", "1 INVITE extra"])
def test_cseq_rejected(text: str) -> None:
    with pytest.raises(SipParseError):
        CSeq.parse(text)


class TestBuildResponse:
    """RFC 3261 §8.2.6."""

    def test_copies_the_dialog_headers_and_adds_a_to_tag(self) -> None:
        invite = parse_message(load_sip("sipp_uac_invite.sip"))
        assert isinstance(invite, Request)
        response = build_response(invite, 486, to_tag="abc123")
        assert (response.status, response.reason) == (486, "Busy Here")
        names = [f.name for f in response.headers]
        assert names == ["Via", "From", "To", "Call-ID", "CSeq", "Content-Length"]
        assert response.to is not None and response.to.tag == "abc123"
        # Copied lines reuse the received bytes exactly (§8.2.6.2 "MUST be the same").
        assert response.headers.fields[0].to_bytes() == invite.headers.fields[0].to_bytes()
        assert parse_message(response.serialise()) == response

    def test_no_tag_on_100_and_existing_tag_kept(self) -> None:
        invite = parse_message(load_sip("sipp_uac_invite.sip"))
        assert isinstance(invite, Request)
        trying = build_response(invite, 100, to_tag="ignored")
        assert trying.to is not None and trying.to.tag is None
        ok = parse_message(load_sip("sipp_uas_200_ok.sip"))
        bye_like = Request("BYE", invite.uri, ok.headers.replace("CSeq", "2 BYE"))
        assert build_response(bye_like, 200, to_tag="new").to == ok.to

    def test_tags_and_branches_come_from_the_injected_source(self) -> None:
        fake = bytes(range(8))
        assert new_tag(lambda n: fake[:n]) == "0001020304050607"
        assert new_branch(lambda n: fake[:n]) == "z9hG4bK0001020304050607"


def test_with_body_sets_content_length_and_type() -> None:
    request = Request("OPTIONS", parse_uri("sip:a@b"), Headers.of(("Content-Length", "0")))
    changed = request.with_body(b"hello", "text/plain")
    assert changed.headers.get("Content-Length") == "5"
    assert changed.headers.get("Content-Type") == "text/plain"
    assert changed.with_body(b"").headers.get("Content-Type") is None


# -- Hypothesis: parse(serialise(m)) == m for messages we build ---------------------------

tokens = st.text("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789-.!%*_+`'~", min_size=1, max_size=12)
labels = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
hosts = st.lists(labels, min_size=1, max_size=3).map(lambda parts: "h" + ".".join(parts))
users = st.text("ABCabc0123456789_.!~*'()&=+$,;?/-", min_size=1, max_size=12)
ports = st.none() | st.integers(1, 65535)
params = st.lists(st.tuples(tokens, st.none() | tokens), max_size=3).map(tuple)
pchars = st.text("abcXYZ019-_.!~*'()[]/:&+$", min_size=1, max_size=8)
uri_params = st.lists(st.tuples(pchars, st.none() | pchars), max_size=3).map(tuple)
sip_uris = st.builds(
    SipUri, st.sampled_from(["sip", "sips"]), hosts, st.none() | users, st.none(), ports, uri_params
)
name_addrs = st.builds(
    NameAddr,
    sip_uris,
    st.none() | st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=10),
    params,
)
vias = st.builds(Via, st.sampled_from(["UDP", "TCP", "TLS"]), hosts, ports, params)
texts = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)


@st.composite
def requests(draw: st.DrawFn) -> Request:
    method = draw(st.sampled_from(["INVITE", "BYE", "OPTIONS"]) | tokens)
    fields = [("Via", str(v)) for v in draw(st.lists(vias, min_size=1, max_size=3))]
    fields += [
        ("From", str(draw(name_addrs))),
        ("To", str(draw(name_addrs))),
        ("Call-ID", draw(texts)),
        ("CSeq", f"{draw(st.integers(0, 2**32 - 1))} {method}"),
        ("X-Custom", draw(texts)),
    ]
    request = Request(method, draw(sip_uris), Headers.of(*fields))
    return request.with_body(draw(st.binary(max_size=40)))


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(requests())
def test_built_requests_survive_a_round_trip(request: Request) -> None:
    parsed = parse_message(request.serialise())
    assert parsed == request
    assert parsed.serialise() == request.serialise()
    assert parsed.from_ == NameAddr.parse(request.headers.get("From") or "")


@FAST
@given(requests(), st.integers(100, 699), tokens)
def test_built_responses_survive_a_round_trip(request: Request, status: int, tag: str) -> None:
    response = build_response(request, status, "Some Reason", to_tag=tag, body=b"x")
    assert parse_message(response.serialise()) == response


class TestSmallPieces:
    def test_uri_errors(self) -> None:
        for text in ("sip:[zz]", "sip:h:5x", "sip:u:p@ss@h", "sip:h?noequals", "x:a b"):
            with pytest.raises(SipParseError):
                parse_uri(text)

    def test_uri_with_params(self) -> None:
        uri = parse_uri("sip:a@b;transport=udp;lr")
        assert isinstance(uri, SipUri)
        assert str(uri.with_params(transport="tcp")) == "sip:a@b;lr;transport=tcp"
        assert uri.host_port == "b"

    def test_name_addr_helpers(self) -> None:
        value = NameAddr.parse("<sip:a@b>;expires=60")
        assert value.param("EXPIRES") == "60" and value.sip_uri is not None
        assert value.with_param("tag", "x").tag == "x"
        assert NameAddr.parse("<tel:+1>").sip_uri is None
        with pytest.raises(SipParseError):
            NameAddr.parse('"quoted" sip:a@b')

    def test_cseq_and_headers_helpers(self) -> None:
        assert str(CSeq.parse("  42   BYE ")) == "42 BYE"
        headers = Headers.of(("A", "1"))
        assert len(headers) == 1 and [f.name for f in headers] == ["A"]
        from ingress.sip.headers import parse_params

        assert parse_params(' ; a = "x y" ;b') == (("a", '"x y"'), ("b", None))

    def test_header_injection_is_refused(self) -> None:
        from ingress.sip.errors import LocalProtocolError

        request = Request("OPTIONS", parse_uri("sip:a@b"), Headers.of(("X-A", "1\r\nVia: evil")))
        with pytest.raises(LocalProtocolError):
            request.serialise()
        with pytest.raises(LocalProtocolError):
            Headers.of(("Bad Name", "x")).fields[0].to_bytes()

    def test_bytes_and_bad_max_forwards(self) -> None:
        invite = parse_message(load_sip("sipp_uac_invite.sip"))
        assert bytes(invite) == load_sip("sipp_uac_invite.sip")
        ok = parse_message(load_sip("sipp_uas_200_ok.sip"))
        assert bytes(ok) == load_sip("sipp_uas_200_ok.sip")
        broken = invite.with_headers(invite.headers.replace("Max-Forwards", "lots"))
        with pytest.raises(SipParseError):
            _ = broken.max_forwards
