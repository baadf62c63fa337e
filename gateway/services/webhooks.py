"""Signed status webhooks, delivered off the call path by a worker, retried, recorded.

Events (the body is JSON; ``event`` names it):

* ``call.ended``: always, when a trunk has a ``webhook_url`` and one of its calls ends
  (status completed, failed, busy, no-answer or canceled);
* ``call.started`` and ``call.answered``: only when listed in the trunk's ``webhook_events``.

Body: the seed's fields (``sip_call_id``, ``timestamp``, ``direction``, ``from_number``,
``to_number``, ``carrier``, ``status``, ``disconnect_reason``, ``disconnect_explanation``,
``blame``, ``duration``, ``billable_duration``, ``ai_latency``, ``jitter_max``) plus
``event``, ``call_id`` and ``trunk_id``.

Signature (when the trunk has a ``webhook_secret``)::

    Telepath-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

A receiver verifies it like this (and rejects timestamps older than a few minutes)::

    t, v1 = (p.split("=", 1)[1] for p in header.split(","))
    expected = hmac.new(secret.encode(), f"{t}.".encode() + raw_body, hashlib.sha256).hexdigest()
    ok = hmac.compare_digest(expected, v1) and abs(time.time() - int(t)) < 300

Delivery: ``enqueue`` writes a ``WebhookDelivery`` row (status ``pending``) and wakes the
worker; nothing on the call path waits for the receiver. Each attempt (5 s timeout) is
appended to the row's ``attempts``. 2xx → ``delivered``; 5xx, 408, 429, timeouts and
connection errors → retried with exponential backoff (``backoff * 2**(n-1)``), at most
``max_retries`` times, then ``failed``; any other status → ``failed`` at once. Pending rows
live in the database, so a restart loses none: the worker picks them up when it starts.
Several gateway processes may share the database: a worker claims a row by moving its
``next_attempt_at`` forward with a compare-and-set (a lease), so one row is sent by one
worker at a time, and a crashed worker's lease simply expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from gateway.ids import new_id
from gateway.metrics import GatewayMetrics
from gateway.services.trunks import TrunkService
from models import Call, WebhookDelivery

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "Telepath-Signature"
OPTIONAL_EVENTS = ("call.started", "call.answered")
END_EVENT = "call.ended"
DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_BACKOFF = 2.0
_LEASE = timedelta(seconds=30)
_BATCH = 20
_IDLE_POLL = 5.0  # also picks up rows queued by other processes
_RETRY_STATUSES = frozenset({408, 425, 429})


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Telepath-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def payload(call: Call, event: str) -> dict[str, Any]:
    """The webhook body for ``call`` (the seed's fields plus event, call_id, trunk_id)."""
    when = call.end_time or call.answer_time or call.start_time
    return {
        "event": event,
        "call_id": call.id,
        "trunk_id": call.trunk_id,
        "sip_call_id": call.sip_call_id,
        "timestamp": _iso(when),
        "direction": call.direction,
        "from_number": call.from_number,
        "to_number": call.to_number,
        "carrier": call.carrier,
        "status": call.status,
        "disconnect_reason": call.disconnect_reason,
        "disconnect_explanation": call.disconnect_explanation,
        "blame": call.blame,
        "duration": call.duration,
        "billable_duration": call.billable_duration,
        "ai_latency": call.ai_latency,
        "jitter_max": call.jitter_max,
    }


class WebhookService:
    """Queues status webhooks and runs the delivery worker (``start``/``stop``)."""

    def __init__(
        self,
        trunks: TrunkService,
        metrics: GatewayMetrics | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if timeout <= 0 or max_retries < 0 or backoff < 0:
            raise ValueError("timeout must be positive, max_retries and backoff not negative")
        self.trunks = trunks
        self.metrics = metrics
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self._clock = clock
        self._transport = transport
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._claimed: set[str] = set()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # --- queueing (the call path) ---

    async def enqueue(
        self, call: Call, event: str, url: str | None, *, events: list[str] | None = None
    ) -> WebhookDelivery | None:
        """Queue ``event`` for ``call`` to ``url``; ``None`` when there is nothing to send.

        Optional events are sent only when listed in ``events`` (the trunk's
        ``webhook_events``).
        """
        if not url:
            return None
        if event in OPTIONAL_EVENTS and event not in (events or []):
            return None
        body = json.dumps(payload(call, event), separators=(",", ":"))
        delivery = await WebhookDelivery.create(
            id=new_id("whd"),
            call_id=call.id,
            event=event,
            url=url,
            payload=body,
            status="pending",
            attempts=[],
            next_attempt_at=self._now(),
        )
        self._wake.set()
        return delivery

    # --- the worker ---

    @property
    def running(self) -> bool:
        """The worker is started."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the worker (it first delivers whatever is pending in the database)."""
        if self.running:
            return
        self._client = httpx.AsyncClient(
            timeout=self.timeout,
            follow_redirects=False,
            trust_env=False,  # nothing but Settings reads the environment
            transport=self._transport,
        )
        self._wake.set()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="webhook-worker")

    async def stop(self) -> None:
        """Stop the worker; rows it had claimed stay pending, due at once for the next."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if self._claimed:
            with contextlib.suppress(Exception):
                await WebhookDelivery.filter(id__in=list(self._claimed), status="pending").update(
                    next_attempt_at=self._now()
                )
            self._claimed.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        while True:
            try:
                delay = await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("webhook worker pass failed")
                delay = _IDLE_POLL
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, delay)):
                    await self._wake.wait()

    async def deliver_due(self) -> float:
        """Send every due delivery once; returns seconds until the next one is due."""
        now = self._now()
        due = (
            await WebhookDelivery.filter(status="pending", next_attempt_at__lte=now)
            .order_by("next_attempt_at")
            .limit(_BATCH)
        )
        claimed: list[WebhookDelivery] = []
        for row in due:
            lease = now + _LEASE
            won = await WebhookDelivery.filter(
                id=row.id, status="pending", next_attempt_at=row.next_attempt_at
            ).update(next_attempt_at=lease)
            if won:
                row.next_attempt_at = lease
                claimed.append(row)
                self._claimed.add(row.id)
        if claimed:
            await asyncio.gather(*(self._attempt(row) for row in claimed))
            if len(due) == _BATCH:
                return 0.0
        upcoming = (
            await WebhookDelivery.filter(status="pending").order_by("next_attempt_at").first()
        )
        if upcoming is None or upcoming.next_attempt_at is None:
            return _IDLE_POLL
        wait = (upcoming.next_attempt_at - self._now()).total_seconds()
        return min(_IDLE_POLL, max(0.0, wait))

    async def _secret(self, call_id: str) -> str | None:
        call = await Call.get_or_none(id=call_id)
        if call is None or not call.trunk_id:
            return None
        state = await self.trunks.find_by_id(call.trunk_id)
        return None if state is None else state.secrets.get("webhook_secret")

    async def _attempt(self, row: WebhookDelivery) -> None:
        client = self._client
        if client is None:
            return
        body = row.payload.encode()
        started = self._clock()
        headers = {"Content-Type": "application/json", "User-Agent": "Telepath-Webhooks/1"}
        status: int | None = None
        error: str | None = None
        try:
            secret = await self._secret(row.call_id)
        except Exception as exc:  # noqa: BLE001 - a key or database problem: retried, then failed
            # Never send unsigned what should have been signed.
            logger.warning("webhook %s: the trunk's webhook secret cannot be read", row.id)
            error = f"webhook secret unavailable: {type(exc).__name__}"
        else:
            if secret:
                headers[SIGNATURE_HEADER] = sign(secret, body, int(started))
            try:
                # Stream: the receiver's body is never read (it may be huge), only its status.
                async with client.stream("POST", row.url, content=body, headers=headers) as reply:
                    status = reply.status_code
            except httpx.TimeoutException:
                error = f"timeout after {self.timeout:g} s"
            except (httpx.HTTPError, OSError, ValueError) as exc:
                error = f"{type(exc).__name__}: {str(exc)[:200]}"
        attempt: dict[str, Any] = {
            "at": _iso(datetime.fromtimestamp(started, UTC)),
            "status_code": status,
            "error": error,
            "duration_ms": round((self._clock() - started) * 1000, 1),
        }
        attempts = [*(row.attempts or []), attempt]
        retryable = error is not None or (
            status is not None and (status >= 500 or status in _RETRY_STATUSES)
        )
        if status is not None and 200 <= status < 300:
            outcome, next_at = "delivered", None
        elif retryable and len(attempts) <= self.max_retries:
            outcome = "retry"
            next_at = self._now() + timedelta(seconds=self.backoff * 2 ** (len(attempts) - 1))
        else:
            outcome, next_at = "failed", None
        row.attempts = attempts
        row.status = "pending" if outcome == "retry" else outcome
        row.next_attempt_at = next_at
        await row.save(update_fields=["attempts", "status", "next_attempt_at"])
        self._claimed.discard(row.id)
        if self.metrics is not None:
            self.metrics.webhook_deliveries.labels(outcome).inc()
        logger.info(
            "call_id=%s webhook %s attempt %d: %s",
            row.call_id,
            row.event,
            len(attempts),
            outcome if error is None else f"{outcome} ({error})",
        )


def delivery_view(row: WebhookDelivery) -> Mapping[str, Any]:
    """A delivery as ``GET /v1/calls/{id}`` shows it (the body is not repeated)."""
    return {
        "id": row.id,
        "event": row.event,
        "url": row.url,
        "status": row.status,
        "attempts": list(row.attempts or []),
        "next_attempt_at": _iso(row.next_attempt_at),
        "created_at": _iso(row.created_at),
    }
