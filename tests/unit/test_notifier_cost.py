"""Guards the notifier's cost per events message: one queue message of 100 `message.created` events (100 distinct
conversations in one mailbox with an owner, 2 shares and a webhook) must cost a bounded number of DynamoDB calls
— reads per queue message, not per event — and every effect must still happen exactly once."""
from __future__ import annotations

import collections
import datetime as dt
import json

import pytest

from chalicelib.models.conversation import ThreadEntry
from chalicelib.models.event import Event
from chalicelib.models.mailbox import MailboxShare
from chalicelib.models.message import Message
from chalicelib.models.notification import Notification
from chalicelib.models.webhook import WebhookDelivery
from chalicelib.notify import deliveries, events, notifier
from chalicelib.notify import queue as notify_queue
from chalicelib.providers.base import FetchedMessage, MessageRef
from chalicelib.sync import store
from chalicelib.sync.effects import created_event
from chalicelib.timeutil import now_iso
from tests.mailfactory import make_message
from tests.sync_helpers import FakeContext, dynamodb_calls
from tests.unit.test_message_store import make_mailbox
from tests.webhook_helpers import Receiver, SimClock, SimQueue

MESSAGES = 100
DAY = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.timezone.utc)
WRITES = {"PutItem", "UpdateItem", "DeleteItem"}


def calls_and_items(operation: str, params: dict) -> list[str]:
    """Each call as `call:<operation>`, and each item it writes as `item:<table>` (a batch or transaction
    counts all its items)."""
    names = [f"call:{operation}"]
    if operation in WRITES:
        names.append(f"item:{params['TableName']}")
    elif operation == "BatchWriteItem":
        names += [f"item:{table}" for table, requests in params["RequestItems"].items() for _ in requests]
    elif operation == "TransactWriteItems":
        names += [f"item:{next(iter(action.values()))['TableName']}" for action in params["TransactItems"]
                  if "ConditionCheck" not in action]
    return names


class Record:
    def __init__(self, body: dict):
        self.body = json.dumps(body)
        self.message_id = "sqs-cost-1"


@pytest.fixture
def page(api, tenant, aws, monkeypatch):
    clock = SimClock()
    monkeypatch.setattr(deliveries, "clock", clock)
    monkeypatch.setattr(notify_queue, "send", SimQueue(clock).send)
    receiver = Receiver(clock).start()
    assert api("PUT", "/v1/webhook", key=tenant["key"], json_body={"url": receiver.url}).status == 200
    mailbox = make_mailbox(tenant["id"], "mbx_cost", email="alice@acme-crm.example", owner_user_id="u-owner")
    for user, access in (("u-read", "read"), ("u-rw", "read_write")):
        MailboxShare(mailbox.mailbox_id, user, tenant_id=tenant["id"], user_key=f"{tenant['id']}#{user}",
                     access=access, created_at=now_iso()).save()
    messages = []
    for n in range(MESSAGES):
        raw = make_message(subject=f"Order {n} pallets", from_=f"Buyer {n} <buyer{n}@customer{n}.example>",
                           to="alice@acme-crm.example", date=DAY + dt.timedelta(minutes=n),
                           message_id=f"<order-{n}@customer{n}.example>", body=f"Please ship order {n}.\n")
        messages.append(store.save_fetched(mailbox, FetchedMessage(MessageRef("inbox", f"1:{n + 1}"), raw)).message)
    created = [created_event(m) for m in messages]
    with Event.batch_write() as batch:       # the worker stores them with its page debt (usually first)
        for event in created:
            batch.save(event)
    body = {"kind": events.EVENTS_KIND, "tenant_id": tenant["id"], "events": [events.event_body(e) for e in created]}
    yield {"body": body, "messages": messages, "receiver": receiver, "tenant_id": tenant["id"]}
    receiver.stop()


def test_one_events_message_of_100_new_messages_costs_reads_per_queue_message_not_per_event(page):
    """Guards against the notifier reading recipients, webhook and settings (and counting conversations) per
    event: the figures printed here are the ones docs/benchmarks.md records."""
    with dynamodb_calls(calls_and_items) as counted:
        assert notifier.consume(Record(page["body"]), FakeContext()) == "consumed"
    calls = {k[5:]: v for k, v in counted.items() if k.startswith("call:")}
    items = {k[5 + len("mbtest-"):]: v for k, v in counted.items() if k.startswith("item:")}
    total, written = sum(calls.values()), sum(items.values())
    print(f"\nnotifier, one events message of {MESSAGES}: {total} DynamoDB calls {dict(sorted(calls.items()))}, "
          f"{written} items written {dict(sorted(items.items()))}")
    # Per queue message, not per event (before: 1,680 calls, 2,790 items — 7 GetItem, 1 Query, 4 PutItem,
    # 3 UpdateItem and 1 transaction per event). What is left per event is the webhook delivery's put (its
    # first attempt's claim) and its outcome's conditional update; the rest is batched.
    assert calls.get("GetItem", 0) + calls.get("Query", 0) <= 4, calls
    assert calls.get("TransactWriteItems", 0) <= 3, calls
    assert calls.get("PutItem", 0) + calls.get("UpdateItem", 0) <= 2 * MESSAGES, calls
    assert calls.get("BatchGetItem", 0) <= 15 and calls.get("BatchWriteItem", 0) <= 100, calls
    assert total <= 320 and written <= 2_650, (total, written)
    tenant_id = page["tenant_id"]
    # every effect happened once
    assert len(page["receiver"].hits) == MESSAGES
    for user in ("u-owner", "u-read", "u-rw"):
        assert len(list(Notification.query(f"{tenant_id}#{user}"))) == MESSAGES
    assert len(list(WebhookDelivery.query(tenant_id))) == MESSAGES
    assert all(d.status == "delivered" for d in WebhookDelivery.query(tenant_id))
    stored = [Message.get(m.message_id) for m in page["messages"]]
    assert all(m.thread_counted for m in stored) and len({m.conversation_id for m in stored}) == MESSAGES
    entries = [ThreadEntry.get("mbx_cost", m.conversation_id) for m in stored]
    assert all(e.message_count == 1 and e.latest_message_id == m.message_id for e, m in zip(entries, stored))

    # a redelivery of the same queue message changes nothing and delivers nothing again
    assert notifier.consume(Record(page["body"]), FakeContext()) == "consumed"
    assert len(page["receiver"].hits) == MESSAGES
    assert all(ThreadEntry.get("mbx_cost", m.conversation_id).message_count == 1 for m in stored)
    assert collections.Counter(n.event_id for n in Notification.query(f"{tenant_id}#u-read")).most_common(1)[0][1] == 1
