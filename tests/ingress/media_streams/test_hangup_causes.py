"""Carrier hang-up causes and status webhooks → CallEnd (reason, blame, explanation)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingress.media_streams.errors import MediaStreamProtocolError
from ingress.media_streams.events import (
    TelnyxCallAnswered,
    TelnyxCallEventIgnored,
    TelnyxCallHungUp,
    TelnyxCallInitiated,
    TelnyxStreamingFailed,
    TelnyxStreamingStarted,
    TelnyxStreamingStopped,
)
from ingress.media_streams.hangup_causes import (
    classify_sip_status,
    classify_telnyx_hangup,
    classify_twilio_call_status,
)
from ingress.media_streams.telnyx import decode_client_state, parse_telnyx_call_event
from ingress.media_streams.twilio import parse_twilio_call_status, parse_twilio_stream_status
from media import Blame, CallEnd, DisconnectReason

R = DisconnectReason
B = Blame
CC = "v3:00000000000000000000000000000000000000000000000000aa"


class TestSipStatus:
    @pytest.mark.parametrize(
        ("code", "reason", "blame"),
        [
            (200, R.HANGUP, B.CALLER),
            (486, R.BUSY, B.CALLER),
            (600, R.BUSY, B.CALLER),
            (603, R.REJECTED, B.CALLER),
            (487, R.CANCEL, B.CALLER),
            (480, R.CANCEL, B.CALLER),
            (408, R.CANCEL, B.CALLER),
            (404, R.CARRIER_ERROR, B.CARRIER),
            (484, R.CARRIER_ERROR, B.CARRIER),
            (403, R.REJECTED, B.CARRIER),
            (503, R.CARRIER_ERROR, B.CARRIER),
            (488, R.CARRIER_ERROR, B.CARRIER),
        ],
    )
    def test_table(self, code: int, reason: DisconnectReason, blame: Blame) -> None:
        end = classify_sip_status(code)
        assert (end.reason, end.blame, end.sip_status) == (reason, blame, code)
        assert str(code) in end.explanation or code == 200


class TestTwilioCallStatus:
    @pytest.mark.parametrize(
        "status", ["queued", "initiated", "ringing", "in-progress", "answered"]
    )
    def test_live_statuses_are_not_ends(self, status: str) -> None:
        assert classify_twilio_call_status(status) is None

    @pytest.mark.parametrize(
        ("status", "sip", "reason", "blame"),
        [
            ("completed", None, R.HANGUP, B.CALLER),
            ("completed", 200, R.HANGUP, B.CALLER),
            ("busy", None, R.BUSY, B.CALLER),
            ("busy", 486, R.BUSY, B.CALLER),
            ("no-answer", None, R.CANCEL, B.CALLER),
            ("canceled", None, R.CANCEL, B.CALLER),
            ("failed", None, R.CARRIER_ERROR, B.CARRIER),
            ("failed", 603, R.REJECTED, B.CALLER),
            ("failed", 404, R.CARRIER_ERROR, B.CARRIER),
            ("FAILED", 503, R.CARRIER_ERROR, B.CARRIER),
        ],
    )
    def test_final_statuses(
        self, status: str, sip: int | None, reason: DisconnectReason, blame: Blame
    ) -> None:
        end = classify_twilio_call_status(status, sip)
        assert end is not None
        assert (end.reason, end.blame, end.sip_status) == (reason, blame, sip)


class TestTelnyxHangup:
    @pytest.mark.parametrize(
        ("cause", "source", "sip", "reason", "blame"),
        [
            ("normal_clearing", "caller", "200", R.HANGUP, B.CALLER),
            ("normal_clearing", "callee", "200", R.HANGUP, B.SYSTEM),
            ("normal_clearing", "unknown", None, R.HANGUP, B.CALLER),
            ("originator_cancel", "caller", "487", R.CANCEL, B.CALLER),
            ("call_rejected", "callee", "603", R.REJECTED, B.SYSTEM),
            ("call_rejected", "caller", "603", R.REJECTED, B.CALLER),
            ("user_busy", "callee", "486", R.BUSY, B.CALLER),
            ("no_answer", "unknown", "480", R.CANCEL, B.CALLER),
            ("not_found", "unknown", "404", R.CARRIER_ERROR, B.CARRIER),
            ("time_limit", "unknown", None, R.MAX_DURATION, B.CARRIER),
            ("timeout", "unknown", None, R.CARRIER_ERROR, B.CARRIER),
            ("unspecified", "unknown", "503", R.CARRIER_ERROR, B.CARRIER),
            ("unspecified", "caller", None, R.HANGUP, B.CALLER),
            (None, None, None, R.HANGUP, B.CALLER),
            ("something_new", "unknown", None, R.CARRIER_ERROR, B.CARRIER),
            ("something_new", "unknown", "486", R.BUSY, B.CALLER),
        ],
    )
    def test_inbound(
        self,
        cause: str | None,
        source: str | None,
        sip: str | None,
        reason: DisconnectReason,
        blame: Blame,
    ) -> None:
        end = classify_telnyx_hangup(cause, source, sip)
        assert (end.reason, end.blame) == (reason, blame)
        assert end.sip_status == (int(sip) if sip else None)

    def test_outbound_swaps_the_sides(self) -> None:
        assert classify_telnyx_hangup("normal_clearing", "callee", inbound=False).blame is B.CALLER
        assert classify_telnyx_hangup("normal_clearing", "caller", inbound=False).blame is B.SYSTEM

    @pytest.mark.parametrize("sip", ["abc", "99", "2000", "²⁰⁰", "700", ""])
    def test_odd_sip_codes_are_ignored(self, sip: str) -> None:
        assert classify_telnyx_hangup("normal_clearing", "caller", sip).sip_status is None

    @given(
        st.text(max_size=30) | st.none(),
        st.text(max_size=30) | st.none(),
        st.text(max_size=10) | st.none(),
    )
    def test_any_input_classifies(
        self, cause: str | None, source: str | None, sip: str | None
    ) -> None:
        assert isinstance(classify_telnyx_hangup(cause, source, sip), CallEnd)


class TestTwilioStatusCallbacks:
    def test_recorded(self, recorded_json: Callable[[str], list[dict[str, Any]]]) -> None:
        events = [
            parse_twilio_call_status(form)
            for form in recorded_json("twilio_status_callbacks.jsonl")
        ]
        assert [e.call_status for e in events] == [
            "ringing",
            "in-progress",
            "completed",
            "busy",
            "failed",
            "no-answer",
            "canceled",
        ]
        assert events[0].end is None and events[1].end is None
        completed = events[2]
        assert completed.call_duration_s == 42
        assert completed.sequence_number == 2
        assert completed.from_number == "+15550100001"
        assert completed.end == CallEnd(R.HANGUP, B.CALLER, "Twilio reports the call completed")
        busy = events[3]
        assert busy.end is not None and busy.end.reason is R.BUSY and busy.end.sip_status == 486
        assert busy.direction == "outbound-api"
        failed = events[4]
        assert failed.end is not None and (failed.end.reason, failed.end.blame) == (
            R.CARRIER_ERROR,
            B.CARRIER,
        )
        assert [e.end.reason for e in events[5:] if e.end] == [R.CANCEL, R.CANCEL]

    @pytest.mark.parametrize(
        "form",
        [
            {},
            {"CallSid": "CA1", "AccountSid": "AC1"},
            {"CallSid": "CA1", "CallStatus": "completed"},
            {
                "CallSid": "CA1",
                "AccountSid": "AC1",
                "CallStatus": "completed",
                "CallDuration": "-1",
            },
            {"CallSid": "CA1", "AccountSid": "AC1", "CallStatus": "failed", "SipResponseCode": "x"},
        ],
    )
    def test_malformed(self, form: dict[str, str]) -> None:
        with pytest.raises(MediaStreamProtocolError):
            parse_twilio_call_status(form)

    @pytest.mark.parametrize(
        ("raw", "event"),
        [
            ("stream-started", "stream-started"),
            ("stream-start", "stream-started"),
            ("stream-stopped", "stream-stopped"),
            ("stream-stop", "stream-stopped"),
            ("stream-error", "stream-error"),
            ("stream-failed", "stream-error"),
        ],
    )
    def test_stream_status(self, raw: str, event: str) -> None:
        parsed = parse_twilio_stream_status(
            {
                "CallSid": "CA1",
                "StreamSid": "MZ1",
                "StreamEvent": raw,
                "StreamError": "Connection timeout",
            }
        )
        assert (parsed.call_sid, parsed.stream_sid, parsed.stream_event) == ("CA1", "MZ1", event)
        assert parsed.stream_error == "Connection timeout"


class TestTelnyxCallEvents:
    def test_recorded(self, recorded: Callable[[str], list[str]]) -> None:
        events = [parse_telnyx_call_event(body) for body in recorded("telnyx_call_events.jsonl")]
        initiated = events[0]
        assert isinstance(initiated, TelnyxCallInitiated)
        assert initiated.call.call_control_id == CC
        assert initiated.call.event_id == "00000000-0000-4000-8000-000000000001"
        assert initiated.call.occurred_at == "2025-11-23T03:30:00.076316Z"
        assert initiated.call.client_state is None
        assert (initiated.direction, initiated.from_number, initiated.to_number) == (
            "incoming",
            "+15550100001",
            "+15550100002",
        )
        assert initiated.offered_codecs == ("PCMU", "G729")
        assert isinstance(events[1], TelnyxCallAnswered)
        started = events[2]
        assert isinstance(started, TelnyxStreamingStarted)
        assert started.stream_url is not None and started.stream_url.startswith(
            "wss://gw.example.com/"
        )
        assert isinstance(events[3], TelnyxStreamingStopped)
        hangup = events[4]
        assert isinstance(hangup, TelnyxCallHungUp)
        assert (hangup.hangup_cause, hangup.hangup_source, hangup.sip_hangup_cause) == (
            "normal_clearing",
            "caller",
            "200",
        )
        assert (hangup.end.reason, hangup.end.blame, hangup.end.sip_status) == (
            R.HANGUP,
            B.CALLER,
            200,
        )
        failed = events[5]
        assert isinstance(failed, TelnyxStreamingFailed)
        assert failed.failure_reason == "connection_failed"
        assert failed.stream_id == "1edb94f9-7ef0-4150-b502-e0ebadfd9491"
        assert decode_client_state(failed.call.client_state or "") == "have a nice day =]"
        busy = events[6]
        assert isinstance(busy, TelnyxCallHungUp)
        assert busy.end.reason is R.BUSY
        ignored = events[7]
        assert isinstance(ignored, TelnyxCallEventIgnored)
        assert ignored.call.event_type == "call.dtmf.received"

    def test_bytes_body(self, recorded: Callable[[str], list[str]]) -> None:
        body = recorded("telnyx_call_events.jsonl")[1].encode()
        assert isinstance(parse_telnyx_call_event(body), TelnyxCallAnswered)

    @pytest.mark.parametrize(
        "body",
        [
            "",
            "[]",
            "{}",
            '{"data": []}',
            '{"data": {"event_type": "call.hangup", "id": "1"}}',
            '{"data": {"event_type": "call.hangup", "id": "1", "payload": {}}}',
            '{"data": {"event_type": 5, "id": "1", "payload": {"call_control_id": "c"}}}',
            '{"data": {"event_type": "call.hangup", "payload": {"call_control_id": "c"}}}',
            '{"data": {"event_type": "call.hangup", "id": "1", "payload": {"call_control_id": "c", "hangup_cause": 3}}}',
            '{"data": {"event_type": "call.initiated", "id": "1", "payload": {"call_control_id": "c", "from": []}}}',
            json.dumps({"data": {"x": "y" * 300_000}}),
            "{" * 10_000,
        ],
    )
    def test_malformed(self, body: str) -> None:
        with pytest.raises(MediaStreamProtocolError):
            parse_telnyx_call_event(body)
