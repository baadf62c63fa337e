"""RFC 4475 torture messages: the specific reaction to each of the 49 files.

The corpus is vendored bit-exact in /work/shared/interop/rfc4475 (INDEX.md gives the
expected behaviour). Each message goes through the datagram parser; what survives goes
through ``validation.check_request`` as a UAS that implements INVITE, ACK, BYE, CANCEL,
OPTIONS, REGISTER and MESSAGE, supports no extensions, and accepts only SDP bodies.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ingress.sip.errors import SipParseError, VersionNotSupported
from ingress.sip.events import MessageDiscarded
from ingress.sip.headers import NameAddr
from ingress.sip.message import Peer, Request, Response, TransportKind
from ingress.sip.parser import error_response, parse_message
from ingress.sip.transaction import TransactionLayer, server_key
from ingress.sip.uri import SipUri, unescape
from ingress.sip.validation import DEFAULT_METHODS, check_request, check_request_detail

CORPUS = Path("/work/shared/interop/rfc4475")
METHODS = DEFAULT_METHODS | {"REGISTER", "MESSAGE"}
SOURCE = Peer(TransportKind.UDP, "192.0.2.1", 5060)

ACCEPT = "accept"
DROP = "drop"

# file -> (stage, reaction); stage "parse" = the parser decides, "uas" = check_request.
EXPECTED: dict[str, tuple[str, int | str]] = {
    # 3.1.1 valid messages
    "wsinv": ("uas", ACCEPT),
    "intmeth": ("uas", 501),
    "esc01": ("uas", ACCEPT),
    "escnull": ("uas", ACCEPT),
    "esc02": ("uas", 501),
    "lwsdisp": ("uas", ACCEPT),
    "longreq": ("uas", ACCEPT),
    "dblreq": ("uas", ACCEPT),
    "semiuri": ("uas", ACCEPT),
    "transports": ("uas", ACCEPT),
    "mpart01": ("uas", ACCEPT),
    "unreason": ("parse", ACCEPT),
    "noreason": ("parse", ACCEPT),
    # 3.1.2 invalid messages
    "badinv01": ("parse", 400),
    "clerr": ("parse", 400),
    "ncl": ("parse", 400),
    "scalar02": ("parse", 400),
    "scalarlg": ("parse", DROP),
    "quotbal": ("parse", 400),
    "ltgtruri": ("parse", 400),
    "lwsruri": ("parse", 400),
    "lwsstart": ("parse", 400),
    "trws": ("parse", 400),
    "escruri": ("parse", 400),
    "baddate": ("uas", ACCEPT),  # Date does not matter to us: ignored (§3.1.2.12)
    "regbadct": ("parse", 400),
    "badaspec": ("parse", 400),
    "baddn": ("parse", 400),
    "badvers": ("parse", 505),
    "mismatch01": ("uas", 400),
    "mismatch02": ("uas", 501),
    "bigcode": ("parse", DROP),
    # 3.2 transaction layer: accepted, matched with the RFC 2543 fallback (see below)
    "badbranch": ("uas", ACCEPT),
    # 3.3 application layer
    "insuf": ("uas", 400),
    "unkscm": ("uas", 416),
    "novelsc": ("uas", 416),
    "unksm2": ("uas", 400),
    "bext01": ("uas", 420),
    "invut": ("uas", 415),
    "regaut01": ("uas", ACCEPT),
    "multi01": ("uas", 400),
    "mcl01": ("parse", 400),
    "bcast": ("parse", ACCEPT),  # parses; the transaction layer drops it (see below)
    "zeromf": ("uas", ACCEPT),
    "cparam01": ("uas", ACCEPT),
    "cparam02": ("uas", ACCEPT),
    "regescrt": ("uas", ACCEPT),
    "sdp01": ("uas", 406),
    # 3.4 backward compatibility
    "inv2543": ("uas", ACCEPT),
}


def load(name: str) -> bytes:
    return (CORPUS / f"{name}.dat").read_bytes()


def test_the_table_covers_the_whole_corpus() -> None:
    assert sorted(p.stem for p in CORPUS.glob("*.dat")) == sorted(EXPECTED)
    assert len(EXPECTED) == 49


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reaction(name: str) -> None:
    stage, reaction = EXPECTED[name]
    data = load(name)
    if stage == "parse" and reaction != ACCEPT:
        with pytest.raises(SipParseError) as caught:
            parse_message(data)
        error = caught.value
        response = error_response(error, to_tag="t1")
        if reaction == DROP:
            assert error.status_hint is None
            assert response is None
        else:
            assert error.status_hint == reaction
            assert response is not None and response.status == reaction
            assert (response.headers.get("Warning") or "").startswith("399 telepath ")
        return
    message = parse_message(data)
    if stage == "parse":
        assert isinstance(message, Response)
        return
    assert isinstance(message, Request)
    status = check_request(message, methods=METHODS)
    assert status == (None if reaction == ACCEPT else reaction)


def test_badvers_is_version_not_supported() -> None:
    with pytest.raises(VersionNotSupported):
        parse_message(load("badvers"))


def test_unparsed_requests_are_answered_with_their_own_headers() -> None:
    """RFC 3261 §8.2.6: the 400 copies Via, From, To, Call-ID, CSeq and adds a To tag."""
    with pytest.raises(SipParseError) as caught:
        parse_message(load("lwsstart"))
    response = error_response(caught.value, to_tag="zz9")
    assert response is not None
    assert response.headers.get("Call-ID") == "lwsstart.dfknq234oi243099adsdfnawe3@example.com"
    assert response.headers.get("CSeq") == "1893884 INVITE"
    assert response.headers.get("Via") == "SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw3923"
    assert response.to is not None and response.to.tag == "zz9"


def test_bext01_lists_the_unsupported_require_tags() -> None:
    message = parse_message(load("bext01"))
    assert isinstance(message, Request)
    rejection = check_request_detail(message, methods=METHODS)
    assert rejection is not None and rejection.status == 420
    # Proxy-Require is for proxies; a UAS lists only Require's tags (RFC 4475 §3.3.5).
    assert rejection.headers == (("Unsupported", "nothingSupportsThis, nothingSupportsThisEither"),)


def test_unknown_methods_get_an_allow_header() -> None:
    message = parse_message(load("intmeth"))
    assert isinstance(message, Request)
    rejection = check_request_detail(message, methods=METHODS)
    assert rejection is not None and rejection.headers[0][0] == "Allow"
    assert "MESSAGE" in rejection.headers[0][1]


def test_wsinv_headers_are_read_through_all_the_whitespace() -> None:
    message = parse_message(load("wsinv"))
    assert isinstance(message, Request)
    assert message.cseq is not None and (message.cseq.seq, message.cseq.method) == (9, "INVITE")
    assert message.max_forwards == 68
    assert [v.transport for v in message.vias] == ["UDP", "TCP", "UDP"]
    assert message.vias[1].branch == "z9hG4bK9ikj8"
    assert message.vias[2].branch == "z9hG4bK30239"
    assert message.to is not None and message.to.tag == "1918181833n"
    assert message.from_ is not None and message.from_.display_name == 'J Rosenberg \\"'
    assert message.from_.tag == "98asjd8"
    contact = message.contacts[0]
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33"))
    assert message.headers.get("Subject") == ""
    assert message.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert len(message.body) == 150


def test_escapes_are_kept_and_decoded_on_demand() -> None:
    esc01 = parse_message(load("esc01"))
    assert isinstance(esc01, Request) and isinstance(esc01.uri, SipUri)
    assert esc01.uri.user == "sips%3Auser%40example.com"
    assert unescape(esc01.uri.user) == "sips:user@example.com"
    escnull = parse_message(load("escnull"))
    users = [c.uri.user for c in escnull.contacts if isinstance(c.uri, SipUri)]
    assert users == ["%00", "%00%00"]  # two distinct contacts, not cut at NUL
    assert escnull.to is not None and str(escnull.to.uri) == "sip:null-%00-null@example.com"


def test_esc02_has_two_contacts_and_one_unknown_header() -> None:
    message = parse_message(load("esc02"))
    assert len(message.contacts) == 2
    assert message.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_dblreq_ignores_the_octets_after_content_length() -> None:
    message = parse_message(load("dblreq"))
    assert isinstance(message, Request) and message.method == "REGISTER"
    assert message.body == b""


def test_semiuri_user_part_keeps_its_semicolon() -> None:
    message = parse_message(load("semiuri"))
    assert isinstance(message, Request) and isinstance(message.uri, SipUri)
    assert message.uri.user == "user;par=u%40example.net" and message.uri.host == "example.com"


def test_mpart01_binary_body_is_framed_by_content_length() -> None:
    message = parse_message(load("mpart01"))
    assert b"\x00" in message.body
    assert len(message.body) == int(message.headers.get("Content-Length") or "-1")


def test_contact_parameters_versus_uri_parameters() -> None:
    """§3.3.12/§3.3.13: without <> the parameter belongs to the header, with <> to the URI."""
    c1 = parse_message(load("cparam01")).contacts[0]
    c2 = parse_message(load("cparam02")).contacts[0]
    assert c1.params == (("unknownparam", None),)
    assert isinstance(c1.uri, SipUri) and c1.uri.params == ()
    assert c2.params == ()
    assert isinstance(c2.uri, SipUri) and c2.uri.params == (("unknownparam", None),)
    escaped = parse_message(load("regescrt")).contacts[0]
    assert isinstance(escaped.uri, SipUri)
    assert escaped.uri.headers == (("Route", "%3Csip:sip.example.com%3E"),)


def test_unknown_schemes_in_headers_parse() -> None:
    message = parse_message(load("unksm2"))
    assert message.to is not None and str(message.to.uri) == "isbn:2983792873"
    assert [str(c.uri) for c in message.contacts] == ["name:John_Smith"]


def test_lwsdisp_display_name_without_space() -> None:
    message = parse_message(load("lwsdisp"))
    assert message.from_ == NameAddr.parse('"caller" <sip:caller@example.com>;tag=323')


def test_badbranch_and_inv2543_fall_back_to_rfc2543_matching() -> None:
    for name in ("badbranch", "inv2543"):
        message = parse_message(load(name))
        assert isinstance(message, Request)
        assert server_key(message).branch.startswith("2543:")


def test_bcast_response_is_dropped_by_the_transaction_layer() -> None:
    layer = TransactionLayer(random=lambda n: b"\x01" * n)
    layer.receive_bytes(load("bcast"), SOURCE, now=0.0)
    assert layer.messages_to_send() == []
    event = layer.next_event()
    assert isinstance(event, MessageDiscarded) and event.status is None


@pytest.mark.parametrize("name", ["badinv01", "clerr", "ncl", "badvers", "mcl01"])
def test_the_layer_answers_broken_requests_statelessly(name: str) -> None:
    layer = TransactionLayer(random=lambda n: b"\x02" * n)
    layer.receive_bytes(load(name), SOURCE, now=0.0)
    [out] = layer.messages_to_send()
    assert isinstance(out.message, Response) and out.destination == SOURCE
    assert out.message.status == EXPECTED[name][1]
    assert isinstance(layer.next_event(), MessageDiscarded)


@pytest.mark.parametrize(
    "name", sorted(n for n, (stage, r) in EXPECTED.items() if r == ACCEPT or stage == "uas")
)
def test_accepted_messages_round_trip_byte_for_byte(name: str) -> None:
    data = load(name)
    message = parse_message(data)
    if name == "dblreq":
        assert data.startswith(message.serialise())
    else:
        assert message.serialise() == data


class TestCheckRequest:
    """The rest of ``check_request``'s rules, on sipp's recorded INVITE."""

    invite = parse_message(
        (Path(__file__).resolve().parents[2] / "data/sip/sipp_uac_invite.sip").read_bytes()
    )

    def base(self) -> Request:
        assert isinstance(self.invite, Request)
        return self.invite

    def test_the_recorded_invite_is_accepted(self) -> None:
        assert check_request(self.base()) is None

    def test_known_but_unimplemented_method_is_405(self) -> None:
        register = Request(
            "REGISTER", self.base().uri, self.base().headers.replace("CSeq", "1 REGISTER")
        )
        assert check_request(register) == 405
        assert check_request(register, methods=METHODS) is None

    def test_require_is_ignored_on_ack_and_honoured_when_supported(self) -> None:
        headers = self.base().headers.replace("CSeq", "1 ACK").add("Require", "100rel")
        assert check_request(Request("ACK", self.base().uri, headers)) is None
        with_require = self.base().with_headers(self.base().headers.add("Require", "100rel"))
        assert check_request(with_require) == 420
        assert check_request(with_require, supported=["100REL"]) is None

    def test_accept_wildcards_and_bodyless_content_type(self) -> None:
        for accept in ("*/*", "application/*", "application/sdp;level=1"):
            request = self.base().with_headers(self.base().headers.add("Accept", accept))
            assert check_request(request) is None
        texty = self.base().with_headers(self.base().headers.add("Accept", "text/*"))
        assert check_request(texty) == 406
        empty = self.base().with_body(b"", "text/plain")
        assert check_request(empty) is None  # nothing to refuse without a body

    def test_a_malformed_header_in_a_built_request_is_400(self) -> None:
        broken = self.base().with_headers(self.base().headers.replace("From", "<sip:a@b"))
        assert check_request(broken) == 400
        quote = self.base().with_headers(self.base().headers.add("Require", '"unterminated'))
        assert check_request(quote) == 400
