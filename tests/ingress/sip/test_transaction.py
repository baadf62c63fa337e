"""Transactions (RFC 3261 §17, RFC 6026) in virtual time, on recorded sipp messages.

``sipp_uac_invite.sip`` with ``sipp_uas_180_ringing.sip``/``sipp_uas_200_ok.sip`` is a real
client/server exchange (same branch), and ``sipp_auth_invite_unauthenticated.sip`` with
``sipp_auth_ack_401.sip`` is sipp's INVITE and the ACK it sent for our 401.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingress.sip.errors import LocalProtocolError
from ingress.sip.events import (
    MessageDiscarded,
    RequestReceived,
    ResponseReceived,
    SipEvent,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
)
from ingress.sip.headers import Headers, Via
from ingress.sip.message import Peer, Request, Response, TransportKind, build_response
from ingress.sip.parser import parse_message
from ingress.sip.timers import SipTimers
from ingress.sip.transaction import (
    ICT_TABLE,
    IST_TABLE,
    NICT_TABLE,
    NIST_TABLE,
    Action,
    IctState,
    InviteClientTransaction,
    InviteServerTransaction,
    IstState,
    NictState,
    NistState,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    TransactionKey,
    TransactionLayer,
    TxInput,
    response_peer,
    server_key,
)
from ingress.sip.uri import parse_uri

DATA = Path(__file__).resolve().parents[2] / "data" / "sip"
UDP = Peer(TransportKind.UDP, "127.0.0.1", 5991)
TCP = Peer(TransportKind.TCP, "127.0.0.1", 5991)
T = SipTimers()


def load(name: str) -> Request | Response:
    return parse_message((DATA / name).read_bytes())


def request(name: str) -> Request:
    message = load(name)
    assert isinstance(message, Request)
    return message


def response(name: str) -> Response:
    message = load(name)
    assert isinstance(message, Response)
    return message


def fake_random(n: int) -> bytes:
    return b"\xab" * n


def make_layer(timers: SipTimers = T, max_transactions: int = 10_000) -> TransactionLayer:
    return TransactionLayer(random=fake_random, timers=timers, max_transactions=max_transactions)


def events(layer: TransactionLayer) -> list[SipEvent]:
    out = []
    while (event := layer.next_event()) is not None:
        out.append(event)
    return out


def sent(layer: TransactionLayer) -> list[Request | Response]:
    return [o.message for o in layer.messages_to_send()]


def statuses(layer: TransactionLayer) -> list[int | str]:
    return [m.status if isinstance(m, Response) else m.method for m in sent(layer)]


def fire(layer: TransactionLayer) -> float:
    """Advance virtual time to the next deadline and fire it."""
    now = layer.get_timer()
    assert now is not None
    layer.handle_timer(now)
    return now


def bye() -> Request:
    invite = request("sipp_uac_invite.sip")
    headers = invite.headers.replace("CSeq", "2 BYE").replace(
        "Via", "SIP/2.0/UDP 127.0.0.1:5991;branch=z9hG4bK-bye-1"
    )
    return Request("BYE", invite.uri, headers.remove("Content-Type")).with_body(b"")


def start_invite_server(layer: TransactionLayer, peer: Peer = UDP) -> TransactionKey:
    layer.receive_message(request("sipp_auth_invite_unauthenticated.sip"), peer, 0.0)
    [event] = events(layer)
    assert isinstance(event, RequestReceived) and event.key is not None
    return event.key


class TestInviteServerTransaction:
    """RFC 3261 §17.2.1 with RFC 6026 §7.1."""

    def test_100_trying_at_once_and_retransmissions_absorbed(self) -> None:
        layer = make_layer()
        key = start_invite_server(layer)
        [trying] = sent(layer)
        assert isinstance(trying, Response) and trying.status == 100
        assert trying.to is not None and trying.to.tag is None
        layer.receive_message(request("sipp_auth_invite_unauthenticated.sip"), UDP, 0.5)
        assert statuses(layer) == [100] and events(layer) == []
        assert layer.get_timer() is None  # Proceeding runs no timer
        assert key.method == "INVITE" and key.sent_by == "127.0.0.1:5995"

    def test_final_response_retransmitted_on_timer_g_until_ack(self) -> None:
        layer = make_layer()
        key = start_invite_server(layer)
        sent(layer)
        invite = request("sipp_auth_invite_unauthenticated.sip")
        layer.send_response(key, build_response(invite, 401, to_tag="as7c2f1e0d"), 0.0)
        assert statuses(layer) == [401]
        deadlines = []
        for _ in range(6):
            deadlines.append(fire(layer))
            assert statuses(layer) == [401]
        # G doubles from T1 and is capped at T2 (0.5, 1, 2, 4, 4, 4).
        assert deadlines == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]
        layer.receive_message(invite, UDP, 16.0)  # INVITE again: resend the final response
        assert statuses(layer) == [401]
        layer.receive_message(request("sipp_auth_ack_401.sip"), UDP, 16.0)
        assert sent(layer) == [] and events(layer) == []  # the ACK is absorbed
        tx = layer.server_transaction(key)
        assert isinstance(tx, InviteServerTransaction) and tx.state is IstState.CONFIRMED
        assert layer.get_timer() == 16.0 + T.t4  # Timer I
        layer.receive_message(request("sipp_auth_ack_401.sip"), UDP, 17.0)
        assert sent(layer) == [] and events(layer) == []
        fire(layer)
        assert events(layer) == [TransactionTerminated(key=key)]
        assert layer.server_transaction(key) is None and layer.get_timer() is None

    def test_discard_forgets_it_without_a_word(self) -> None:
        layer = make_layer()
        key = start_invite_server(layer)
        assert statuses(layer) == [100]
        assert layer.discard(key) is True
        assert layer.server_transaction(key) is None and layer.get_timer() is None
        assert sent(layer) == [] and events(layer) == []
        invite = request("sipp_auth_invite_unauthenticated.sip")
        with pytest.raises(LocalProtocolError):
            layer.send_response(key, build_response(invite, 403, to_tag="x"), 0.1)
        assert layer.discard(key) is False
        # A retransmission afterwards is a new transaction, reported to the TU again.
        layer.receive_message(invite, UDP, 0.5)
        assert statuses(layer) == [100]
        assert [type(e) for e in events(layer)] == [RequestReceived]

    def test_discard_after_the_final_response_stops_its_retransmissions(self) -> None:
        layer = make_layer()
        key = start_invite_server(layer)
        invite = request("sipp_auth_invite_unauthenticated.sip")
        layer.send_response(key, build_response(invite, 403, to_tag="x"), 0.0)
        assert statuses(layer) == [100, 403] and layer.get_timer() == T.t1  # Timer G
        assert layer.discard(key) is True
        assert layer.get_timer() is None
        layer.handle_timer(64 * T.t1)
        assert sent(layer) == [] and events(layer) == []

    def test_discard_refuses_a_client_transaction(self) -> None:
        layer = make_layer()
        key = layer.send_request(request("sipp_uac_invite.sip"), UDP, 0.0)
        with pytest.raises(LocalProtocolError, match="server"):
            layer.discard(key)
        assert layer.client_transaction(key) is not None

    def test_timer_h_without_ack(self) -> None:
        layer = make_layer()
        key = start_invite_server(layer)
        invite = request("sipp_auth_invite_unauthenticated.sip")
        layer.send_response(key, build_response(invite, 486, to_tag="x"), 0.0)
        now = 0.0
        while layer.server_transaction(key) is not None:
            now = fire(layer)
        assert now == 64 * T.t1
        assert events(layer) == [
            TransactionTimedOut(key=key, timer="H"),
            TransactionTerminated(key=key),
        ]

    def test_2xx_moves_to_accepted_and_timer_l_ends_it(self) -> None:
        layer = make_layer()
        key = start_invite_server(layer)
        sent(layer)
        invite = request("sipp_auth_invite_unauthenticated.sip")
        ok = build_response(invite, 200, to_tag="x")
        layer.send_response(key, ok, 0.0)
        assert statuses(layer) == [200] and layer.get_timer() == 64 * T.t1
        layer.receive_message(invite, UDP, 1.0)  # absorbed: the TU retransmits 2xx itself
        assert sent(layer) == [] and events(layer) == []
        layer.send_response(key, ok, 1.0)
        assert statuses(layer) == [200]
        ack = Request("ACK", invite.uri, invite.headers.replace("CSeq", "1 ACK"))
        layer.receive_message(ack, UDP, 2.0)  # same branch: passed to the TU
        assert events(layer) == [RequestReceived(request=ack, source=UDP, key=None)]
        ack2 = replace(ack, headers=ack.headers.replace("Via", "SIP/2.0/UDP h;branch=z9hG4bKa"))
        layer.receive_message(ack2, UDP, 2.0)  # RFC 3261 §17.1.1.3 2xx ACK: own branch
        assert events(layer) == [RequestReceived(request=ack2, source=UDP, key=None)]
        assert fire(layer) == 64 * T.t1
        assert events(layer) == [TransactionTerminated(key=key)]

    def test_reliable_transport_has_no_timer_g_and_zero_timer_i(self) -> None:
        layer = make_layer()
        key = start_invite_server(layer, TCP)
        invite = request("sipp_auth_invite_unauthenticated.sip")
        layer.send_response(key, build_response(invite, 401, to_tag="t"), 0.0)
        assert layer.get_timer() == 64 * T.t1  # only H
        layer.receive_message(request("sipp_auth_ack_401.sip"), TCP, 1.0)
        assert events(layer) == [TransactionTerminated(key=key)]
        assert all(o.destination == TCP for o in layer.messages_to_send())

    def test_local_misuse_raises_and_keeps_the_state(self) -> None:
        layer = make_layer()
        key = start_invite_server(layer)
        invite = request("sipp_auth_invite_unauthenticated.sip")
        layer.send_response(key, build_response(invite, 404, to_tag="t"), 0.0)
        with pytest.raises(LocalProtocolError):
            layer.send_response(key, build_response(invite, 180, to_tag="t"), 0.0)
        tx = layer.server_transaction(key)
        assert tx is not None and tx.state is IstState.COMPLETED
        with pytest.raises(LocalProtocolError):
            layer.send_response(replace(key, branch="nope"), build_response(invite, 200), 0.0)


class TestNonInviteServerTransaction:
    """RFC 3261 §17.2.2."""

    def test_trying_proceeding_completed_and_timer_j(self) -> None:
        layer = make_layer()
        layer.receive_message(bye(), UDP, 0.0)
        [event] = events(layer)
        assert isinstance(event, RequestReceived) and event.key is not None
        key = event.key
        assert sent(layer) == []  # no automatic 100 for non-INVITE
        layer.receive_message(bye(), UDP, 0.1)  # Trying: retransmission absorbed
        assert sent(layer) == [] and events(layer) == []
        layer.send_response(key, build_response(bye(), 100), 0.2)
        layer.receive_message(bye(), UDP, 0.3)
        assert statuses(layer) == [100, 100]
        layer.send_response(key, build_response(bye(), 200), 0.4)
        layer.receive_message(bye(), UDP, 1.0)
        assert statuses(layer) == [200, 200]
        assert fire(layer) == 0.4 + 64 * T.t1
        assert events(layer) == [TransactionTerminated(key=key)]

    def test_reliable_transport_terminates_on_the_final_response(self) -> None:
        layer = make_layer()
        layer.receive_message(bye(), TCP, 0.0)
        [event] = events(layer)
        assert isinstance(event, RequestReceived) and event.key is not None
        layer.send_response(event.key, build_response(bye(), 200), 0.0)
        assert events(layer) == [TransactionTerminated(key=event.key)]
        assert layer.get_timer() is None


class TestInviteClientTransaction:
    """RFC 3261 §17.1.1 with RFC 6026 §7.2, on sipp's recorded exchange."""

    def test_timer_a_doubles_until_timer_b(self) -> None:
        layer = make_layer()
        key = layer.send_request(request("sipp_uac_invite.sip"), UDP, 0.0)
        assert statuses(layer) == ["INVITE"]
        deadlines = []
        while layer.client_transaction(key) is not None:
            deadlines.append(fire(layer))
        # A: 0.5, 1, 2, 4, 8, 16 (no T2 cap), then B at 64*T1.
        assert deadlines == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5, 32.0]
        assert statuses(layer) == ["INVITE"] * 6
        assert events(layer) == [
            TransactionTimedOut(key=key, timer="B"),
            TransactionTerminated(key=key),
        ]

    def test_provisional_stops_retransmissions_and_2xx_is_accepted(self) -> None:
        layer = make_layer()
        key = layer.send_request(request("sipp_uac_invite.sip"), UDP, 0.0)
        sent(layer)
        ringing, ok = response("sipp_uas_180_ringing.sip"), response("sipp_uas_200_ok.sip")
        layer.receive_message(ringing, UDP, 0.2)
        assert events(layer) == [ResponseReceived(response=ringing, key=key)]
        assert layer.get_timer() is None
        layer.receive_message(ok, UDP, 1.0)
        layer.receive_message(ok, UDP, 1.5)  # retransmitted 2xx reaches the TU (to re-ACK)
        assert events(layer) == [ResponseReceived(response=ok, key=key)] * 2
        assert sent(layer) == []  # the TU ACKs a 2xx, not the transaction
        assert fire(layer) == 1.0 + 64 * T.t1  # Timer M
        assert events(layer) == [TransactionTerminated(key=key)]

    def test_non_2xx_is_acked_by_the_transaction(self) -> None:
        layer = make_layer()
        invite = request("sipp_uac_invite.sip")
        key = layer.send_request(invite, UDP, 0.0)
        sent(layer)
        busy = build_response(invite, 486, to_tag="busy1")
        layer.receive_message(busy, UDP, 0.1)
        [ack] = sent(layer)
        assert isinstance(ack, Request) and ack.method == "ACK" and ack.uri == invite.uri
        assert ack.headers.get_all("Via") == invite.headers.get_all("Via")[:1]
        assert ack.cseq is not None and (ack.cseq.seq, ack.cseq.method) == (1, "ACK")
        assert ack.to is not None and ack.to.tag == "busy1"
        assert ack.from_ == invite.from_ and ack.call_id == invite.call_id
        layer.receive_message(busy, UDP, 0.2)  # retransmission: ACK again, TU not told
        assert sent(layer) == [ack]
        assert events(layer) == [ResponseReceived(response=busy, key=key)]
        assert fire(layer) == 0.1 + 32.0  # Timer D
        assert events(layer) == [TransactionTerminated(key=key)]

    def test_reliable_transport(self) -> None:
        layer = make_layer()
        invite = request("sipp_uac_invite.sip")
        key = layer.send_request(invite, TCP, 0.0)
        assert layer.get_timer() == 64 * T.t1  # B only, no A
        layer.receive_message(build_response(invite, 503, to_tag="u"), TCP, 0.1)
        assert statuses(layer) == ["INVITE", "ACK"]
        assert events(layer)[-1] == TransactionTerminated(key=key)  # D = 0


