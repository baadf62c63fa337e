"""The UAS core's own requests and call timers (RFC 3261 §13.3.1.4, §15.1.1; RFC 4028),
sans-I/O.

:class:`ClientSide` adds to :class:`~.uas_state.UasState` everything where we act first:

* our BYE as a client transaction, finished by any final response, 408/481 or a timeout
  (§15.1.1);
* session refreshes when we are the refresher (RFC 4028 §7.4: UPDATE without a body when
  the peer allows it, else a re-INVITE with our offer), and the call ending with BYE when
  a refresh fails (408/481, §12.2.1.2) or the session expires (RFC 4028 §10);
* the per-call timers: the ring timeout (480), our 2xx retransmitted with T1 doubling to
  T2 until the ACK and a BYE after 64*T1 without one (§13.3.1.4).
"""

from __future__ import annotations

import contextlib

from .call_table import CallInput, CallState
from .dialog import DialogInput
from .errors import LocalProtocolError
from .message import Response, build_response
from .sdp import SdpError
from .session_timer import Refresher, SessionTimer
from .transaction import TransactionKey
from .uas_events import EndCause, MediaUpdated
from .uas_state import CallRecord, ClientPurpose, UasState

__all__ = ["ClientSide"]


class ClientSide(UasState):
    """Our BYE, our refreshes and the call timers (see the module docstring)."""

    # == responses to our client transactions ===============================================
    def _on_response(self, response: Response, key: TransactionKey, now: float) -> None:
        owner = self._clients.get(key)
        if owner is None:
            return
        handle, purpose = owner
        call = self._calls.get(handle)
        if response.status < 200:
            return
        if purpose is not ClientPurpose.REFRESH_INVITE or response.status >= 300:
            self._clients.pop(key, None)
        if call is None:
            return
        if purpose is ClientPurpose.BYE:
            self._step(call, CallInput.BYE_DONE)  # §15.1.1: any final response ends it
            self._finish(call, call.end_cause or EndCause.LOCAL_BYE, None)
            return
        if response.status in (408, 481):
            self._fail_refresh(call, now)  # §12.2.1.2: the dialog is gone
            return
        if 200 <= response.status < 300:
            if purpose is ClientPurpose.REFRESH_INVITE and call.dialog is not None:
                ack = call.dialog.ack(
                    response,
                    random=self._random,
                    via_host=self.config.public_address,
                    via_port=self._via_port(call),
                )
                self.transactions.send_stateless(ack, call.dialog.next_hop())
                if call.sdp is not None and call.sdp.awaiting_answer and response.body:
                    try:
                        media = call.sdp.receive_answer(response.body)
                    except SdpError:
                        media = None
                    if media is not None:
                        self._events.append(MediaUpdated(call=call.handle, media=media))
            if call.agreed is not None:
                call.timer = SessionTimer.start(call.agreed, now)
        elif call.timer is not None and call.agreed is not None:
            # A refresh refused for another reason: keep the old interval, let it expire.
            call.timer = SessionTimer(call.agreed.interval, Refresher.UAC, call.timer.started)

    def _on_client_failure(self, key: TransactionKey, now: float) -> None:
        owner = self._clients.pop(key, None)
        if owner is None:
            return
        call = self._calls.get(owner[0])
        if call is None:
            return
        if owner[1] is ClientPurpose.BYE:
            self._step(call, CallInput.BYE_DONE)  # §15.1.1: a timed-out BYE ends it too
            self._finish(call, call.end_cause or EndCause.LOCAL_BYE, None)
        else:
            self._fail_refresh(call, now)

    def _fail_refresh(self, call: CallRecord, now: float) -> None:
        call.end_cause = EndCause.REFRESH_FAILED
        self._step(call, CallInput.TIMEOUT)
        if call.state is CallState.ENDING:
            self._send_bye(call, now)

    # == timers ============================================================================
    def _call_deadline(self, call: CallRecord) -> float | None:
        times: list[float] = []
        if call.state in (CallState.OFFERED, CallState.RINGING):
            times.append(call.ring_deadline)
        if call.pending_2xx is not None:
            times.append(min(call.pending_2xx.next_at, call.pending_2xx.give_up_at))
        if call.timer is not None and call.state is CallState.CONFIRMED:
            times.append(call.timer.deadline)
        return min(times, default=None)

    def _call_timers(self, call: CallRecord, now: float) -> None:
        if call.state in (CallState.OFFERED, CallState.RINGING) and now >= call.ring_deadline:
            self._step(call, CallInput.TIMEOUT)
            response = build_response(
                call.invite, 480, to_tag=self._tag(call), extra=self._server_headers(())
            )
            with contextlib.suppress(LocalProtocolError):
                self.transactions.send_response(call.key, response, now)
            self._finish(call, EndCause.RING_TIMEOUT, 480)
            return
        pending = call.pending_2xx
        if pending is not None:
            if now >= pending.give_up_at:
                call.pending_2xx = None
                if call.reinvite_key is not None:
                    call.reinvite_key = None  # a lost ACK of a re-INVITE: keep the call
                else:
                    call.end_cause = EndCause.ACK_TIMEOUT
                    self._step(call, CallInput.TIMEOUT)
                    self._send_bye(call, now)  # §13.3.1.4: "SHOULD ... send a BYE"
                    return
            elif now >= pending.next_at:
                self._send_2xx_again(pending, now)
                pending.interval = min(pending.interval * 2, self.transactions.timers.t2)
                pending.next_at = now + pending.interval
        timer = call.timer
        if timer is not None and call.state is CallState.CONFIRMED:
            if now >= timer.expires_at:
                call.end_cause = EndCause.SESSION_EXPIRED  # RFC 4028 §10
                call.timer = None
                self._step(call, CallInput.TIMEOUT)
                self._send_bye(
                    call, now, extra=(("Reason", 'SIP;cause=408;text="Session expired"'),)
                )
            elif timer.refresh_at is not None and now >= timer.refresh_at:
                # Only once per interval: later refreshes restart the timer on success.
                call.timer = SessionTimer(timer.interval, Refresher.UAC, timer.started)
                self._send_refresh(call, now)

    # == requests we send ===================================================================
    def _send_bye(
        self, call: CallRecord, now: float, extra: tuple[tuple[str, str], ...] = ()
    ) -> None:
        dialog = call.dialog
        if dialog is None:
            self._finish(call, call.end_cause or EndCause.LOCAL_BYE, None)
            return
        headers = (*call.bye_extra, *extra, ("User-Agent", self.config.agent))
        bye = dialog.new_request(
            "BYE",
            random=self._random,
            extra=headers,
            via_host=self.config.public_address,
            via_port=self.config.ports.get(call.source.transport, 5060),
        )
        dialog.transition(DialogInput.BYE)
        key = self.transactions.send_request(bye, dialog.next_hop(), now)
        self._clients[key] = (call.handle, ClientPurpose.BYE)

    def _send_refresh(self, call: CallRecord, now: float) -> None:
        dialog, agreed = call.dialog, call.agreed
        if dialog is None or agreed is None or call.sdp is None:
            return
        headers = (
            ("Contact", self._contact(call)),
            ("Session-Expires", f"{agreed.interval};refresher=uas"),
            ("Supported", "timer"),
            ("User-Agent", self.config.agent),
        )
        host, port = self.config.public_address, self._via_port(call)
        if "UPDATE" in dialog.remote_allow:
            # RFC 4028 §7.4 / RFC 3311: an UPDATE without a body refreshes the session.
            update = dialog.new_request(
                "UPDATE", random=self._random, extra=headers, via_host=host, via_port=port
            )
            key = self.transactions.send_request(update, dialog.next_hop(), now)
            self._clients[key] = (call.handle, ClientPurpose.REFRESH_UPDATE)
        else:
            offer = call.sdp.create_offer()
            invite = dialog.new_request(
                "INVITE",
                random=self._random,
                extra=headers,
                via_host=host,
                via_port=port,
                body=offer,
                content_type="application/sdp",
            )
            key = self.transactions.send_request(invite, dialog.next_hop(), now)
            self._clients[key] = (call.handle, ClientPurpose.REFRESH_INVITE)
