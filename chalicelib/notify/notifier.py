"""Events queue consumer: loads each stored event (the source of truth, see `events.py`), runs the internal
jobs an event triggers (late pairing for `directory.changed`), and records it as consumed.

Webhook delivery (signed, retried, DLQ) and user notifications are a later issue; this consumer keeps the
queue drained and proves the event round trip. Each record is isolated (Powertools BatchProcessor): a record
whose event cannot be loaded because DynamoDB failed is reported in `batchItemFailures` and redelivered; a
record naming an event that does not exist (expired, or a malformed body) is logged and dropped.
"""
from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from pynamodb.exceptions import DoesNotExist

from chalicelib.logs import logger
from chalicelib.models.event import Event
from chalicelib.pairing import late as late_pairing


def consume(record) -> str:
    try:
        body = json.loads(record.body)
        tenant_id, event_id = str(body["tenant_id"]), str(body["event_id"])
    except (ValueError, KeyError, TypeError):
        logger.error("discarding a malformed event message", extra={"message_id": record.message_id})
        return "malformed"
    try:
        event = Event.get(tenant_id, event_id)
    except DoesNotExist:
        logger.warning("event not found; dropped", extra={"tenant_id": tenant_id, "event_id": event_id})
        return "missing"
    late_pairing.on_event(event)  # idempotent and bounded; raises on store errors → redelivered
    logger.info("event consumed", extra={"tenant_id": tenant_id, "event_id": event_id, "event_type": event.type})
    return "consumed"


def handle_batch(event: dict, context: Any) -> dict:
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(event=event, record_handler=consume, processor=processor, context=context)
