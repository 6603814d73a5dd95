"""Events queue consumer: loads each stored event (the source of truth, see `events.py`), runs the internal
jobs an event triggers (late pairing for `directory.changed`), delivers it to the tenant's webhook and notifies
the users it concerns.

Four message kinds arrive on the queue:
- an event reference `{"tenant_id", "event_id", "type"}` (from `events.emit`): the event is read from the
  Event table by id; late pairing runs; when the tenant's webhook subscribes to the type, its delivery item is
  created (idempotently) and attempted right away — or queued when this invocation lacks the time for a full
  attempt (`transport.TIMEOUT_SECONDS`); the users the event concerns are notified per their settings
  (`user_notifications.py`);
- several whole events `{"kind": "events", "tenant_id", "events": [...]}` (from `events.enqueue_events`, the
  sync worker's batched `message.created`): each is stored if not stored yet (one batched read, then the
  missing ones in BatchWriteItem: the sender may have died between enqueueing and storing) and handled as
  above — step by step for the whole message, so each step reads what it needs once per queue message
  (recipients per mailbox, the webhook per tenant, settings per user; `_handle`), not per event; then the new
  messages join their conversations and the search index in a few batched calls (`threads/derived.py`, also
  for a single `message.created` reference); a failure redelivers the whole message (every step is
  idempotent per event);
- a delivery message `{"kind": "webhook.delivery", ...}`: a scheduled retry or a replay (`deliveries.py`);
- a digest message `{"kind": "notify.digest", ...}`: a user's email digest is due (`digest_mail.py`);
- an outbox job `{"kind": "outbox.send", "tenant_id", "outbox_id"}`: send (or finish) one outbox item
  (`outbox/delivery.py`; a job kind on this queue rather than a queue of its own, docs/architecture.md);
- privacy jobs: `{"kind": "mailbox.purge", "tenant_id", "mailbox_id"}` continues a purge
  (`erasure/purge.py`), `{"kind": "privacy.erase", "tenant_id", "job_id"}` an erasure (`erasure/erase.py`),
  each for the time this invocation has left (less a margin), then re-queued.

Each record is isolated (Powertools BatchProcessor): a record whose event cannot be loaded because DynamoDB
failed is reported in `batchItemFailures` and redelivered; a record naming an event that does not exist
(expired, or a malformed body) is logged and dropped.
"""
from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from pynamodb.exceptions import DoesNotExist

from chalicelib.logs import logger
from chalicelib.models.event import Event
from chalicelib.notify import deliveries, digest, digest_mail, events, transport, user_notifications
from chalicelib.erasure import erase, purge
from chalicelib.outbox import delivery as outbox_delivery
from chalicelib.pairing import late as late_pairing
from chalicelib.threads import derived

ATTEMPT_MARGIN_SECONDS = 5
PRIVACY_JOB_SECONDS = 40.0          # at most, per privacy job step (the notifier times out at 60 s)


def _has_time_for_attempt(lambda_context: Any) -> bool:
    if lambda_context is None:
        return True
    needed = (transport.TIMEOUT_SECONDS + ATTEMPT_MARGIN_SECONDS) * 1000
    return lambda_context.get_remaining_time_in_millis() > needed


def _privacy_seconds(lambda_context: Any) -> float:
    if lambda_context is None:
        return PRIVACY_JOB_SECONDS
    left = lambda_context.get_remaining_time_in_millis() / 1000 - 2 * ATTEMPT_MARGIN_SECONDS
    return max(1.0, min(PRIVACY_JOB_SECONDS, left))


def _delivery_message(body: dict, lambda_context: Any) -> str:
    if not _has_time_for_attempt(lambda_context):
        deliveries.enqueue_message(body, 0)
        return "requeued"
    return deliveries.on_message(body)


