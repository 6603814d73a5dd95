"""Lambda's event plumbing, locally: SQS event source mappings and EventBridge schedules.

The local stack calls the very handler objects Lambda runs (`app.worker`, `app.notifier`, `app.scheduler`,
...; Chalice event handlers are callable as `(event, context)`), with events shaped as Lambda delivers them:

- SQS (Lambda Developer Guide, "Using Lambda with Amazon SQS"): a long-poll receives up to `batch_size`
  messages; they are passed as `{"Records": [...]}`. With ReportBatchItemFailures (what the cloud template
  enables), records listed in the response's `batchItemFailures` are left on the queue and all others are
  deleted; a handler exception, or an unparsable response, deletes nothing (the whole batch is retried after
  the visibility timeout, and moves to the DLQ after maxReceiveCount). Visibility is never touched here:
  handlers may set their own backoff with ChangeMessageVisibility.
- Schedules: `{"detail-type": "Scheduled Event", "source": "aws.events", ...}` at each firing time.
"""
from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

from infra.local_schedule import Schedule

ACCOUNT_ID = "123456789012"
Handler = Callable[[dict, Any], Any]


class LambdaContext:
    """The parts of the Lambda context object handlers and Powertools read."""

    def __init__(self, function_name: str, timeout_seconds: int, memory_mb: int = 128,
                 region: str = "us-east-1") -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{function_name}"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _lambda_message_attributes(attributes: dict) -> dict:
    converted = {}
    for name, value in (attributes or {}).items():
        converted[name] = {"stringValue": value.get("StringValue"), "binaryValue": value.get("BinaryValue"),
                           "stringListValues": [], "binaryListValues": [], "dataType": value.get("DataType")}
    return converted


def sqs_event(messages: list[dict], queue_arn: str, region: str) -> dict:
    return {"Records": [{
        "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
        "attributes": m.get("Attributes", {}), "messageAttributes": _lambda_message_attributes(
            m.get("MessageAttributes")), "md5OfBody": m.get("MD5OfBody", ""), "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn, "awsRegion": region} for m in messages]}


def failed_message_ids(response: Any, records: list[dict]) -> set[str]:
    """Message ids to leave on the queue, per the ReportBatchItemFailures contract."""
    if response is None:
        return set()
    if not isinstance(response, dict):
        return {r["messageId"] for r in records}
    failures = response.get("batchItemFailures") or []
    ids = {f.get("itemIdentifier") for f in failures if isinstance(f, dict)}
    known = {r["messageId"] for r in records}
    if not ids <= known:  # an unknown or empty identifier fails the whole batch, as Lambda does
        return known
    return ids


class SqsPoller:
    """One event source mapping: queue -> handler, polled until `stop` is set."""

    def __init__(self, sqs, queue_url: str, queue_arn: str, handler: Handler, function_name: str,
                 timeout_seconds: int, batch_size: int = 10, wait_seconds: int = 1, region: str = "us-east-1",
                 log: Callable[[str], None] = print, memory_mb: int = 128) -> None:
        self.sqs, self.queue_url, self.queue_arn = sqs, queue_url, queue_arn
        self.memory_mb = memory_mb
        self.handler, self.function_name, self.timeout_seconds = handler, function_name, timeout_seconds
        self.batch_size, self.wait_seconds, self.region, self.log = batch_size, wait_seconds, region, log

    def poll_once(self) -> int:
        """Receive one batch and invoke the handler; returns the number of messages received."""
        received = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=self.batch_size, WaitTimeSeconds=self.wait_seconds,
            AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages", [])
        if not received:
            return 0
        event = sqs_event(received, self.queue_arn, self.region)
        try:
            response = self.handler(event, LambdaContext(self.function_name, self.timeout_seconds,
                                                         memory_mb=self.memory_mb, region=self.region))
            failed = failed_message_ids(response, event["Records"])
        except Exception as exc:  # noqa: BLE001 - Lambda semantics: the whole batch is retried
            self.log(f"[{self.function_name}] handler raised {type(exc).__name__}: {exc}; batch left on queue")
            return len(received)
        done = [m for m in received if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start:start + 10])])
        return len(received)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # noqa: BLE001 - emulator hiccup; keep polling
                self.log(f"[{self.function_name}] poll failed: {type(exc).__name__}: {exc}")
                stop.wait(1)


def scheduled_event(rule_name: str, region: str, moment: datetime) -> dict:
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": ACCOUNT_ID, "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": region,
            "resources": [f"arn:aws:events:{region}:{ACCOUNT_ID}:rule/{rule_name}"], "detail": {}}


class ScheduleRunner:
    """Fires a handler at its schedule's times (and, optionally, every `extra_interval` seconds)."""

    def __init__(self, schedule: Schedule, handler: Handler, function_name: str, timeout_seconds: int,
                 extra_interval: float | None = None, region: str = "us-east-1",
                 log: Callable[[str], None] = print) -> None:
        self.schedule, self.handler, self.function_name = schedule, handler, function_name
        self.timeout_seconds, self.extra_interval, self.region, self.log = (
            timeout_seconds, extra_interval, region, log)

    def fire(self, moment: datetime) -> None:
        try:
            self.handler(scheduled_event(f"{self.function_name}-event", self.region, moment),
                         LambdaContext(self.function_name, self.timeout_seconds, region=self.region))
        except Exception as exc:  # noqa: BLE001 - like a failed Lambda invocation: logged, next tick runs
            self.log(f"[{self.function_name}] scheduled run raised {type(exc).__name__}: {exc}")

    def run(self, stop: threading.Event) -> None:
        now = datetime.now(timezone.utc)
        next_scheduled = self.schedule.next_after(now)
        next_extra = time.monotonic() + self.extra_interval if self.extra_interval else None
        while not stop.is_set():
            now = datetime.now(timezone.utc)
            if now >= next_scheduled:
                self.fire(now)
                next_scheduled = self.schedule.next_after(now)
            elif next_extra is not None and time.monotonic() >= next_extra:
                self.fire(now)
                next_extra = time.monotonic() + self.extra_interval
            stop.wait(1)
