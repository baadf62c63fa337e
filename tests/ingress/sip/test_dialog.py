"""UAS dialogs (RFC 3261 §12) from recorded INVITEs; Hypothesis over the dialog table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingress.sip.dialog import (
    DIALOG_TABLE,
    Dialog,
    DialogId,
    DialogInput,
    DialogState,
    dialog_id_of,
)
from ingress.sip.errors import LocalProtocolError
from ingress.sip.message import Peer, Request, TransportKind
from ingress.sip.parser import parse_message
from ingress.sip.uri import SipUri
from tests.ingress.sip.test_uas_harness import TCP_PEER, UDP_PEER, counter_random, recorded

TWILIO = recorded("twilio_invite_pcmu.sip")
FREESWITCH = recorded("freeswitch_invite_session_timer.sip")
BARESIP = recorded("baresip_invite_udp.sip")


def request(data: bytes | str) -> Request:
    message = parse_message(data.encode() if isinstance(data, str) else data)
    assert isinstance(message, Request)
    return message


def test_dialog_from_twilio_invite() -> None:
    dialog = Dialog.from_invite(request(TWILIO), local_tag="ours1", source=UDP_PEER, local_cseq=100)
    assert dialog.id == DialogId(
        "9d6ab9c1c7b6e1a0f6f5b8d1f00e2a7e@0.0.0.0",
        "ours1",
        "64720389_6772d868_3d72c92b-1c1c-4e2e-b1a3-9c1a5d03e1d7",
    )
    assert dialog.local_uri.tag == "ours1"
    assert str(dialog.remote_target) == "sip:+14155550111@172.18.4.210:5060;transport=udp"
    assert dialog.route_set == ("<sip:54.172.60.0:5060;lr;twnat=sip:198.51.100.23:5060>",)
    assert dialog.remote_cseq == 1
    assert "INFO" in dialog.remote_allow and "UPDATE" not in dialog.remote_allow
    assert dialog.state is DialogState.EARLY


def test_bye_built_from_the_dialog() -> None:
    dialog = Dialog.from_invite(request(TWILIO), local_tag="ours1", source=UDP_PEER, local_cseq=100)
    random = counter_random()
    bye = dialog.new_request("BYE", random=random, via_host="203.0.113.10", via_port=5060)
    assert bye.method == "BYE"
    assert bye.cseq is not None and (bye.cseq.seq, bye.cseq.method) == (101, "BYE")
    assert bye.from_ is not None and bye.from_.tag == "ours1"
    assert bye.to is not None and bye.to.tag == dialog.id.remote_tag
    assert bye.headers.get_all("Route") == list(dialog.route_set)
    via = bye.top_via
    assert (
        via is not None
        and via.host == "203.0.113.10"
        and via.branch
        and via.branch.startswith("z9hG4bK")
    )
    again = dialog.new_request("INFO", random=random, via_host="203.0.113.10", via_port=5060)
    assert again.cseq is not None and again.cseq.seq == 102  # §12.2.1.1: strictly increasing
    assert parse_message(bye.serialise()) == bye


def test_next_hop_loose_route_then_target_then_flow() -> None:
    twilio = Dialog.from_invite(request(TWILIO), local_tag="a", source=UDP_PEER)
    assert twilio.next_hop() == Peer(TransportKind.UDP, "54.172.60.0", 5060)  # first Route
    baresip_source = Peer(TransportKind.UDP, "127.0.0.1", 5998)
    baresip = Dialog.from_invite(request(BARESIP), local_tag="b", source=baresip_source)
    assert baresip.next_hop() == Peer(TransportKind.UDP, "127.0.0.1", 5998)  # the Contact
    fs = Dialog.from_invite(request(FREESWITCH), local_tag="c", source=TCP_PEER)
    assert fs.next_hop() == TCP_PEER  # reuse the TCP connection the dialog came on


def test_hostname_targets_go_back_along_the_flow() -> None:
    text = TWILIO.decode().replace(
        "Record-Route: <sip:54.172.60.0:5060;lr;twnat=sip:198.51.100.23:5060>\r\n", ""
    )
    text = text.replace(
        "<sip:+14155550111@172.18.4.210:5060;transport=udp>", "<sip:gw@pbx.example.com>"
    )
    dialog = Dialog.from_invite(request(text), local_tag="a", source=UDP_PEER)
    assert dialog.next_hop() == UDP_PEER  # no DNS in the core


def test_cseq_ordering_and_target_refresh() -> None:
    dialog = Dialog.from_invite(request(TWILIO), local_tag="a", source=UDP_PEER)
    base = TWILIO.decode().split("\r\n\r\n")[0].replace("Content-Length: 262", "Content-Length: 0")
    base = base.replace("Content-Type: application/sdp\r\n", "")
    bye_old = base.replace("INVITE sip:", "BYE sip:", 1).replace("CSeq: 1 INVITE", "CSeq: 1 BYE")
    assert dialog.accept_cseq(request(bye_old + "\r\n\r\n")) == 500
    reinvite = base.replace("CSeq: 1 INVITE", "CSeq: 5 INVITE").replace(
        "<sip:+14155550111@172.18.4.210:5060;transport=udp>", "<sip:+14155550111@172.18.4.99:5070>"
    )
    assert dialog.accept_cseq(request(reinvite + "\r\n\r\n")) is None
    assert dialog.remote_cseq == 5
    assert isinstance(dialog.remote_target, SipUri) and dialog.remote_target.host == "172.18.4.99"
    ack = base.replace("INVITE sip:", "ACK sip:", 1).replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
    assert dialog.accept_cseq(request(ack + "\r\n\r\n")) is None  # ACK keeps its INVITE's number


def test_dialog_id_of_requests() -> None:
    assert dialog_id_of(request(TWILIO)) is None  # no To-tag: not in a dialog
    text = TWILIO.decode().replace(
        "To: <sip:+14155550199@sip.telepath.example>",
        "To: <sip:+14155550199@sip.telepath.example>;tag=X",
    )
    did = dialog_id_of(request(text))
    assert did is not None and did.local_tag == "X"


def test_local_misuse() -> None:
    dialog = Dialog.from_invite(request(TWILIO), local_tag="a", source=UDP_PEER)
    with pytest.raises(LocalProtocolError):
        dialog.new_request("ACK", random=counter_random(), via_host="h", via_port=1)
    dialog.transition(DialogInput.BYE)
    with pytest.raises(LocalProtocolError):
        dialog.new_request("INFO", random=counter_random(), via_host="h", via_port=1)
    with pytest.raises(LocalProtocolError):
        Dialog.from_invite(request(TWILIO), local_tag="a", source=UDP_PEER, local_cseq=2**31)


@given(st.lists(st.sampled_from(list(DialogInput)), max_size=12))
def test_dialog_table_is_the_only_way_to_move(inputs: list[DialogInput]) -> None:
    dialog = Dialog.from_invite(request(BARESIP), local_tag="t", source=UDP_PEER)
    state = dialog.state
    for item in inputs:
        expected = DIALOG_TABLE.get((state, item), state)
        assert dialog.transition(item) is expected
        state = expected
        if state is DialogState.TERMINATED:
            # Terminated is final: nothing leaves it.
            assert all(DIALOG_TABLE.get((state, i), state) is state for i in DialogInput)
