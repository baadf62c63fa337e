"""Carrier hang-up causes → Telepath's ``CallEnd`` (reason, blame, explanation).

Twilio tells why a call ended through ``CallStatus`` and, on failures, ``SipResponseCode``
in its status callback (carriers.md §1.9). Telnyx's ``call.hangup`` webhook carries
``hangup_cause`` (``call_rejected``, ``normal_clearing``, ``originator_cancel``,
``timeout``, ``time_limit``, ``user_busy``, ``not_found``, ``no_answer``,
``unspecified``), ``hangup_source`` (``caller``, ``callee``, ``unknown``) and
``sip_hangup_cause`` (Telnyx API reference, call.hangup; enum as published in the
telnyx SDKs).

"Caller" in ``Blame`` is the party on the telephone network. When Telepath itself ended
the call (agent hang-up, transfer, max duration), the bridge already knows the precise
reason and should keep it; these tables are for ends the carrier reports to us.
"""

from __future__ import annotations

from media import Blame, CallEnd, DisconnectReason

__all__ = [
    "classify_sip_status",
    "classify_telnyx_hangup",
    "classify_twilio_call_status",
]

_R = DisconnectReason
_B = Blame


def classify_sip_status(code: int) -> CallEnd:
    """Classify a final SIP status a carrier reports for a call (RFC 3261 §21)."""
    if 200 <= code < 300:
        return CallEnd(_R.HANGUP, _B.CALLER, "The call was answered and ended normally", code)
    if code in (486, 600):
        return CallEnd(_R.BUSY, _B.CALLER, f"The called party was busy (SIP {code})", code)
    if code == 603:
        return CallEnd(_R.REJECTED, _B.CALLER, "The called party declined the call (SIP 603)", code)
    if code == 487:
        return CallEnd(
            _R.CANCEL, _B.CALLER, "The call was cancelled before it was answered (SIP 487)", code
        )
    if code in (408, 480):
        return CallEnd(
            _R.CANCEL, _B.CALLER, f"Nobody answered; the party was unavailable (SIP {code})", code
        )
    if code in (404, 410, 484, 604):
        return CallEnd(
            _R.CARRIER_ERROR,
            _B.CARRIER,
            f"The carrier could not route the number (SIP {code})",
            code,
        )
    if code in (401, 403, 407):
        return CallEnd(_R.REJECTED, _B.CARRIER, f"The carrier refused the call (SIP {code})", code)
    return CallEnd(_R.CARRIER_ERROR, _B.CARRIER, f"The carrier failed the call (SIP {code})", code)


def classify_twilio_call_status(
    call_status: str, sip_response_code: int | None = None
) -> CallEnd | None:
    """``CallEnd`` for a final Twilio ``CallStatus``; ``None`` while the call is still live.

    Final values (TW-REQ, twilio-python ``CallInstance.Status``): ``completed``, ``busy``,
    ``failed``, ``no-answer``, ``canceled``. Twilio does not say who hung up a completed
    call, so a completed call is a caller hang-up unless the bridge knows otherwise.
    """
    status = call_status.strip().lower()
    if status == "completed":
        return CallEnd(_R.HANGUP, _B.CALLER, "Twilio reports the call completed", sip_response_code)
    if status not in ("busy", "failed", "no-answer", "canceled"):
        return None  # queued, initiated, ringing, in-progress: not an end
    if sip_response_code is not None and sip_response_code >= 300:
        return classify_sip_status(sip_response_code)
    if status == "busy":
        return CallEnd(_R.BUSY, _B.CALLER, "The called party was busy", sip_response_code)
    if status == "no-answer":
        return CallEnd(_R.CANCEL, _B.CALLER, "Nobody answered the call", sip_response_code)
    if status == "canceled":
        return CallEnd(
            _R.CANCEL, _B.CALLER, "The call was canceled before it was answered", sip_response_code
        )
    return CallEnd(
        _R.CARRIER_ERROR, _B.CARRIER, "Twilio reports the call failed", sip_response_code
    )


def classify_telnyx_hangup(
    hangup_cause: str | None,
    hangup_source: str | None = None,
    sip_hangup_cause: str | None = None,
    *,
    inbound: bool = True,
) -> CallEnd:
    """Classify a Telnyx ``call.hangup``; ``inbound`` says the phone party is the caller.

    ``hangup_source`` is relative to the call's direction: on an inbound call ``caller``
    is the person on the phone and ``callee`` is us (our Call Control application).
    """
    cause = (hangup_cause or "unspecified").strip().lower()
    source = (hangup_source or "unknown").strip().lower()
    sip = _sip_code(sip_hangup_cause)
    phone_side = "caller" if inbound else "callee"
    our_side = "callee" if inbound else "caller"

    if cause == "normal_clearing" or cause == "unspecified":
        if source == our_side:
            return CallEnd(
                _R.HANGUP,
                _B.SYSTEM,
                "Telepath's side ended the call (Telnyx: normal clearing)",
                sip,
            )
        if source == phone_side:
            return CallEnd(_R.HANGUP, _B.CALLER, "The caller hung up", sip)
        if cause == "unspecified" and sip is not None and sip >= 300:
            return classify_sip_status(sip)
        return CallEnd(_R.HANGUP, _B.CALLER, f"The call ended ({cause}, source {source})", sip)
    if cause == "originator_cancel":
        if source == our_side:
            return CallEnd(
                _R.CANCEL,
                _B.SYSTEM,
                "Telepath's side cancelled the call before it was answered",
                sip,
            )
        return CallEnd(_R.CANCEL, _B.CALLER, "The caller hung up before the call was answered", sip)
    if cause == "call_rejected":
        blame = _B.SYSTEM if source == our_side else _B.CALLER
        return CallEnd(_R.REJECTED, blame, "The call was rejected", sip)
    if cause == "user_busy":
        return CallEnd(_R.BUSY, _B.CALLER, "The called party was busy", sip)
    if cause == "no_answer":
        return CallEnd(_R.CANCEL, _B.CALLER, "Nobody answered the call", sip)
    if cause == "not_found":
        return CallEnd(_R.CARRIER_ERROR, _B.CARRIER, "Telnyx could not find the destination", sip)
    if cause == "time_limit":
        return CallEnd(_R.MAX_DURATION, _B.CARRIER, "Telnyx ended the call at its time limit", sip)
    if cause == "timeout":
        return CallEnd(_R.CARRIER_ERROR, _B.CARRIER, "Telnyx timed the call out", sip)
    if sip is not None and sip >= 300:
        return classify_sip_status(sip)
    return CallEnd(_R.CARRIER_ERROR, _B.CARRIER, f"Telnyx ended the call ({cause[:64]})", sip)


def _sip_code(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip()
    if len(text) == 3 and text.isascii() and text.isdigit() and text[0] in "23456":
        return int(text)
    return None
