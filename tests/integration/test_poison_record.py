"""Guards the sync queue's failure path as Lambda's SQS event source runs it (ReportBatchItemFailures):
a poison record — a job whose sync crashes every time (an unexpected exception, as a bug would raise) —
fails alone: the rest of its batch succeeds and is deleted, and after the queue's maxReceiveCount the
poison record moves to the dead-letter queue instead of being retried forever. (A body that is not a job at
all is logged and dropped at once: there is nothing to retry.)"""
from __future__ import annotations

import json

import boto3

from chalicelib.models.message import Message
from chalicelib.sync import worker
from tests.sync_helpers import FakeContext, FakeProvider, make_mailbox, reload

MAX_RECEIVE_COUNT = 3


def receive(url: str) -> dict:
    sqs = boto3.client("sqs")
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0,
                                   AttributeNames=["All"]).get("Messages", [])
    return {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                         "attributes": m["Attributes"], "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
                         "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:mbtest-sync",
                         "awsRegion": "us-east-1"} for m in messages]}


def test_a_poison_record_dead_letters_after_max_receive_count_while_its_batch_succeeds(aws):
    sqs = boto3.client("sqs")
    queue = aws["sync_queue_url"]
    dlq = sqs.create_queue(QueueName="mbtest-sync-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"RedrivePolicy": json.dumps(
        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)})})
    mailboxes = [make_mailbox("tnt_poison") for _ in range(3)]
    providers = {box.mailbox_id: FakeProvider({"inbox": 2, "sent": 0}) for box in mailboxes}
    poison = make_mailbox("tnt_poison")

    def factory(box):
        if box.mailbox_id == poison.mailbox_id:
            raise RuntimeError("a bug that crashes this mailbox's sync")
        return providers[box.mailbox_id]

    for box in [poison] + mailboxes:
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(
            {"tenant_id": box.tenant_id, "mailbox_id": box.mailbox_id, "reason": "schedule"}))

    failures_seen = 0
    for _ in range(MAX_RECEIVE_COUNT + 3):
        event = receive(queue)
        if not event["Records"]:
            break
        result = worker.handle_batch(event, FakeContext(), provider_factory=factory)
        failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
        failures_seen += len(failed)
        for record in event["Records"]:     # the event source deletes the successes; failures come back
            if record["messageId"] not in failed:
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=record["receiptHandle"])
            else:                             # once their backoff has passed (the test does not wait for it)
                sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=record["receiptHandle"],
                                              VisibilityTimeout=0)
        assert {json.loads(r["body"])["mailbox_id"] for r in event["Records"] if r["messageId"] in failed} <= {
            poison.mailbox_id}, "a good job failed with the poison one"

    assert failures_seen == MAX_RECEIVE_COUNT
    dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])
    assert [json.loads(m["Body"])["mailbox_id"] for m in dead] == [poison.mailbox_id]
    assert reload(poison).last_error                          # the crash is visible on the mailbox
    for box in mailboxes:
        assert len(list(Message.by_mailbox.query(box.mailbox_id))) == 2