class TestNonInviteClientTransaction:
    """RFC 3261 §17.1.2."""

    def test_timer_e_backs_off_to_t2_and_f_times_out(self) -> None:
        layer = make_layer()
        key = layer.send_request(bye(), UDP, 0.0)
        deadlines = []
        while layer.client_transaction(key) is not None:
            deadlines.append(fire(layer))
        # E: 0.5, 1, 2, 4, 4, 4 … until F at 64*T1.
        assert deadlines[:6] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]
        assert deadlines[-1] == 32.0
        assert events(layer)[-2:] == [
            TransactionTimedOut(key=key, timer="F"),
            TransactionTerminated(key=key),
        ]

    def test_proceeding_retransmits_every_t2_then_completed_absorbs(self) -> None:
        layer = make_layer()
        request_ = bye()
        key = layer.send_request(request_, UDP, 0.0)
        trying = build_response(request_, 100)
        layer.receive_message(trying, UDP, 0.1)
        assert fire(layer) == 0.5  # E kept running into Proceeding
        assert fire(layer) == 0.5 + T.t2
        ok = build_response(request_, 200, to_tag="x")
        layer.receive_message(ok, UDP, 5.0)
        layer.receive_message(ok, UDP, 5.1)  # absorbed in Completed
        assert events(layer) == [
            ResponseReceived(response=trying, key=key),
            ResponseReceived(response=ok, key=key),
        ]
        assert statuses(layer) == ["BYE", "BYE", "BYE"]
        assert fire(layer) == 5.0 + T.t4  # Timer K
        assert events(layer) == [TransactionTerminated(key=key)]

    def test_reliable_transport_completes_at_once(self) -> None:
        layer = make_layer()
        key = layer.send_request(bye(), TCP, 0.0)
        assert layer.get_timer() == 64 * T.t1
        layer.receive_message(build_response(bye(), 200, to_tag="x"), TCP, 0.1)
        assert events(layer)[-1] == TransactionTerminated(key=key)

    def test_transport_error(self) -> None:
        layer = make_layer()
        key = layer.send_request(bye(), UDP, 0.0)
        layer.transport_error(key, 0.1)
        assert events(layer) == [TransportFailed(key=key), TransactionTerminated(key=key)]
        layer.transport_error(key, 0.2)  # gone: ignored
        assert events(layer) == []


