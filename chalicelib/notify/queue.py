"""Delayed messages on the events queue (retries, digests): SQS `DelaySeconds` is at most 900 s (SQS API
reference, SendMessage), so callers re-send a message that arrives early with the remaining delay."""
from __future__ import annotations

import json
from typing import Any

from chalicelib import aws
from chalicelib.config import get_settings

MAX_DELAY_SECONDS = 900


def send(body: dict[str, Any], delay: float) -> None:
    """Raises on SQS failure, so the caller's own record is redelivered and nothing is lost."""
    queue_url = get_settings().events_queue_url
    if not queue_url:
        return
    aws.sqs().send_message(QueueUrl=queue_url, MessageBody=json.dumps(body),
                           DelaySeconds=max(0, min(MAX_DELAY_SECONDS, int(delay + 0.999))))
