"""Event emission: store the event, then enqueue it for the notifier (webhooks, user notifications).

Types: message.created, message.paired, signal.created, record.created, mailbox.status_changed,
mailbox.push_expiring, mailbox.credentials_expiring, outbox.sent, outbox.failed (`models.webhook.EVENT_TYPES`,
what tenants subscribe to); internal (drives a background job, not for tenant webhooks): directory.changed.
The stored item is the source of truth; the queue message only carries its
key, so a lost enqueue is recoverable and a duplicate delivery is detectable by `event_id`.
"""
from __future__ import annotations

import json
import time
from typing import Any

from pynamodb.exceptions import PutError

from chalicelib import aws
from chalicelib.budget import batches_within
from chalicelib.config import get_settings
from chalicelib.ids import new_id, stable_id
from chalicelib.logs import logger
from chalicelib.models.event import Event
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
            aws.sqs().send_message(QueueUrl=queue_url, MessageBody=json.dumps(
                {"tenant_id": tenant_id, "event_id": event.event_id, "type": event_type}))
        except Exception:  # noqa: BLE001 - after botocore's 5 attempts (aws.py): the event stays stored (kept
            # 90 days) but reaches no webhook or notification — nothing re-sends it (a known gap: message
            # events travel through page debts and `enqueue_events`, which raise and are retried instead)
            logger.exception("event enqueue failed; the event is stored but not delivered",
                             extra={"event_type": event_type, "event_id": event.event_id})
    return event


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