class TestMatching:
    """RFC 3261 §17.1.3 and §17.2.3."""

    def test_sent_by_is_part_of_the_key(self) -> None:
        layer = make_layer()
        first = bye()
        other = replace(
            first,
            headers=first.headers.replace("Via", "SIP/2.0/UDP 10.0.0.1:5991;branch=z9hG4bK-bye-1"),
        )
        layer.receive_message(first, UDP, 0.0)
        layer.receive_message(other, UDP, 0.0)
        assert [type(e) for e in events(layer)] == [RequestReceived, RequestReceived]

    def test_cancel_names_the_invite_it_cancels(self) -> None:
        layer = make_layer()
        key = start_invite_server(layer)
        invite = request("sipp_auth_invite_unauthenticated.sip")
        cancel = Request("CANCEL", invite.uri, invite.headers.replace("CSeq", "1 CANCEL"))
        layer.receive_message(cancel, UDP, 0.1)
        [event] = events(layer)
        assert isinstance(event, RequestReceived) and event.cancels == key
        assert event.key is not None and event.key.method == "CANCEL"
        stray = replace(
            cancel, headers=cancel.headers.replace("Via", "SIP/2.0/UDP h;branch=z9hG4bKnone")
        )
        layer.receive_message(stray, UDP, 0.1)
        [event] = events(layer)
        assert isinstance(event, RequestReceived) and event.cancels is None  # TU answers 481

    def test_rfc2543_requests_are_matched_without_a_branch(self) -> None:
        inv = parse_message(Path("/work/shared/interop/rfc4475/inv2543.dat").read_bytes())
        assert isinstance(inv, Request)
        layer = make_layer()
        layer.receive_message(inv, UDP, 0.0)
        layer.receive_message(inv, UDP, 0.5)  # retransmission
        [event] = events(layer)
        assert isinstance(event, RequestReceived) and event.key == server_key(inv)
        assert statuses(layer) == [100, 100]

    def test_stray_responses_are_discarded(self) -> None:
        layer = make_layer()
        layer.receive_message(response("sipp_uas_200_ok.sip"), UDP, 0.0)
        [event] = events(layer)
        assert isinstance(event, MessageDiscarded) and event.status is None
        assert sent(layer) == []

    def test_garbage_is_answered_statelessly_or_dropped(self) -> None:
        layer = make_layer()
        data = (DATA / "sipp_uac_invite.sip").read_bytes().replace(b"CSeq: 1", b"CSeq: x")
        layer.receive_bytes(data, UDP, 0.0)
        [answer] = sent(layer)
        assert isinstance(answer, Response) and answer.status == 400
        assert answer.to is not None and answer.to.tag == "ab" * 8
        layer.receive_bytes(b"\x00\xff garbage", UDP, 0.0)
        layer.receive_bytes(b"\r\n\r\n", UDP, 0.0)  # keep-alive: silently ignored
        assert sent(layer) == []
        assert [type(e) for e in events(layer)] == [MessageDiscarded, MessageDiscarded]

    def test_too_many_transactions_get_503(self) -> None:
        layer = make_layer(max_transactions=1)
        layer.receive_message(bye(), UDP, 0.0)
        start = request("sipp_auth_invite_unauthenticated.sip")
        layer.receive_message(start, UDP, 0.0)
        assert statuses(layer) == [503]
        assert [type(e) for e in events(layer)] == [RequestReceived, MessageDiscarded]

    def test_send_request_misuse(self) -> None:
        layer = make_layer()
        invite = request("sipp_uac_invite.sip")
        layer.send_request(invite, UDP, 0.0)
        with pytest.raises(LocalProtocolError, match="in use"):
            layer.send_request(invite, UDP, 0.0)
        ack = Request("ACK", invite.uri, invite.headers.replace("CSeq", "1 ACK"))
        with pytest.raises(LocalProtocolError):
            layer.send_request(ack, UDP, 0.0)
        legacy = Request("OPTIONS", parse_uri("sip:a@b"), Headers.of(("Via", "SIP/2.0/UDP h")))
        with pytest.raises(LocalProtocolError):
            layer.send_request(legacy, UDP, 0.0)


