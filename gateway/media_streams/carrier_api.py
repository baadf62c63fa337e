"""REST calls to the carriers: hang a call up, answer and stream a Call Control call.

Made with the carriers' own packages, each pointed at a configurable base URL
(``TELEPATH_TWILIO_API_URL``, ``TELEPATH_TELNYX_API_URL``) so tests can stand a fake
carrier on loopback:

- Twilio: ``Client(account_sid, auth_token).calls(sid).update(status="completed")`` =
  ``POST {base}/2010-04-01/Accounts/{AC}/Calls/{CA}.json`` form ``Status=completed``,
  HTTP Basic ``AC:token`` (carriers.md §1.8).
- Telnyx Call Control: ``POST {base}/v2/calls/{id}/actions/hangup|answer|streaming_start``
  with ``Authorization: Bearer <API key>`` (carriers.md §2.1, §2.7).
- Telnyx TeXML: ``POST {base}/v2/texml/Accounts/{account}/Calls/{CallSid}`` with
  ``Status=completed``. A TeXML stream reconnects when its socket closes
  (``enableReconnect`` defaults to true, TX-TEXML-STREAM), so closing the socket is no
  hang-up; without the account id the Call Control hang-up is used, which takes a TeXML
  ``CallSid`` too (carriers.md §2.1).

"Already ended" answers count as done: Twilio 404 / code 20404, Telnyx 422 / code 90018
(pipecat PRs #2149, #2054). Every other failure raises ``CarrierApiError``.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Any

import aiohttp
import telnyx
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client as TwilioClient

__all__ = ["CarrierApi", "CarrierApiError", "HangupOutcome"]

logger = logging.getLogger(__name__)

_TWILIO_ALREADY_ENDED = 20404
_TELNYX_ALREADY_ENDED = "90018"


class CarrierApiError(Exception):
    """A carrier's REST API refused a command or could not be reached.

    ``status`` is the HTTP status (``None`` when the carrier was not reached) and
    ``code`` the carrier's own error code when it sent one.
    """

    def __init__(self, carrier: str, message: str, status: int | None, code: str | None) -> None:
        super().__init__(f"{carrier}: {message}")
        self.carrier = carrier
        self.status = status
        self.code = code


class HangupOutcome(StrEnum):
    """What a hang-up request achieved."""

    HUNG_UP = "hung_up"
    ALREADY_ENDED = "already_ended"


class CarrierApi:
    """The carriers' REST APIs at ``twilio_api_url`` / ``telnyx_api_url`` (no path).

    Telnyx clients are kept per API key (at most ``max_clients``, least recently used
    closed first): building one costs tens of milliseconds of blocking work, which must
    not land on the event loop during calls. ``warm_up()`` does the SDK's lazy imports
    (over a second) at start-up for the same reason; ``aclose()`` at shutdown.
    """

    def __init__(
        self,
        *,
        twilio_api_url: str = "https://api.twilio.com",
        telnyx_api_url: str = "https://api.telnyx.com",
        timeout_s: float = 5.0,
        max_clients: int = 64,
    ) -> None:
        self.twilio_api_url = twilio_api_url
        self.telnyx_api_url = telnyx_api_url
        self.timeout_s = timeout_s
        self.max_clients = max_clients
        self._clients: OrderedDict[str, telnyx.AsyncTelnyx] = OrderedDict()
        self._retired: list[telnyx.AsyncTelnyx] = []

    def warm_up(self) -> None:
        """Import the Telnyx SDK's resource modules now (it imports them on first use)."""
        client = telnyx.AsyncTelnyx(api_key="warm-up", public_key="", base_url=self._telnyx_base)
        _ = (client.calls.actions, client.texml.accounts.calls)

    async def aclose(self) -> None:
        """Close the cached Telnyx clients."""
        clients = [*self._clients.values(), *self._retired]
        self._clients.clear()
        self._retired.clear()
        for client in clients:
            await client.close()

    @property
    def _telnyx_base(self) -> str:
        return self.telnyx_api_url.rstrip("/") + "/v2"

    # --- Twilio -----------------------------------------------------------------------

    async def twilio_hangup(
        self, account_sid: str, auth_token: str, call_sid: str
    ) -> HangupOutcome:
        """End a Twilio call: update it to ``completed`` (carriers.md §1.8)."""
        async with AsyncTwilioHttpClient(timeout=self.timeout_s) as http:
            # environment={}: nothing but Settings reads the environment (ARCHITECTURE.md).
            client = TwilioClient(account_sid, auth_token, http_client=http, environment={})
            client.api.base_url = self.twilio_api_url
            try:
                await client.calls(call_sid).update_async(status="completed")
            except TwilioRestException as exc:
                if exc.status == 404 or exc.code == _TWILIO_ALREADY_ENDED:
                    return HangupOutcome.ALREADY_ENDED
                raise CarrierApiError(
                    "twilio", f"hang-up refused: {exc.msg}", exc.status, _text(exc.code)
                ) from None
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise CarrierApiError("twilio", f"unreachable: {exc!r}", None, None) from None
        return HangupOutcome.HUNG_UP

    # --- Telnyx -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _telnyx(self, api_key: str) -> AsyncIterator[telnyx.AsyncTelnyx]:
        client = self._clients.pop(api_key, None)
        if client is None:
            client = telnyx.AsyncTelnyx(
                api_key=api_key,
                public_key="",  # webhooks are verified with the trunk's key, not the env's
                base_url=self._telnyx_base,
                timeout=self.timeout_s,
                max_retries=1,
            )
        self._clients[api_key] = client
        while len(self._clients) > self.max_clients:
            _, old = self._clients.popitem(last=False)
            self._retired.append(old)  # closed at aclose(): it may be in use right now
        yield client

    async def telnyx_hangup(self, api_key: str, call_control_id: str) -> HangupOutcome:
        """``POST /v2/calls/{call_control_id}/actions/hangup`` (carriers.md §2.7)."""
        async with self._telnyx(api_key) as client:
            try:
                await client.calls.actions.hangup(call_control_id)
            except telnyx.APIStatusError as exc:
                if _telnyx_already_ended(exc):
                    return HangupOutcome.ALREADY_ENDED
                raise _telnyx_error("hang-up refused", exc) from None
            except telnyx.APIConnectionError as exc:
                raise CarrierApiError("telnyx", f"unreachable: {exc}", None, None) from None
        return HangupOutcome.HUNG_UP

    async def telnyx_texml_hangup(
        self, api_key: str, account_sid: str, call_sid: str
    ) -> HangupOutcome:
        """``POST /v2/texml/Accounts/{account_sid}/Calls/{call_sid}`` ``Status=completed``."""
        async with self._telnyx(api_key) as client:
            try:
                await client.texml.accounts.calls.update(
                    call_sid, account_sid=account_sid, status="completed"
                )
            except telnyx.APIStatusError as exc:
                if exc.status_code == 404 or _telnyx_already_ended(exc):
                    return HangupOutcome.ALREADY_ENDED
                raise _telnyx_error("TeXML hang-up refused", exc) from None
            except telnyx.APIConnectionError as exc:
                raise CarrierApiError("telnyx", f"unreachable: {exc}", None, None) from None
        return HangupOutcome.HUNG_UP

    async def telnyx_reject(self, api_key: str, call_control_id: str, *, busy: bool) -> None:
        """``POST /v2/calls/{id}/actions/reject``: refuse a parked call unanswered."""
        async with self._telnyx(api_key) as client:
            try:
                await client.calls.actions.reject(
                    call_control_id, cause="USER_BUSY" if busy else "CALL_REJECTED"
                )
            except telnyx.APIStatusError as exc:
                if _telnyx_already_ended(exc):
                    return
                raise _telnyx_error("reject refused", exc) from None
            except telnyx.APIConnectionError as exc:
                raise CarrierApiError("telnyx", f"unreachable: {exc}", None, None) from None

    async def telnyx_answer_and_stream(
        self,
        api_key: str,
        call_control_id: str,
        streaming_body: dict[str, object],
        *,
        command_id: str,
    ) -> None:
        """Answer a parked Call Control call, then start the bidirectional stream.

        ``streaming_body`` is ``ingress.media_streams.telnyx.telnyx_streaming_start_body``.
        Two commands because the SDK's answer lacks ``stream_auth_token`` (carriers.md
        §2.3); ``command_id`` (suffixed per command) lets Telnyx drop a duplicate when a
        retried ``call.initiated`` makes us answer twice ("Commands with duplicate
        command_ids within 60 seconds will be ignored").
        """
        async with self._telnyx(api_key) as client:
            try:
                await client.calls.actions.answer(call_control_id, command_id=f"{command_id}-a")
                body: dict[str, Any] = dict(streaming_body)
                body.setdefault("command_id", f"{command_id}-s")
                await client.calls.actions.start_streaming(call_control_id, extra_body=body)
            except telnyx.APIStatusError as exc:
                raise _telnyx_error("answer/streaming_start refused", exc) from None
            except telnyx.APIConnectionError as exc:
                raise CarrierApiError("telnyx", f"unreachable: {exc}", None, None) from None


def _telnyx_codes(exc: telnyx.APIStatusError) -> list[str]:
    body = exc.body
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return []
    return [str(e.get("code")) for e in errors if isinstance(e, dict) and "code" in e]


def _telnyx_already_ended(exc: telnyx.APIStatusError) -> bool:
    return exc.status_code == 422 and _TELNYX_ALREADY_ENDED in _telnyx_codes(exc)


def _telnyx_error(what: str, exc: telnyx.APIStatusError) -> CarrierApiError:
    codes = _telnyx_codes(exc)
    return CarrierApiError(
        "telnyx", f"{what} (HTTP {exc.status_code})", exc.status_code, codes[0] if codes else None
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)
