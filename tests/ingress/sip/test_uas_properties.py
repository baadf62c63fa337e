"""Hypothesis over the UAS core: any interleaving of owner decisions, caller requests and
time keeps the call table's promises (RFC 3261 §9, §12-15; STYLE.md P4).

Invariants: peer input never raises; owner misuse raises only ``LocalProtocolError`` and
leaves the state as it was; every transition is a row of ``CALL_TABLE``; a call ends once;
each call's INVITE gets one final status (retransmitted, never changed); every response
after 100 carries a To-tag.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingress.sip.errors import LocalProtocolError
from ingress.sip.message import Response
from ingress.sip.offer_answer import SdpSession
from ingress.sip.uas import CALL_TABLE, CallInput, CallState
from ingress.sip.uas_events import CallEnded, CallOffered
from tests.ingress.sip.test_uas import ASTERISK, cancel_for
from tests.ingress.sip.test_uas_harness import Harness, ack_for, in_dialog, recorded, sdp

OWNER = ["set_offer", "ring", "answer", "reject", "hangup"]
CALLER = ["ack", "bye", "cancel", "reinvite", "info", "options", "garbage", "invite_again"]
_LOCAL_INPUT = {
    "ring": CallInput.RING,
    "answer": CallInput.ANSWER,
    "reject": CallInput.REJECT,
    "hangup": CallInput.HANGUP,
}

actions = st.lists(
    st.one_of(
        st.sampled_from(OWNER).map(lambda a: ("owner", a)),
        st.sampled_from(CALLER).map(lambda a: ("caller", a)),
        st.floats(min_value=0.0, max_value=40.0).map(lambda t: ("time", t)),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions)
def test_any_interleaving_keeps_the_call_table(steps: list[tuple[str, object]]) -> None:
    h = Harness()
    h.feed(ASTERISK)
    call = h.offered().call
    ok: Response | None = None
    seq = 21457
    finals: dict[str, set[int]] = {}  # To-tag (one per call) -> final statuses sent
    for kind, what in steps:
        before = h.uas.call_state(call)
        if kind == "time":
            h.advance(float(what))  # type: ignore[arg-type]
        elif kind == "owner":
            try:
                if what == "set_offer":
                    h.act(
                        lambda now: h.uas.set_offer(
                            call, SdpSession("203.0.113.10", 30000, rand_bits=lambda k: 1)
                        )
                    )
                elif what == "ring":
                    h.act(lambda now: h.uas.ring(call, now))
                elif what == "answer":
                    h.act(lambda now: h.uas.answer(call, now))
                elif what == "reject":
                    h.act(lambda now: h.uas.reject(call, 486, now))
                elif what == "hangup":
                    h.act(lambda now: h.uas.hangup(call, now))
            except LocalProtocolError:
                assert h.uas.call_state(call) is before  # misuse changes nothing
            else:
                local = _LOCAL_INPUT.get(str(what))
                if local is not None and before is not CallState.ENDED:
                    assert (before, local) in CALL_TABLE
        else:
            if what == "ack" and ok is not None:
                h.feed(ack_for(ASTERISK, ok))
            elif what == "bye" and ok is not None:
                seq += 1
                h.feed(in_dialog(ASTERISK, ok, "BYE", seq, branch=f"z9hG4bKb{seq}"))
            elif what == "cancel":
                h.feed(cancel_for(ASTERISK))
            elif what == "reinvite" and ok is not None:
                seq += 1
                h.feed(
                    in_dialog(
                        ASTERISK, ok, "INVITE", seq, branch=f"z9hG4bKr{seq}", body=sdp("sendonly")
                    )
                )
            elif what == "info" and ok is not None:
                seq += 1
                h.feed(
                    in_dialog(
                        ASTERISK,
                        ok,
                        "INFO",
                        seq,
                        branch=f"z9hG4bKi{seq}",
                        body="7",
                        content_type="application/dtmf",
                    )
                )
            elif what == "options" and ok is not None:
                seq += 1
                h.feed(in_dialog(ASTERISK, ok, "OPTIONS", seq, branch=f"z9hG4bKo{seq}"))
            elif what == "garbage":
                h.feed(b"INVITE sip:x SIP/2.0\r\nVia: broken\r\n\r\n")
            elif what == "invite_again":
                h.feed(ASTERISK)  # a retransmission: absorbed by the transaction
        for sent in h.take():
            if not isinstance(sent, Response) or sent.status == 100:
                continue
            if sent.cseq is not None and sent.cseq.method == "INVITE" and sent.cseq.seq == 21457:
                tag = sent.to.tag if sent.to is not None else None
                assert tag  # every response after 100 carries the call's To-tag
                if sent.status >= 200 and sent.status != 482:
                    # (482: a copy arriving while the first call lives is a merged
                    # request, RFC 3261 §8.2.2.2, answered statelessly with its own tag.)
                    finals.setdefault(tag, set()).add(sent.status)
                    if sent.status == 200 and ok is None:
                        ok = sent
        after = h.uas.call_state(call)
        if after is not before and kind != "owner":
            assert after is CallState.ENDED or any(
                (before, i) in CALL_TABLE and CALL_TABLE[(before, i)] is after for i in CallInput
            )
    # One final status per call, never changed. (A copy of the INVITE arriving after its
    # transaction ended, > 32 s later, is a new request and may become a second call.)
    assert all(len(statuses) == 1 for statuses in finals.values()), finals
    calls = [e for e in h.events if isinstance(e, CallOffered)]
    assert len(finals) <= len(calls)
    ended = [e for e in h.events if isinstance(e, CallEnded) and e.call == call]
    assert len(ended) <= 1
    if ended:
        assert h.uas.call_state(call) is CallState.ENDED


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        [
            "baresip_invite_udp.sip",
            "twilio_invite_pcmu.sip",
            "asterisk_invite.sip",
            "telnyx_invite_g722.sip",
            "freeswitch_invite_session_timer.sip",
        ]
    ),
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=2000), st.binary(max_size=8)), max_size=6
    ),
)
def test_mangled_carrier_invites_never_raise(name: str, edits: list[tuple[int, bytes]]) -> None:
    """Hostile input: recorded INVITEs with random bytes spliced in are answered (or
    dropped), never an exception, and whatever goes out parses again."""
    data = bytearray(recorded(name))
    for position, blob in edits:
        at = min(position, len(data))
        data[at : at + len(blob)] = blob
    h = Harness()
    h.feed(bytes(data))
    h.advance(40)  # every timer of whatever was created
    for sent in h.sent:
        assert sent.message.serialise()