# -- the tables, exhaustively -----------------------------------------------------------

Machine = tuple[Any, type[enum.Enum], Mapping[tuple[Any, TxInput], tuple[Action, Any]]]
MACHINES: list[Machine] = [
    (InviteServerTransaction, IstState, IST_TABLE),
    (NonInviteServerTransaction, NistState, NIST_TABLE),
    (InviteClientTransaction, IctState, ICT_TABLE),
    (NonInviteClientTransaction, NictState, NICT_TABLE),
]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(MACHINES), st.data())
def test_every_state_and_input(machine: Machine, data: st.DataObject) -> None:
    """Legal transition; or a typed error for local misuse; or, for anything from the
    network or a stale timer, the state unchanged and nothing done."""
    cls, states, table = machine
    state = data.draw(st.sampled_from(list(states)))
    input_ = data.draw(st.sampled_from(list(TxInput)))
    if (state, input_) in table:
        assert cls.transition(state, input_) == table[(state, input_)]
    elif input_.is_local:
        with pytest.raises(LocalProtocolError):
            cls.transition(state, input_)
    else:
        assert cls.transition(state, input_) == (Action.NONE, state)


@pytest.mark.parametrize(("cls", "states", "table"), MACHINES)
def test_terminated_is_final_and_every_state_is_reachable(
    cls: Any, states: type[enum.Enum], table: Mapping[tuple[Any, TxInput], tuple[Action, Any]]
) -> None:
    terminated = states["TERMINATED"]
    assert not [key for key in table if key[0] is terminated]
    targets = {row[1] for row in table.values()} | {state for state, _ in table}
    assert targets == set(states)
    assert cls.TERMINATED is terminated


