"""Event emission: store the event, then enqueue it for the notifier (webhooks, user notifications).

Types: message.created, message.paired, signal.created, record.created, mailbox.status_changed,
mailbox.credentials_expiring; internal (drives a background job, not for tenant webhooks): directory.changed. The stored item is the source of truth; the queue message only carries its
key, so a lost enqueue is recoverable and a duplicate delivery is detectable by `event_id`.
"""
from __future__ import annotations

import json
import time
from typing import Any

from pynamodb.exceptions import PutError

from chalicelib import aws
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
        except Exception:  # the stored event remains; the notifier's sweep can pick it up
            logger.exception("event enqueue failed", extra={"event_type": event_type})
    return event


def list_events(tenant_id: str, event_type: str | None = None, limit: int = 100) -> list[Event]:
    """Newest first; filtered by type when given (tests and the deliveries log use this)."""
    condition = Event.type == event_type if event_type else None
    return list(Event.query(tenant_id, filter_condition=condition, scan_index_forward=False, limit=limit))
