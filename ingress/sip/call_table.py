"""The UAS call state machine as a table (STYLE.md P4), RFC section beside each row.

``(state, input) → next state``. A local input (the owner's decision) missing from the
table is a bug on our side (``LocalProtocolError``); a remote one (the caller, a timer)
leaves the state unchanged.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["CALL_TABLE", "CallInput", "CallState"]


class CallState(enum.Enum):
    """Where a call is, from the UAS's point of view."""

    OFFERED = enum.auto()  # INVITE received, 100 Trying sent, nothing decided
    RINGING = enum.auto()  # a 18x went out (early dialog, §12.1.1)
    ANSWERED = enum.auto()  # our 2xx went out; waiting for the ACK (§13.3.1.4)
    CONFIRMED = enum.auto()  # ACK received: the call is up
    ENDING = enum.auto()  # our BYE is on its way (§15.1.1)
    ENDED = enum.auto()


class CallInput(enum.Enum):
    """Inputs of the call table: the owner's decisions and what the caller or timers do."""

    RING = enum.auto()  # local
    ANSWER = enum.auto()  # local
    REJECT = enum.auto()  # local
    HANGUP = enum.auto()  # local: send BYE
    ACK = enum.auto()
    CANCEL = enum.auto()
    BYE = enum.auto()
    BYE_DONE = enum.auto()  # our BYE got its final response or timed out
    TIMEOUT = enum.auto()  # no ACK / ring timeout / session expiry / refresh failure

    @property
    def is_local(self) -> bool:
        return self in (CallInput.RING, CallInput.ANSWER, CallInput.REJECT, CallInput.HANGUP)


_S, _I = CallState, CallInput
# fmt: off
CALL_TABLE: Final[dict[tuple[CallState, CallInput], CallState]] = {
    (_S.OFFERED, _I.RING):        _S.RINGING,    # §13.3.1.1 provisional response
    (_S.OFFERED, _I.ANSWER):      _S.ANSWERED,   # §13.3.1.4
    (_S.OFFERED, _I.REJECT):      _S.ENDED,      # §13.3.1.3 / §8.2.6
    (_S.OFFERED, _I.CANCEL):      _S.ENDED,      # §9.2: 200 to CANCEL, 487 to INVITE
    (_S.OFFERED, _I.BYE):         _S.ENDED,      # a confused caller: 200 to BYE, 487 to INVITE
    (_S.OFFERED, _I.TIMEOUT):     _S.ENDED,      # ring timeout: 480
    (_S.RINGING, _I.RING):        _S.RINGING,    # another 18x (e.g. 183 after 180)
    (_S.RINGING, _I.ANSWER):      _S.ANSWERED,   # §13.3.1.4
    (_S.RINGING, _I.REJECT):      _S.ENDED,      # §13.3.1.3
    (_S.RINGING, _I.CANCEL):      _S.ENDED,      # §9.2
    (_S.RINGING, _I.BYE):         _S.ENDED,      # §15: BYE in an early dialog
    (_S.RINGING, _I.TIMEOUT):     _S.ENDED,      # ring timeout: 480
    (_S.ANSWERED, _I.ACK):        _S.CONFIRMED,  # §13.3.1.4
    (_S.ANSWERED, _I.BYE):        _S.ENDED,      # §15.1.2 (the ACK may be lost or late)
    (_S.ANSWERED, _I.HANGUP):     _S.ANSWERED,   # §15: BYE waits for the ACK (sent then)
    (_S.ANSWERED, _I.TIMEOUT):    _S.ENDING,     # §13.3.1.4: no ACK → BYE
    (_S.CONFIRMED, _I.BYE):       _S.ENDED,      # §15.1.2
    (_S.CONFIRMED, _I.HANGUP):    _S.ENDING,     # §15.1.1
    (_S.CONFIRMED, _I.TIMEOUT):   _S.ENDING,     # RFC 4028 §10 expiry → BYE
    (_S.ENDING, _I.BYE):          _S.ENDED,      # BYEs crossed: answer theirs, end
    (_S.ENDING, _I.BYE_DONE):     _S.ENDED,      # §15.1.1
    (_S.ENDING, _I.HANGUP):       _S.ENDING,     # already hanging up
}
# fmt: on