# -- Hypothesis over input sequences on live transactions -----------------------------

SERVER_OPS = st.lists(
    st.sampled_from(["retransmit", "ack", "1xx", "2xx", "4xx", "timer", "transport_error"]),
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(SERVER_OPS, st.booleans(), st.booleans())
def test_server_transactions_survive_any_sequence(ops: list[str], invite: bool, tcp: bool) -> None:
    layer = make_layer()
    peer = TCP if tcp else UDP
    req = request("sipp_auth_invite_unauthenticated.sip") if invite else bye()
    layer.receive_message(req, peer, 0.0)
    key = server_key(req)
    now = 0.0
    finals = 0
    for op in ops:
        tx = layer.server_transaction(key)
        if tx is None:
            break  # terminated: a new request would start a new transaction
        before = tx.state
        if op == "retransmit":
            layer.receive_message(req, peer, now)
        elif op == "ack":
            layer.receive_message(
                Request("ACK", req.uri, req.headers.replace("CSeq", "1 ACK")), peer, now
            )
        elif op in ("1xx", "2xx", "4xx"):
            status = {"1xx": 180, "2xx": 200, "4xx": 404}[op]
            try:
                layer.send_response(key, build_response(req, status, to_tag="t"), now)
                finals += status >= 200
            except LocalProtocolError:
                assert tx.state is before  # misuse keeps the state
        elif op == "timer":
            deadline = layer.get_timer()
            if deadline is not None:
                now = deadline
                layer.handle_timer(now)
        else:
            layer.transport_error(key, now)
        assert finals <= 1 or invite  # only the INVITE server takes a 2xx twice
        deadline = tx.get_timer()
        assert deadline is None or deadline >= now
    got = events(layer)
    terminated = [e for e in got if isinstance(e, TransactionTerminated)]
    assert len(terminated) == (layer.server_transaction(key) is None)
    # Retransmissions never reach the TU: one RequestReceived with a key, for the request.
    assert [e.key for e in got if isinstance(e, RequestReceived) and e.key] == [key]


CLIENT_OPS = st.lists(st.sampled_from([100, 180, 200, 486, 503, 0, -1]), max_size=25)


@settings(max_examples=200, deadline=None)
@given(CLIENT_OPS, st.booleans(), st.booleans())
def test_client_transactions_survive_any_sequence(ops: list[int], invite: bool, tcp: bool) -> None:
    layer = make_layer()
    peer = TCP if tcp else UDP
    req = request("sipp_uac_invite.sip") if invite else bye()
    key = layer.send_request(req, peer, 0.0)
    now = 0.0
    for op in ops:
        if op == 0:
            deadline = layer.get_timer()
            if deadline is not None:
                now = deadline
                layer.handle_timer(now)
        elif op == -1:
            layer.transport_error(key, now)
        else:
            layer.receive_message(build_response(req, op, to_tag="t"), peer, now)
        tx = layer.client_transaction(key)
        if tx is not None:
            assert not tx.terminated
            deadline = tx.get_timer()
            assert deadline is None or deadline >= now
    got = events(layer)
    assert sum(isinstance(e, TransactionTerminated) for e in got) <= 1
    # Only the INVITE client transaction ever sends ACK, and only for non-2xx finals.
    acks = [m for m in sent(layer) if isinstance(m, Request) and m.method == "ACK"]
    assert invite or not acks


def test_responses_go_where_rfc3261_18_2_2_and_rfc3581_say() -> None:
    via = Via.parse("SIP/2.0/UDP 10.1.1.1:5070;branch=z9hG4bKx")
    nat = Peer(TransportKind.UDP, "203.0.113.5", 40000)
    assert response_peer(via, nat) == Peer(TransportKind.UDP, "203.0.113.5", 5070)
    assert response_peer(via.with_param("rport", None), nat) == nat
    assert response_peer(Via("UDP", "h"), nat).port == 5060
    assert response_peer(via, TCP) == TCP
    # The layer applies it: sipp's INVITE came from 5991 but its Via says 5995, no rport.
    layer = make_layer()
    start_invite_server(layer)
    [out] = layer.messages_to_send()
    assert out.destination == Peer(TransportKind.UDP, "127.0.0.1", 5995)
    # baresip asks for rport: answered at the source port.
    layer.receive_message(request("baresip_invite_udp.sip"), UDP, 0.0)
    [out] = layer.messages_to_send()
    assert out.destination == UDP


def test_stateless_sends_and_timer_validation() -> None:
    layer = make_layer()
    ack = Request("ACK", parse_uri("sip:a@b"), Headers.of(("Via", "SIP/2.0/UDP h;branch=z9hG4bKq")))
    layer.send_stateless(ack, UDP)
    assert [(o.message, o.destination) for o in layer.messages_to_send()] == [(ack, UDP)]
    with pytest.raises(ValueError):
        SipTimers(t1=5.0, t2=4.0)


# -- a real peer: sipp places a call through the transaction layer and digest auth ---------

SIPP_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="digest call">
  <send retrans="500"><![CDATA[
INVITE sip:agent@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:agent@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: sip:sipp@[local_ip]:[local_port]
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="100" optional="true"/>
  <recv response="401" auth="true"/>
  <send><![CDATA[
ACK sip:agent@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <send retrans="500"><![CDATA[
INVITE sip:agent@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:agent@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 2 INVITE
Contact: sip:sipp@[local_ip]:[local_port]
[authentication]
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="100" optional="true"/>
  <recv response="200" rrs="true"/>
  <send><![CDATA[
ACK sip:agent@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 2 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <send retrans="500"><![CDATA[
BYE sip:agent@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 3 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"""


@pytest.mark.slow
def test_sipp_call_with_digest_over_udp(tmp_path: Path) -> None:
    """sipp 3.6 (MD5, first challenge, uri=sip:HOST:PORT) against the sans-I/O core."""
    import os
    import socket
    import subprocess
    import time

    from ingress.sip.digest import Algorithm, AuthDecision, DigestAuthenticator, ha1
    from ingress.sip.validation import check_request

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    port = sock.getsockname()[1]
    realm = "127.0.0.1"
    users = {
        "alice": (
            ha1("alice", realm, "pw-4-test", Algorithm.MD5),
            ha1("alice", realm, "pw-4-test", Algorithm.SHA256),
        )
    }
    auth = DigestAuthenticator(
        realm=realm, secret=b"interop-secret-of-length", lookup=users.get, random=os.urandom
    )
    layer = TransactionLayer(random=os.urandom)
    scenario = tmp_path / "scenario.xml"
    scenario.write_text(SIPP_SCENARIO)
    sipp = subprocess.Popen(
        ["sipp", "-sf", str(scenario), f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", "0",
         "-m", "1", "-au", "alice", "-ap", "pw-4-test", "-timeout", "15", "-timeout_error",
         "-nostdin"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    decisions: list[AuthDecision] = []
    methods: list[str] = []
    try:
        deadline = time.monotonic() + 20
        while sipp.poll() is None and time.monotonic() < deadline:
            now = time.monotonic()
            try:
                data, (host, peer_port) = sock.recvfrom(65535)
                layer.receive_bytes(data, Peer(TransportKind.UDP, host, peer_port), now)
            except TimeoutError:
                pass
            timer = layer.get_timer()
            if timer is not None and timer <= now:
                layer.handle_timer(now)
            while (event := layer.next_event()) is not None:
                if not isinstance(event, RequestReceived):
                    continue
                req = event.request
                methods.append(req.method)
                if event.key is None:
                    continue  # the ACK for our 200
                assert check_request(req) is None
                if req.method == "BYE":
                    layer.send_response(event.key, build_response(req, 200), now)
                    continue
                result = auth.verify(req, source=event.source.host, now=time.time())
                decisions.append(result.decision)
                if result.decision is AuthDecision.AUTHENTICATED:
                    answer = build_response(
                        req, 200, to_tag="tp1", extra=[("Contact", f"<sip:agent@127.0.0.1:{port}>")]
                    )
                else:
                    answer = build_response(
                        req, 401, to_tag="tp0",
                        extra=[("WWW-Authenticate", c) for c in result.challenges],
                    )  # fmt: skip
                layer.send_response(event.key, answer, now)
            for out in layer.messages_to_send():
                dest = out.destination
                sock.sendto(out.message.serialise(), (dest.host, dest.port))
        assert sipp.wait(timeout=5) == 0
    finally:
        if sipp.poll() is None:
            sipp.kill()
            sipp.wait()
        sock.close()
    assert decisions == [AuthDecision.CHALLENGE, AuthDecision.AUTHENTICATED]
    assert methods == ["INVITE", "INVITE", "ACK", "BYE"]
