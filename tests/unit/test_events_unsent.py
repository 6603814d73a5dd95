"""Guards against an event lost when SQS refused its queue message: `emit` marks it, the renewer re-sends it."""
from __future__ import annotations

import json

import boto3
from botocore.exceptions import ClientError

from chalicelib import aws as aws_clients
from chalicelib.models.event import Event
from chalicelib.notify import events
from chalicelib.sync import renewer


def queued(queue_url: str) -> list[dict]:
    sqs = boto3.client("sqs")
    bodies = []
    while True:
        answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        if not answer.get("Messages"):
            return bodies
        for message in answer["Messages"]:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def test_an_event_sqs_refused_is_re_sent_by_the_renewer_once(aws, monkeypatch):
    client = aws_clients.sqs()
    real_send = client.send_message

    def refused(**kwargs):
        raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "SendMessage")

    monkeypatch.setattr(client, "send_message", refused)
    emitted = events.emit("ten_1", "mailbox.status_changed", {"mailbox_id": "mbx_1", "status": "auth_error"})
    assert queued(aws["events_queue_url"]) == []                        # the send failed ...
    assert Event.get("ten_1", emitted.event_id).unsent_shard == "unsent"   # ... and the event says so

    assert renewer.run()["events_resent"] == 0                          # SQS still refuses: the mark stays
    assert Event.get("ten_1", emitted.event_id).unsent_shard == "unsent"

    monkeypatch.setattr(client, "send_message", real_send)
    assert renewer.run()["events_resent"] == 1
    assert queued(aws["events_queue_url"]) == [{"tenant_id": "ten_1", "event_id": emitted.event_id,
                                                "type": "mailbox.status_changed"}]   # as `emit` sends it
    assert Event.get("ten_1", emitted.event_id).unsent_shard is None
    assert renewer.run()["events_resent"] == 0                          # re-sent once
    assert queued(aws["events_queue_url"]) == []


def test_an_event_sent_at_once_is_not_marked(aws):
    emitted = events.emit("ten_1", "mailbox.status_changed", {"mailbox_id": "mbx_1", "status": "active"})
    assert len(queued(aws["events_queue_url"])) == 1
    assert Event.get("ten_1", emitted.event_id).unsent_shard is None
    assert list(Event.by_unsent.query("unsent")) == []
