"""Shared by the provider fault suites: the sync queue as Lambda's SQS event source runs it, on moto.

`SyncQueue` gives the queue a dead-letter queue (`maxReceiveCount` 3, as infra/resources.yaml), then `run()`
receives batches and hands them to `worker.handle_batch` with ReportBatchItemFailures semantics: successes are
deleted, reported failures come back (their backoff is not waited for: visibility 0) and move to the DLQ after
`maxReceiveCount` receives. A job sent with `DelaySeconds` (a throttled mailbox) is held by the harness — the
test's clock — and released only by `advance()`, which also lets the mailbox's `not_before` pass; so a run
shows whether throttling was re-queued with a delay (`delays`) or failed toward the DLQ (`failures`, `dead`).
"""
from __future__ import annotations

import json
from typing import Callable

import boto3

from chalicelib import aws as aws_clients
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.notify import events
from chalicelib.providers.kinds import build_provider
from chalicelib.sync import worker
from tests.sync_helpers import FakeContext, counts_of, reload

MAX_RECEIVE_COUNT = 3


class SyncQueue:
    def __init__(self, aws: dict, monkeypatch, *, sleeps: list[float] | None = None,
                 tune: Callable | None = None):
        self.sqs = boto3.client("sqs")
        self.url = aws["sync_queue_url"]
        self.dlq = self.sqs.create_queue(QueueName="mbtest-sync-dlq")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.sqs.set_queue_attributes(QueueUrl=self.url, Attributes={"RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)})})
        self.sleeps = sleeps if sleeps is not None else []
        self.tune = tune
        self.held: list[dict] = []            # jobs sent with DelaySeconds, not yet due
        self.delays: list[int] = []           # every DelaySeconds the code asked for
        self.failures = 0                     # records reported in batchItemFailures
        self.outcomes: list[dict] = []
        client = aws_clients.sqs()
        send = client.send_message

        def send_message(**params):
            if params.get("QueueUrl") == self.url and params.get("DelaySeconds"):
                self.delays.append(int(params["DelaySeconds"]))
                self.held.append({k: v for k, v in params.items() if k != "DelaySeconds"})
                return {"MessageId": f"held-{len(self.held)}"}
            return send(**params)
        monkeypatch.setattr(client, "send_message", send_message)
        monkeypatch.setattr(aws_clients, "sqs", lambda: client)

    def provider(self, mailbox: Mailbox):
        """The worker's provider, with its sleeps recorded instead of slept (and `tune` applied)."""
        built = build_provider(mailbox)
        client = getattr(built, "client", None)
        if client is not None and hasattr(client, "sleep"):
            client.sleep = self.sleeps.append
            if hasattr(client, "pacer"):
                client.pacer.sleep = self.sleeps.append
        if self.tune is not None:
            self.tune(built)
        return built

    def send(self, mailbox: Mailbox, reason: str = "schedule") -> None:
        self.sqs.send_message(QueueUrl=self.url, MessageBody=json.dumps(
            {"tenant_id": mailbox.tenant_id, "mailbox_id": mailbox.mailbox_id, "reason": reason}))

    def _receive(self) -> dict:
        got = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, VisibilityTimeout=0,
                                       AttributeNames=["All"]).get("Messages", [])
        return {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                             "attributes": m["Attributes"], "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
                             "eventSource": "aws:sqs",
                             "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:mbtest-sync",
                             "awsRegion": "us-east-1"} for m in got]}

    def run(self, *, max_batches: int = 20) -> None:
        """Deliver what is visible until the queue is empty (held jobs stay held)."""
        for _ in range(max_batches):
            if not self.once():
                return
        raise AssertionError("the sync queue never emptied")

    def once(self) -> bool:
        """Deliver one batch of what is visible; False when nothing was."""
        event = self._receive()
        if not event["Records"]:
            return False
        result = worker.handle_batch(event, FakeContext(), provider_factory=self.provider)
        failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
        self.failures += len(failed)
        for record in event["Records"]:
            if record["messageId"] in failed:
                self.sqs.change_message_visibility(QueueUrl=self.url, ReceiptHandle=record["receiptHandle"],
                                                   VisibilityTimeout=0)
            else:
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=record["receiptHandle"])
        return True

    def advance(self) -> int:
        """The held jobs' delay has passed: their mailboxes' `not_before` too; they are sent. Returns how many."""
        held, self.held = self.held, []
        for params in held:
            job = json.loads(params["MessageBody"])
            mailbox = Mailbox.get(job["tenant_id"], job["mailbox_id"])
            if mailbox.not_before:
                mailbox.update(actions=[Mailbox.not_before.remove()])
            self.sqs.send_message(**params)
        return len(held)

    def run_until_quiet(self, *, rounds: int = 6) -> None:
        """run(), then let held jobs come due and run again, until nothing is left."""
        for _ in range(rounds):
            self.run()
            if not self.advance():
                return
        raise AssertionError("throttled jobs kept coming")

    def dead(self) -> list[dict]:
        got = self.sqs.receive_message(QueueUrl=self.dlq, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in got]


def assert_exactly(mailbox, expected: set[str]) -> None:
    """The mailbox holds exactly `expected` (by Message-ID), one `message.created` each, `imported` exact."""
    mailbox = reload(mailbox)
    stored = list(Message.by_mailbox.query(mailbox.mailbox_id))
    assert sorted(m.rfc_message_id for m in stored) == sorted(expected), "lost or duplicated messages"
    created = [e.payload["message_id"] for e in events.list_events(mailbox.tenant_id, "message.created", limit=500)
               if e.payload.get("mailbox_id") == mailbox.mailbox_id]
    assert sorted(created) == sorted(m.message_id for m in stored), "message.created lost or doubled"
    assert counts_of(mailbox)["imported"] == len(expected)


def assert_healthy(queue: SyncQueue, mailbox) -> None:
    """The mailbox is active and idle, and nothing reached the dead-letter queue."""
    box = reload(mailbox)
    assert (box.status, box.sync_stage) == ("active", "idle"), (box.status, box.sync_stage, box.last_error)
    assert queue.dead() == []
