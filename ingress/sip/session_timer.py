"""SIP session timers (RFC 4028), UAS side, sans-I/O.

:func:`negotiate` looks at an INVITE, re-INVITE or UPDATE and decides:

* :class:`IntervalTooSmall` – ``Session-Expires`` is below our ``Min-SE``: answer 422 with
  ``Min-SE`` (§8.2, §9);
* :class:`SessionTimerAgreed` – the interval and who refreshes, with the headers for our
  2xx (``Session-Expires: N;refresher=uac|uas`` and ``Require: timer`` when the caller
  supports timers, §9);
* ``None`` – no session timer (the request asked for none; RTP timeouts still apply).

Refresher choice (§9): a ``refresher`` parameter in the request is copied; without one we
let the caller refresh when it supports ``timer`` and refresh ourselves otherwise.

:class:`SessionTimer` is the running clock for one dialog: ``refresh_due(now)`` when we are
the refresher (send the refresh at half the interval, §10), ``expires_at`` when the caller
is (send BYE if no refresh arrived by ``SE - min(32, SE/3)`` seconds, §10).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from .errors import SipParseError
from .headers import parse_params
from .message import Request

__all__ = [
    "IntervalTooSmall",
    "Refresher",
    "SessionTimer",
    "SessionTimerAgreed",
    "SessionTimerConfig",
    "negotiate",
    "parse_session_expires",
]

#: RFC 4028 §4: the absolute minimum ``Min-SE``.
ABSOLUTE_MIN_SE: Final = 90


class Refresher(enum.Enum):
    """Who sends the refreshing re-INVITE/UPDATE (RFC 4028 §4)."""

    UAC = "uac"
    UAS = "uas"


@dataclass(frozen=True, slots=True)
class SessionTimerConfig:
    """Our ``Min-SE`` (at least 90 s) and the longest interval we accept."""

    min_se: int = ABSOLUTE_MIN_SE
    max_se: int = 7200

    def __post_init__(self) -> None:
        if self.min_se < ABSOLUTE_MIN_SE or self.max_se < self.min_se:
            raise ValueError("need 90 <= min_se <= max_se")


@dataclass(frozen=True, slots=True)
class IntervalTooSmall:
    """Answer 422 with ``Min-SE: min_se`` (RFC 4028 §6)."""

    min_se: int

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        return (("Min-SE", str(self.min_se)),)


@dataclass(frozen=True, slots=True)
class SessionTimerAgreed:
    """The session interval and refresher for a 2xx, and whether the caller does timers."""

    interval: int
    refresher: Refresher
    peer_supports_timer: bool

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """``Session-Expires`` (and ``Require: timer`` if the caller supports it, §9)."""
        out = [("Session-Expires", f"{self.interval};refresher={self.refresher.value}")]
        if self.peer_supports_timer:
            out.append(("Require", "timer"))
        return tuple(out)


def _delta(text: str) -> int | None:
    text = text.strip()
    if not text.isdigit() or len(text) > 10:
        return None
    return int(text)


def parse_session_expires(value: str) -> tuple[int, Refresher | None]:
    """``Session-Expires: 1800;refresher=uac`` → ``(1800, Refresher.UAC)``.

    Raises:
        SipParseError: malformed value (answer 400).
    """
    head, _, rest = value.partition(";")
    delta = _delta(head)
    if delta is None or delta == 0:
        raise SipParseError("malformed Session-Expires")
    refresher = None
    for name, param in parse_params(";" + rest if rest else ""):
        if name.lower() == "refresher" and param is not None:
            try:
                refresher = Refresher(param.lower())
            except ValueError:
                raise SipParseError("malformed Session-Expires refresher") from None
    return delta, refresher


def _supports_timer(request: Request) -> bool:
    tags = [t.strip().lower() for v in request.headers.get_all("Supported") for t in v.split(",")]
    return "timer" in tags


def negotiate(
    request: Request, config: SessionTimerConfig
) -> SessionTimerAgreed | IntervalTooSmall | None:
    """Decide the session timer for a session-refresh-capable request (see module doc).

    Raises:
        SipParseError: a malformed ``Session-Expires`` or ``Min-SE`` (answer 400).
    """
    value = request.headers.get("Session-Expires")  # the compact form "x" is expanded
    if value is None:
        return None
    interval, refresher = parse_session_expires(value)
    min_se_text = request.headers.get("Min-SE")
    if min_se_text is not None and _delta(min_se_text.split(";")[0]) is None:
        raise SipParseError("malformed Min-SE")
    if interval < config.min_se:
        return IntervalTooSmall(config.min_se)  # §9: "MUST reject it with a 422"
    interval = min(interval, config.max_se)  # §9: the UAS may lower it, never below Min-SE
    supports = _supports_timer(request)
    if refresher is None:
        refresher = Refresher.UAC if supports else Refresher.UAS
    if not supports:
        refresher = Refresher.UAS  # §9: a UAC without timer support cannot refresh
    return SessionTimerAgreed(interval, refresher, supports)


@dataclass(frozen=True, slots=True)
class SessionTimer:
    """The running session timer of a dialog, restarted by every refresh (§10)."""

    interval: int
    refresher: Refresher
    started: float

    @classmethod
    def start(cls, agreed: SessionTimerAgreed, now: float) -> SessionTimer:
        return cls(agreed.interval, agreed.refresher, now)

    @property
    def refresh_at(self) -> float | None:
        """When we send the refresh (half the interval, §10), if we are the refresher."""
        if self.refresher is Refresher.UAS:
            return self.started + self.interval / 2
        return None

    @property
    def expires_at(self) -> float:
        """§10: without a refresh, BYE at ``SE - min(32, SE/3)`` seconds."""
        return self.started + self.interval - min(32.0, self.interval / 3)

    @property
    def deadline(self) -> float:
        """The next moment something must happen."""
        refresh = self.refresh_at
        return self.expires_at if refresh is None else min(refresh, self.expires_at)
