"""Webhook delivery: one item per (tenant, event), attempted until delivered or the schedule is exhausted.

Lifecycle: `pending` → `delivered`, or `pending` → `dead_letter` after `MAX_ATTEMPTS` failed attempts; a
replay puts a finished delivery back to `pending` with a fresh schedule (same event id, so receivers that
already have it deduplicate).

Schedule: attempt 1 when the notifier consumes the event; after the k-th failure the next attempt is due
`BACKOFF_SECONDS[k-1]` later plus 0-20 % jitter (`chalicelib.backoff`: deliveries that failed together in a
receiver's outage do not all come back at the same second) — 1 min, 5 min, 30 min, 1 h, 2 h, 4 h, 8 h, 12 h:
nine attempts spread over 27 h 36 min to 33 h 7 min, then `dead_letter`. A failure is a non-2xx answer (3xx
included: redirects are not followed), a timeout (`transport.TIMEOUT_SECONDS`), a refused or unreachable host.

Timing — SQS delayed re-sends, with a sweep as safety net:
- After a failed attempt the delivery item records `attempts`, `next_attempt_at` and the last status, then a
  message `{"kind": "webhook.delivery", tenant_id, delivery_id, attempt, replays}` is sent to the events queue
  with `DelaySeconds = min(remaining, 900)` (the SQS maximum). A message that arrives before its delivery is
  due is re-sent with the remaining delay (hops of at most 15 min), so long waits need no visibility tricks.
- The message names the generation (`attempt`, `replays`) it was sent for; a duplicate or stale message (the
  item moved on) is dropped, so at most one chain of messages is live per delivery.
- Attempts are claimed with a conditional update on (status, attempts, replays): two workers never attempt
  the same generation twice. The claim pushes `next_attempt_at` `CLAIM_SECONDS` ahead. The notifier's first
  attempt is claimed by the conditional put that creates the delivery (`deliver_events`).
- `run_due()` — called by the hourly renewer — attempts every pending delivery overdue by more than
  `SWEEP_GRACE_SECONDS` (its message was lost, or a worker died mid-attempt). Tests call it with `grace=0`
  and a simulated clock.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

from pynamodb.exceptions import DoesNotExist, PutError, UpdateError

from chalicelib.backoff import jittered
from chalicelib.ids import new_id
from chalicelib.logs import logger
from chalicelib.models.event import Event
from chalicelib.models.webhook import DUE_SHARD, Webhook, WebhookDelivery
from chalicelib.notify import queue, signing, transport, webhook_config
from chalicelib.timeutil import isoformat

BACKOFF_SECONDS: tuple[int, ...] = (60, 300, 1800, 3600, 7200, 14400, 28800, 43200)
MAX_ATTEMPTS = len(BACKOFF_SECONDS) + 1
CLAIM_SECONDS = 60
MAX_QUEUE_DELAY = queue.MAX_DELAY_SECONDS
SWEEP_GRACE_SECONDS = 900
RETENTION_SECONDS = 90 * 24 * 3600
MESSAGE_KIND = "webhook.delivery"
MAX_REPLAY = 1000

clock: Callable[[], float] = time.time  # injectable (tests simulate time)


class NotReplayable(Exception):
    """The delivery is still pending (it will be attempted) or its event has expired."""


@dataclass(frozen=True)
class ReplayResult:
    replayed: int
    truncated: bool


def _iso(epoch: float) -> str:
    return isoformat(datetime.fromtimestamp(epoch, tz=timezone.utc))


def delivery_id_for(event_id: str) -> str:
    return "whd_" + event_id.split("_", 1)[-1]


def event_body(event_id: str, event_type: str, created_at: str, tenant_id: str, data: dict) -> bytes:
    """The raw JSON body; the signature covers exactly these bytes."""
    return json.dumps({"id": event_id, "type": event_type, "created_at": created_at, "tenant_id": tenant_id,
                       "data": data}, separators=(",", ":"), sort_keys=True, default=str).encode("utf-8")


def get_delivery(tenant_id: str, delivery_id: str) -> WebhookDelivery | None:
    try:
        return WebhookDelivery.get(tenant_id, delivery_id)
    except DoesNotExist:
        return None


# --- creation (notifier) ------------------------------------------------------------------------------------
def create_for_event(event: Event, now: float | None = None) -> WebhookDelivery | None:
    """The delivery for `event` when the tenant has a webhook subscribed to its type (idempotent)."""
    if event.type not in webhook_config.EVENT_TYPES:
        return None
    webhook = webhook_config.get_webhook(event.tenant_id)
    if webhook is None or not webhook_config.subscribed(webhook, event.type):
        return None
    created = _create(event, clock() if now is None else now, claimed=False)
    if created is None:
        return get_delivery(event.tenant_id, delivery_id_for(event.event_id))  # a redelivered event message
    return created


def deliver_events(events: Sequence[Event], has_time: Callable[[], bool]) -> dict[str, int]:
    """The notifier's webhook step for a batch of stored events (one queue message): each event the tenant's
    webhook subscribes to gets its delivery, attempted right away while `has_time()` (else queued).

    Per batch, not per event: the webhook item once per tenant, its signing secret decrypted once, and which
    deliveries exist already in one consistent BatchGetItem. A new delivery is created by a conditional put
    (absent → created) that, when there is time for an attempt, is also the attempt's claim (`attempts` = 1,
    `next_attempt_at` pushed `CLAIM_SECONDS` ahead): a second consumer of the same queue message finds it under
    way and skips it, and the sweep leaves it alone until the claim has long expired (`SWEEP_GRACE_SECONDS`).
    So a first attempt costs two writes (the put, the outcome's conditional update) and no read; a consumer
    that dies between the put and the POST leaves it to the sweep, as a claimed attempt always did. A delivery
    that exists already (a redelivered message) is attempted only if still pending and never attempted (the
    claim decides, as before). Returns counts by outcome."""
    counts: dict[str, int] = {}
    wanted = [e for e in events if e.type in webhook_config.EVENT_TYPES]
    webhooks = {t: webhook_config.get_webhook(t) for t in dict.fromkeys(e.tenant_id for e in wanted)}
    wanted = [e for e in wanted if webhooks[e.tenant_id] is not None
              and webhook_config.subscribed(webhooks[e.tenant_id], e.type)]
    if not wanted:
        return counts
    keys = [(e.tenant_id, delivery_id_for(e.event_id)) for e in wanted]
    existing = {(d.tenant_id, d.delivery_id): d for d in WebhookDelivery.batch_get(keys, consistent_read=True)}
    secrets: dict[str, str] = {}
    for event, key in zip(wanted, keys):
        webhook = webhooks[event.tenant_id]
        delivery = existing.get(key)
        if delivery is None:
            claim = has_time()
            delivery = _create(event, clock(), claimed=claim)
            if delivery is not None and claim:
                result = _attempt_claimed(delivery, clock(), webhook=webhook, event=event, secrets=secrets)
                counts[result] = counts.get(result, 0) + 1
                continue
            if delivery is not None:
                enqueue(delivery, 0)
                counts["queued"] = counts.get("queued", 0) + 1
                continue
            delivery = get_delivery(*key)       # created meanwhile by another consumer
        if delivery is None or delivery.status != "pending" or delivery.attempts != 0:
            continue                            # under way or done (a redelivered event message)
        if has_time():
            result = attempt(delivery, clock(), webhook=webhook, event=event, secrets=secrets)
        else:
            enqueue(delivery, 0)
            result = "queued"
        counts[result] = counts.get(result, 0) + 1
    return counts


def _create(event: Event, now: float, *, claimed: bool) -> WebhookDelivery | None:
    """Put the delivery for `event` if absent (claimed for an attempt now, or due now); None when it exists."""
    delivery = WebhookDelivery(event.tenant_id, delivery_id_for(event.event_id), event_id=event.event_id,
                               event_type=event.type, status="pending", status_key=f"{event.tenant_id}#pending",
                               attempts=1 if claimed else 0, replays=0,
                               next_attempt_at=int(now) + (CLAIM_SECONDS if claimed else 0),
                               last_attempt_at=_iso(now) if claimed else None, due_shard=DUE_SHARD,
                               created_at=_iso(now), expires_at=int(now) + RETENTION_SECONDS)
    try:
        delivery.save(condition=WebhookDelivery.delivery_id.does_not_exist())
    except PutError as exc:
        if not _conditional_failure(exc):
            raise
        return None
    return delivery


def _conditional_failure(exc: Exception) -> bool:
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"


# --- messages -----------------------------------------------------------------------------------------------
def enqueue(delivery: WebhookDelivery, delay: float) -> None:
    """Send the delivery's next message (raises on SQS failure so the caller's record is redelivered)."""
    enqueue_message({"kind": MESSAGE_KIND, "tenant_id": delivery.tenant_id, "delivery_id": delivery.delivery_id,
                     "attempt": int(delivery.attempts), "replays": int(delivery.replays)}, delay)


def enqueue_message(body: dict[str, Any], delay: float) -> None:
    queue.send(body, delay)


def on_message(body: dict[str, Any], now: float | None = None) -> str:
    """A `webhook.delivery` message: attempt when due, re-send when early, drop when stale."""
    now = clock() if now is None else now
    delivery = get_delivery(str(body["tenant_id"]), str(body["delivery_id"]))
    if delivery is None or delivery.status != "pending":
        return "stale"
    if int(body["attempt"]) != delivery.attempts or int(body["replays"]) != delivery.replays:
        return "stale"
    wait = (delivery.next_attempt_at or 0) - now
    if wait > 0:
        enqueue(delivery, wait)
        return "deferred"
    return attempt(delivery, now)


# --- attempts -----------------------------------------------------------------------------------------------
def _claim(delivery: WebhookDelivery, now: float) -> bool:
    seen_attempts, seen_replays = int(delivery.attempts), int(delivery.replays)
    try:
        delivery.update(actions=[WebhookDelivery.attempts.set(seen_attempts + 1),
                                 WebhookDelivery.next_attempt_at.set(int(now) + CLAIM_SECONDS),
                                 WebhookDelivery.last_attempt_at.set(_iso(now))],
                        condition=(WebhookDelivery.status == "pending")
                        & (WebhookDelivery.attempts == seen_attempts)
                        & (WebhookDelivery.replays == seen_replays))
    except UpdateError as exc:
        if _conditional_failure(exc):
            return False
        raise
    return True


def attempt(delivery: WebhookDelivery, now: float | None = None, *, webhook: Webhook | None = None,
            event: Event | None = None, secrets: dict[str, str] | None = None) -> str:
    """One attempt if `delivery` is pending and due: "delivered", "retry", "dead_letter" or "skipped".
    `webhook` and `event`: the items when the caller has them (else read here); `secrets`: signing secrets
    by tenant decrypted so far in this batch (filled here)."""
    now = clock() if now is None else now
    if delivery.status != "pending" or (delivery.next_attempt_at or 0) > now or not _claim(delivery, now):
        return "skipped"
    return _attempt_claimed(delivery, now, webhook=webhook, event=event, secrets=secrets)


def _attempt_claimed(delivery: WebhookDelivery, now: float, *, webhook: Webhook | None = None,
                     event: Event | None = None, secrets: dict[str, str] | None = None) -> str:
    try:
        outcome = _send(delivery, webhook, event, {} if secrets is None else secrets)
    except Exception:  # noqa: BLE001 - recorded as a failed attempt, so the schedule (not the sweep) retries it
        logger.exception("webhook attempt failed internally", extra={"delivery_id": delivery.delivery_id})
        outcome = transport.Outcome(False, None, "internal error")
    return _record(delivery, outcome, now)


def _send(delivery: WebhookDelivery, webhook: Webhook | None, event: Event | None,
          secrets: dict[str, str]) -> transport.Outcome:
    webhook = webhook or webhook_config.get_webhook(delivery.tenant_id)
    if webhook is None:
        return transport.Outcome(False, None, "no webhook configured", final=True)
    if event is None:
        try:
            event = Event.get(delivery.tenant_id, delivery.event_id)
        except DoesNotExist:
            return transport.Outcome(False, None, "event expired", final=True)
    body = event_body(event.event_id, event.type, event.created_at, event.tenant_id, event.payload or {})
    # wall-clock time, not `clock`: the receiver checks it against its own clock (replay window)
    if webhook.tenant_id not in secrets:
        secrets[webhook.tenant_id] = webhook_config.signing_secret(webhook)
    headers = signing.signed_headers(secrets[webhook.tenant_id], event.event_id, int(time.time()), body)
    return transport.post(webhook.url, body, headers)


def _record(delivery: WebhookDelivery, outcome: transport.Outcome, now: float) -> str:
    attempts = int(delivery.attempts)  # already incremented by the claim
    common = [WebhookDelivery.last_status_code.set(outcome.status_code) if outcome.status_code is not None
              else WebhookDelivery.last_status_code.remove(),
              WebhookDelivery.last_error.set(outcome.line)]
    final = outcome.ok or outcome.final or attempts >= MAX_ATTEMPTS
    if final:
        status = "delivered" if outcome.ok else "dead_letter"
        stamp = WebhookDelivery.delivered_at if outcome.ok else WebhookDelivery.dead_lettered_at
        actions = common + [WebhookDelivery.status.set(status),
                            WebhookDelivery.status_key.set(f"{delivery.tenant_id}#{status}"),
                            WebhookDelivery.next_attempt_at.remove(), WebhookDelivery.due_shard.remove(),
                            stamp.set(_iso(now))]
        delay = None
    else:
        status, delay = "retry", round(jittered(BACKOFF_SECONDS[attempts - 1]))
        actions = common + [WebhookDelivery.next_attempt_at.set(int(now) + delay)]
    delivery.update(actions=actions, condition=(WebhookDelivery.attempts == attempts)
                    & (WebhookDelivery.replays == delivery.replays))
    log = logger.info if outcome.ok else logger.warning
    log("webhook attempt", extra={"tenant_id": delivery.tenant_id, "delivery_id": delivery.delivery_id,
                                  "attempt": attempts, "outcome": outcome.line, "result": status})
    if delay is not None:
        enqueue(delivery, delay)
    return status


def run_due(now: float | None = None, *, grace: float = SWEEP_GRACE_SECONDS, limit: int = 200,
            deadline: float | None = None) -> dict[str, int]:
    """Attempt pending deliveries due more than `grace` seconds ago (lost messages, crashed attempts)."""
    now = clock() if now is None else now
    counts = {"due": 0, "delivered": 0, "retry": 0, "dead_letter": 0, "skipped": 0, "errors": 0}
    keys = WebhookDelivery.by_due.query(DUE_SHARD, WebhookDelivery.next_attempt_at <= now - grace, limit=limit)
    for key in list(keys):
        if deadline is not None and time.monotonic() > deadline:
            break
        try:
            delivery = get_delivery(key.tenant_id, key.delivery_id)
            if delivery is None:
                continue
            counts["due"] += 1
            counts[attempt(delivery, now)] += 1
        except Exception:  # noqa: BLE001 - one delivery must not stop the sweep of the others
            logger.exception("overdue delivery failed", extra={"delivery_id": key.delivery_id})
            counts["errors"] += 1
    return counts


# --- replay -------------------------------------------------------------------------------------------------
def replay(delivery: WebhookDelivery, now: float | None = None) -> WebhookDelivery:
    """Put a delivered or dead-lettered delivery back to pending with a fresh schedule and queue it."""
    now = clock() if now is None else now
    if delivery.status == "pending":
        raise NotReplayable("This delivery is still pending; it will be attempted.")
    previous = delivery.status
    try:
        delivery.update(actions=[WebhookDelivery.status.set("pending"),
                                 WebhookDelivery.status_key.set(f"{delivery.tenant_id}#pending"),
                                 WebhookDelivery.attempts.set(0), WebhookDelivery.replays.add(1),
                                 WebhookDelivery.next_attempt_at.set(int(now)),
                                 WebhookDelivery.due_shard.set(DUE_SHARD),
                                 WebhookDelivery.dead_lettered_at.remove(), WebhookDelivery.delivered_at.remove()],
                        condition=WebhookDelivery.status == previous)
    except UpdateError as exc:
        if _conditional_failure(exc):
            raise NotReplayable("This delivery changed meanwhile; try again.") from None
        raise
    enqueue(delivery, 0)
    return delivery


def replay_dead_letters(tenant_id: str, since: str, now: float | None = None) -> ReplayResult:
    """Replay every delivery dead-lettered at or after `since` (ISO 8601 UTC), at most `MAX_REPLAY` a call."""
    now = clock() if now is None else now
    found = WebhookDelivery.by_status.query(f"{tenant_id}#dead_letter",
                                            filter_condition=WebhookDelivery.dead_lettered_at >= since)
    replayed = 0
    for delivery in found:
        if replayed >= MAX_REPLAY:
            return ReplayResult(replayed, True)
        try:
            replay(delivery, now)
        except NotReplayable:
            continue
        replayed += 1
    return ReplayResult(replayed, False)


# --- listing ------------------------------------------------------------------------------------------------
def list_deliveries(tenant_id: str, status: str | None, limit: int,
                    last_key: dict | None) -> tuple[list[WebhookDelivery], dict | None]:
    """Newest first; by status through `by_status`."""
    if status:
        result = WebhookDelivery.by_status.query(f"{tenant_id}#{status}", scan_index_forward=False, limit=limit,
                                                 last_evaluated_key=last_key)
    else:
        result = WebhookDelivery.query(tenant_id, scan_index_forward=False, limit=limit,
                                       last_evaluated_key=last_key)
    items = list(result)
    return items, result.last_evaluated_key


# --- test event ---------------------------------------------------------------------------------------------
def send_test(tenant_id: str) -> tuple[str, transport.Outcome]:
    """A `webhook.test` event POSTed once, synchronously; neither stored as an event nor retried."""
    webhook = webhook_config.get_webhook(tenant_id)
    if webhook is None:
        raise LookupError("no webhook configured")
    now = clock()
    event_id = new_id("evt")
    body = event_body(event_id, webhook_config.TEST_EVENT_TYPE, _iso(now), tenant_id,
                      {"message": "This is a test event from mailbridge."})
    headers = signing.signed_headers(webhook_config.signing_secret(webhook), event_id, int(time.time()), body)
    return event_id, transport.post(webhook.url, body, headers)
