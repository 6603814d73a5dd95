"""Event emission: store the event, then enqueue it for the notifier (webhooks, user notifications).

Types: message.created, message.paired, signal.created, record.created, mailbox.status_changed,
mailbox.push_expiring, mailbox.credentials_expiring, outbox.sent, outbox.failed (`models.webhook.EVENT_TYPES`,
what tenants subscribe to); internal (drives a background job, not for tenant webhooks): directory.changed.
The stored item is the source of truth; the queue message only carries its
key, so a duplicate delivery is detectable by `event_id` and a lost enqueue is recoverable: an event whose
SendMessage still fails after botocore's retries (`aws.py`) is marked `unsent_shard` (the sparse `by_unsent`
index), and the hourly renewer re-sends it (`resend_unsent`) — the notifier handles an event id once, so a
mark left behind by a crash between the send and its clearing costs nothing but a repeat it ignores.
"""
from __future__ import annotations

import json
import time
from typing import Any, Callable

from pynamodb.exceptions import PutError

from chalicelib import aws
from chalicelib.budget import batches_within
from chalicelib.config import get_settings
from chalicelib.ids import new_id, stable_id
from chalicelib.logs import logger
from chalicelib.models.event import UNSENT_SHARD, Event
from chalicelib.timeutil import now_iso

RETENTION_SECONDS = 90 * 24 * 3600
INTERNAL_TYPES = frozenset({"directory.changed"})


def stable_event_id(tenant_id: str, event_type: str, subject_id: str) -> str:
    """The id of the one event of `event_type` about `subject_id` (a replay emits the same id)."""
    return stable_id("evt", tenant_id, event_type, subject_id)


def emit(tenant_id: str, event_type: str, payload: dict[str, Any], *, event_id: str | None = None) -> Event:
    """Store the event, then enqueue its key. With `event_id` the store is conditional (put if absent), so a
    replayed emit keeps one event; it is enqueued again (at-least-once delivery; consumers dedupe by id)."""
    event = Event(tenant_id, event_id or new_id("evt"), type=event_type, payload=payload, created_at=now_iso(),
                  expires_at=int(time.time()) + RETENTION_SECONDS)
    if event_id is None:
        event.save()
    else:
        try:
            event.save(condition=Event.event_id.does_not_exist())
        except PutError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
    queue_url = get_settings().events_queue_url
    if queue_url:
        try:
            _send(queue_url, event)
        except Exception:  # noqa: BLE001 - after botocore's retries: the renewer re-sends it (`resend_unsent`)
            logger.exception("event enqueue failed; marked for the renewer to re-send",
                             extra={"event_type": event_type, "event_id": event.event_id})
            _mark_unsent(event)
    return event


def _send(queue_url: str, event: Event) -> None:
    aws.sqs().send_message(QueueUrl=queue_url, MessageBody=json.dumps(
        {"tenant_id": event.tenant_id, "event_id": event.event_id, "type": event.type}))


def _mark_unsent(event: Event) -> None:
    try:
        Event(event.tenant_id, event.event_id).update(actions=[Event.unsent_shard.set(UNSENT_SHARD)],
                                                      condition=Event.event_id.exists())
    except Exception:  # noqa: BLE001 - DynamoDB refused too: only the ERROR lines tell of this event
        logger.exception("marking an unsent event failed; it will not be delivered",
                         extra={"event_id": event.event_id})


def resend_unsent(has_time: Callable[[], bool] = lambda: True) -> int:
    """Send the queue messages of the events `emit` could not enqueue (`by_unsent`, oldest first) and clear
    their marks; stops at the first refusal (SQS is still failing: the next run goes on) or when `has_time()`
    says so. Returns how many were sent."""
    queue_url = get_settings().events_queue_url
    sent = 0
    if not queue_url:
        return sent
    for key in Event.by_unsent.query(UNSENT_SHARD):
        if not has_time():
            break
        try:
            event = Event.get(key.tenant_id, key.event_id)
        except Event.DoesNotExist:          # expired (TTL) or erased since: nothing to deliver
            continue
        try:
            _send(queue_url, event)
        except Exception:  # noqa: BLE001 - SQS still refuses: the marks stay for the next run
            logger.exception("re-sending an unsent event failed", extra={"event_id": event.event_id})
            break
        Event(event.tenant_id, event.event_id).update(actions=[Event.unsent_shard.remove()],
                                                      condition=Event.event_id.exists())
        sent += 1
    return sent


EVENTS_KIND = "events"            # one queue message carrying several whole events (see `enqueue_events`)
QUEUE_MESSAGE_BYTES = 200_000    # below SQS's 256 KB message limit, with room for the envelope


def new_event(tenant_id: str, event_type: str, payload: dict[str, Any], event_id: str) -> Event:
    """An event item (not yet stored) with a stable id."""
    return Event(tenant_id, event_id, type=event_type, payload=payload, created_at=now_iso(),
                 expires_at=int(time.time()) + RETENTION_SECONDS)


def event_body(event: Event) -> dict[str, Any]:
    return {"tenant_id": event.tenant_id, "event_id": event.event_id, "type": event.type,
            "payload": event.payload, "created_at": event.created_at, "expires_at": event.expires_at}


def enqueue_events(tenant_id: str, events: list[Event]) -> int:
    """Send `events` (one tenant's) to the notifier in as few SQS messages as fit (`{"kind": "events",
    "tenant_id", "events": [whole events]}`, ≤ 200 KB each); returns how many messages were sent. Each event
    travels whole, so the notifier stores it if it is not stored yet (put if absent, same id): the sender may
    enqueue BEFORE storing, and a crash in between loses nothing. Raises when SQS fails (the caller keeps
    what it owes and retries)."""
    queue_url = get_settings().events_queue_url
    if not queue_url or not events:
        return 0
    batches = batches_within([event_body(event) for event in events], lambda body: len(json.dumps(body)),
                             QUEUE_MESSAGE_BYTES)
    for batch in batches:
        aws.sqs().send_message(QueueUrl=queue_url, MessageBody=json.dumps(
            {"kind": EVENTS_KIND, "tenant_id": tenant_id, "events": batch}))
    return len(batches)


def list_events(tenant_id: str, event_type: str | None = None, limit: int = 100) -> list[Event]:
    """Newest first; filtered by type when given (tests and the deliveries log use this)."""
    condition = Event.type == event_type if event_type else None
    return list(Event.query(tenant_id, filter_condition=condition, scan_index_forward=False, limit=limit))