def _parse(record) -> dict | None:
    try:
        body = json.loads(record.body)
        if body.get("kind") == deliveries.MESSAGE_KIND:
            str(body["tenant_id"]), str(body["delivery_id"]), int(body["attempt"]), int(body["replays"])
        elif body.get("kind") == digest.MESSAGE_KIND:
            str(body["tenant_id"]), str(body["user_id"])
        elif body.get("kind") == events.EVENTS_KIND:
            for item in body["events"]:
                str(item["event_id"]), str(item["type"]), dict(item["payload"]), str(item["created_at"])
        elif body.get("kind") == outbox_delivery.JOB_KIND:
            str(body["tenant_id"]), str(body["outbox_id"])
        elif body.get("kind") == purge.JOB_KIND:
            str(body["tenant_id"]), str(body["mailbox_id"])
        elif body.get("kind") == erase.JOB_KIND:
            str(body["tenant_id"]), str(body["job_id"])
        else:
            str(body["tenant_id"]), str(body["event_id"])
        return body
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def consume(record, lambda_context: Any = None) -> str:
    body = _parse(record)
    if body is None:
        logger.error("discarding a malformed event message", extra={"message_id": record.message_id})
        return "malformed"
    if body.get("kind") == deliveries.MESSAGE_KIND:
        return _delivery_message(body, lambda_context)
    if body.get("kind") == digest.MESSAGE_KIND:
        return digest_mail.on_message(body)
    if body.get("kind") == events.EVENTS_KIND:
        handled = _stored_all(str(body["tenant_id"]), body["events"])
        _handle(handled, lambda_context)
        _derive(str(body["tenant_id"]), handled)
        return "consumed"
    if body.get("kind") == outbox_delivery.JOB_KIND:
        return outbox_delivery.on_message(body)
    if body.get("kind") == purge.JOB_KIND:
        return purge.on_message(body, _privacy_seconds(lambda_context))
    if body.get("kind") == erase.JOB_KIND:
        return erase.on_message(body, _privacy_seconds(lambda_context))
    tenant_id, event_id = str(body["tenant_id"]), str(body["event_id"])
    try:
        event = Event.get(tenant_id, event_id)
    except DoesNotExist:
        logger.warning("event not found; dropped", extra={"tenant_id": tenant_id, "event_id": event_id})
        return "missing"
    _handle([event], lambda_context)
    _derive(tenant_id, [event])
    return "consumed"


def _derive(tenant_id: str, handled: list[Event]) -> None:
    """New messages join their conversations and the search index (`threads/derived.py`; idempotent, so a
    redelivery of this record repeats nothing)."""
    created = [str(e.payload.get("message_id")) for e in handled
               if e.type == "message.created" and e.payload.get("message_id")]
    if created:
        derived.remember(tenant_id, created)


def _stored_all(tenant_id: str, items: list[dict]) -> list[Event]:
    """The events carried whole in a queue message, each stored if it is not yet (same stable id, same
    content). Which are stored already is read first (BatchGetItem, 100 keys a request: the worker usually
    stored them); the missing ones are written with BatchWriteItem — plain puts, as the worker's own
    (`sync/effects.settle_debts`): an event item is never updated and `created_event` builds the same bytes
    on every replay, so a put racing the worker's writes the same item."""
    found = [Event(tenant_id, str(item["event_id"]), type=str(item["type"]), payload=dict(item["payload"]),
                   created_at=str(item["created_at"]), expires_at=item.get("expires_at")) for item in items]
    stored = {e.event_id for e in Event.batch_get([(tenant_id, e.event_id) for e in found])} if found else set()
    with Event.batch_write() as batch:
        for event in found:
            if event.event_id not in stored:
                batch.save(event)
    return found


def _handle(handled: list[Event], lambda_context: Any) -> None:
    """Run what the events trigger, per step for the whole batch (each step reads what it needs once: the
    recipients per mailbox, the webhook per tenant, the settings per user); every step is idempotent per
    event, so a failure redelivers the record and a replay repeats nothing."""
    for event in handled:
        late_pairing.on_event(event)  # directory.changed only (no reads for other types); raises → redelivered
    user_notifications.on_events(handled)  # idempotent per (user, event); before the webhook POSTs (≤ 10 s each)
    deliveries.deliver_events(handled, lambda: _has_time_for_attempt(lambda_context))
    for event in handled:
        logger.info("event consumed", extra={"tenant_id": event.tenant_id, "event_id": event.event_id,
                                             "event_type": event.type})


def handle_batch(event: dict, context: Any) -> dict:
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(event=event, record_handler=consume, processor=processor, context=context)
