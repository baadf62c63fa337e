"""Routing and admission policy on recorded INVITEs (Twilio, Telnyx, Asterisk, FreeSWITCH, baresip)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingress.sip.message import Peer, Request, TransportKind
from ingress.sip.parser import parse_message
from ingress.sip.policy import (
    AuthRoute,
    Refusal,
    TrunkPolicy,
    admit,
    authentication_route,
    call_context_fields,
    client_origin,
    e164,
    identity,
    recognise_carrier,
    route_user,
    source_allowed,
)
from tests.ingress.sip.test_uas_harness import recorded

TWILIO = recorded("twilio_invite_pcmu.sip")
TELNYX = recorded("telnyx_invite_g722.sip")
ASTERISK = recorded("asterisk_invite.sip")
FREESWITCH = recorded("freeswitch_invite_session_timer.sip")
BARESIP = recorded("baresip_invite_udp.sip")
TWILIO_EDGE = Peer(TransportKind.UDP, "54.172.60.0", 5060)
ELSEWHERE = Peer(TransportKind.UDP, "192.0.2.200", 5060)


def request(data: bytes | str) -> Request:
    message = parse_message(data.encode() if isinstance(data, str) else data)
    assert isinstance(message, Request)
    return message


def trunk(**fields: object) -> TrunkPolicy:
    return TrunkPolicy(trunk_id="trunk_1", username="telepath-acme", **fields)  # type: ignore[arg-type]


def test_route_user_from_the_request_uri() -> None:
    assert route_user(request(TWILIO)) == "telepath-acme"
    assert route_user(request(ASTERISK)) == "telepath-pbx"
    assert route_user(request(BARESIP)) == "agent"
    escaped = TWILIO.replace(b"INVITE sip:telepath-acme@", b"INVITE sip:telepath%2Dacme@")
    assert route_user(request(escaped)) == "telepath-acme"
    tel = TWILIO.replace(
        b"INVITE sip:telepath-acme@sip.telepath.example:5060;transport=udp",
        b"INVITE tel:+14155550199",
    )
    assert route_user(request(tel)) is None


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("+14155550111", "+14155550111"),
        ("14155550111", "+14155550111"),
        ("0014155550111", "+14155550111"),
        ("+1 (415) 555-0111", "+14155550111"),
        ("+44-20-7946-0958;npdi", "+442079460958"),
        ("201", None),  # an extension is not E.164
        ("alice", None),
        ("", None),
        (None, None),
        ("+1234567890123456", None),  # 16 digits: too long
    ],
)
def test_e164(text: str | None, number: str | None) -> None:
    assert e164(text) == number


def test_identity_of_carrier_invites() -> None:
    twilio = identity(request(TWILIO))
    assert twilio.called == "+14155550199" and twilio.calling == "+14155550111"
    telnyx = identity(request(TELNYX))
    assert telnyx.called == "+13125550123"
    assert telnyx.calling == "+13125550100"  # P-Asserted-Identity first
    fs = identity(request(FREESWITCH))
    assert fs.calling == "+15551230999"  # 00 international prefix
    assert identity(request(ASTERISK)).calling is None  # extension 201


def test_tel_uri_forms() -> None:
    text = (
        TWILIO.decode()
        .replace("To: <sip:+14155550199@sip.telepath.example>", "To: <tel:+1-415-555-0199>")
        .replace("From: <sip:+14155550111@twilio.com>", "From: <tel:+14155550111;phone-context=+1>")
    )
    who = identity(request(text))
    assert who.called == "+14155550199" and who.calling == "+14155550111"


def test_authentication_routes() -> None:
    assert authentication_route(trunk(), TWILIO_EDGE) is AuthRoute.DIGEST
    ip = trunk(auth_mode="ip", allowed_ips=("54.172.60.0/30",))
    assert authentication_route(ip, TWILIO_EDGE) is AuthRoute.SOURCE_ALLOWED
    assert authentication_route(ip, ELSEWHERE) is AuthRoute.SOURCE_FORBIDDEN
    either = trunk(auth_mode="either", allowed_ips=("54.172.60.0/30",))
    assert authentication_route(either, TWILIO_EDGE) is AuthRoute.SOURCE_ALLOWED
    assert authentication_route(either, ELSEWHERE) is AuthRoute.DIGEST
    assert authentication_route(trunk(auth_mode="ip"), TWILIO_EDGE) is AuthRoute.SOURCE_FORBIDDEN


def test_source_allowed_cidrs() -> None:
    assert source_allowed("54.172.60.3", ["54.172.60.0/30"])
    assert not source_allowed("54.172.60.4", ["54.172.60.0/30"])
    assert source_allowed("::ffff:54.172.60.1", ["54.172.60.0/30"])
    assert source_allowed("2001:db8::5", ["2001:db8::/64", "garbage"])
    assert not source_allowed("not-an-ip", ["0.0.0.0/0"])


def test_admission_order_and_statuses() -> None:
    invite = request(TWILIO)
    ok = admit(trunk(), invite, TWILIO_EDGE, active_calls=0, trunk_calls=0)
    assert ok is None
    assert admit(
        trunk(active=False), invite, TWILIO_EDGE, active_calls=0, trunk_calls=0
    ) == Refusal(480, "trunk inactive")
    ips = trunk(allowed_ips=("10.0.0.0/8",))
    refused = admit(ips, invite, TWILIO_EDGE, active_calls=0, trunk_calls=0)
    assert refused is not None and refused.status == 403
    either = trunk(auth_mode="either", allowed_ips=("10.0.0.0/8",))
    assert admit(either, invite, TWILIO_EDGE, active_calls=0, trunk_calls=0) is None  # digest'd
    numbers = trunk(inbound_numbers=("+14155550100",))
    refused = admit(numbers, invite, TWILIO_EDGE, active_calls=0, trunk_calls=0)
    assert refused == Refusal(403, "number not allowed")
    called = trunk(inbound_numbers=("+1 415 555 0199",))  # the DID, written loosely
    assert admit(called, invite, TWILIO_EDGE, active_calls=0, trunk_calls=0) is None
    calling = trunk(inbound_numbers=("+14155550111",))  # the caller's number
    assert admit(calling, invite, TWILIO_EDGE, active_calls=0, trunk_calls=0) is None
    full = admit(trunk(), invite, TWILIO_EDGE, active_calls=10, trunk_calls=0, max_calls=10)
    assert full is not None and full.status == 503 and ("Retry-After", "30") in full.headers
    busy = admit(trunk(max_concurrent_calls=2), invite, TWILIO_EDGE, active_calls=2, trunk_calls=2)
    assert busy is not None and busy.status == 486


def test_carrier_recognition() -> None:
    assert recognise_carrier(request(TWILIO)) == "twilio"
    assert recognise_carrier(request(TELNYX)) == "telnyx"
    assert recognise_carrier(request(ASTERISK)) == "asterisk"
    assert recognise_carrier(request(FREESWITCH)) == "freeswitch"
    assert recognise_carrier(request(BARESIP)) == "sip"


def test_call_context_fields_from_twilio() -> None:
    fields = call_context_fields(request(TWILIO), TWILIO_EDGE)
    assert fields.sip_call_id == "9d6ab9c1c7b6e1a0f6f5b8d1f00e2a7e@0.0.0.0"
    assert fields.from_number == "+14155550111" and fields.to_number == "+14155550199"
    assert fields.carrier == "twilio" and fields.transport == "udp"
    assert fields.source_address == "54.172.60.0:5060"
    assert fields.request_uri == "sip:telepath-acme@sip.telepath.example:5060;transport=udp"
    assert fields.headers == {
        "X-Twilio-AccountSid": "ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "X-Twilio-CallSid": "CA00000000000000000000000000000000",
        "X-Customer-Ref": "order-1234",
        "X-SIP-Call-ID": "9d6ab9c1c7b6e1a0f6f5b8d1f00e2a7e@0.0.0.0",
    }


def test_call_context_keeps_raw_users_when_not_e164() -> None:
    fields = call_context_fields(request(ASTERISK), TWILIO_EDGE)
    assert fields.from_number == "201"
    assert fields.headers["X-Asterisk-Queue"] == "support"


def test_x_headers_are_bounded() -> None:
    head, _, body = TWILIO.decode().partition("\r\n\r\n")
    many = f"X-Long: {'w' * 5000}\r\n" + "".join(
        f"X-Flood-{i}: {'v' * 100}\r\n" for i in range(100)
    )
    fields = call_context_fields(
        request(head + "\r\n" + many.rstrip("\r\n") + "\r\n\r\n" + body), TWILIO_EDGE
    )
    assert len(fields.headers) <= 65
    assert all(len(v) <= 1024 for v in fields.headers.values())
    assert fields.headers["X-Long"] == "w" * 1024


@given(st.text(max_size=40))
def test_e164_never_raises_and_is_well_formed(text: str) -> None:
    number = e164(text)
    assert number is None or (
        number.startswith("+") and number[1:].isdigit() and 3 <= len(number) - 1 <= 15
    )


class TestClientOrigin:
    """Behind a trusted SIP proxy the caller is the Via below the proxy's own."""

    INVITE = (
        b"INVITE sip:agent@gw.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKproxy1\r\n"
        b"Via: SIP/2.0/TCP 192.168.1.20:5070;branch=z9hG4bKcaller;received=203.0.113.9;rport=40312\r\n"
        b"From: <sip:+14155550100@carrier.example>;tag=a1\r\n"
        b"To: <sip:agent@gw.example.com>\r\n"
        b"Call-ID: origin-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 69\r\nContent-Length: 0\r\n\r\n"
    )

    def _request(self, raw: bytes) -> Request:
        message = parse_message(raw)
        assert isinstance(message, Request)
        return message

    def test_through_a_trusted_proxy(self) -> None:
        proxy = Peer(TransportKind.UDP, "10.0.0.5", 5060)
        origin = client_origin(self._request(self.INVITE), proxy, lambda host: host == "10.0.0.5")
        assert origin == Peer(TransportKind.TCP, "203.0.113.9", 40312)

    def test_untrusted_sources_are_taken_as_they_are(self) -> None:
        direct = Peer(TransportKind.UDP, "198.51.100.7", 5060)
        assert (
            client_origin(self._request(self.INVITE), direct, lambda host: host == "10.0.0.5")
            == direct
        )

    def test_without_received_the_sent_by_counts_and_host_names_are_not_trusted(self) -> None:
        proxy = Peer(TransportKind.UDP, "10.0.0.5", 5060)
        plain = self.INVITE.replace(b";received=203.0.113.9;rport=40312", b"")
        assert client_origin(self._request(plain), proxy, lambda _: True) == Peer(
            TransportKind.TCP, "192.168.1.20", 5070
        )
        named = plain.replace(b"192.168.1.20:5070", b"pbx.example.com")
        assert client_origin(self._request(named), proxy, lambda _: True) == proxy
        single = b"".join(
            line + b"\r\n" for line in self.INVITE.split(b"\r\n") if b"z9hG4bKcaller" not in line
        )
        assert (
            client_origin(
                self._request(single.rstrip(b"\r\n") + b"\r\n\r\n"), proxy, lambda _: True
            )
            == proxy
        )
