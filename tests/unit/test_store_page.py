"""Guards the batched page store and page effects against duplicates, lost or doubled counts and events, pages
that hold more raw mail than their budget, and a page's calls growing with its messages (moto)."""
from __future__ import annotations

import collections
import json

import boto3
import botocore.client
import pytest

from chalicelib.config import reset_settings
from chalicelib.models.event import Event
from chalicelib.models.message import Message
from chalicelib.notify import events, notifier
from chalicelib.pairing import context as pairing_context
from chalicelib.providers.base import FetchedMessage, MessageRef
from chalicelib.sync import cursors, effects, engine, store, store_page
from chalicelib.sync.engine import SyncOptions
from tests.sync_helpers import (FakeProvider, counts_of, deliver_events, make_mailbox, raw_message,
                                receive_event, reload)

FAR = float("inf")


def page(start: int, stop: int, folder: str = "inbox") -> list[FetchedMessage]:
    return [FetchedMessage(MessageRef(folder, f"1:{n}"), raw_message(n, folder)) for n in range(start, stop)]


def stored(mailbox) -> list[Message]:
    return list(Message.by_mailbox.query(mailbox.mailbox_id))


def created_events(mailbox) -> list[Event]:
    return [e for e in Event.query(mailbox.tenant_id, filter_condition=Event.type == "message.created")
            if e.payload["mailbox_id"] == mailbox.mailbox_id]


class Killed(BaseException):
    """A worker that died (nothing may catch it)."""


def test_a_page_with_stored_and_new_messages_creates_and_counts_only_the_new(aws):
    """Guards against a replayed page storing or counting its known messages again."""
    mailbox = make_mailbox()
    first = store_page.save_page(mailbox, page(1, 4))
    assert [o.created for o in first] == [True] * 3
    again = store_page.save_page(reload(mailbox), page(1, 6))
    assert [o.created for o in again] == [False, False, False, True, True]
    assert not any(o.message.owed for o in again)            # what they owe is one page debt, not per message
    debts = [effects.read_debt(key) for key in reload(mailbox).owed_pages]
    assert sorted(ids for debt in debts for ids in debt.message_ids) == sorted(
        o.message.message_id for o in first + again if o.created)
    assert {o.debt for o in again if o.created} == {debt.key for debt in debts if len(debt.message_ids) == 2}
    assert len(stored(mailbox)) == 5
    assert counts_of(reload(mailbox))["imported"] == 5


def test_the_same_bytes_twice_in_one_page_are_one_message(aws):
    """Guards against one page inserting (and counting) a message twice when a folder holds it twice."""
    mailbox = make_mailbox()
    raw = raw_message(1)
    outcomes = store_page.save_page(mailbox, [FetchedMessage(MessageRef("inbox", "1:1"), raw),
                                              FetchedMessage(MessageRef("inbox", "1:2"), raw)])
    assert [o.created for o in outcomes] == [True, False]
    assert len(stored(mailbox)) == 1 and counts_of(reload(mailbox))["imported"] == 1
    assert stored(mailbox)[0].provider_id == "1:2"


def test_a_page_over_its_byte_budget_is_stored_in_parts(aws, monkeypatch):
    """Guards against a page holding more raw mail than `page_raw_bytes` at once."""
    size = len(raw_message(10))
    monkeypatch.setenv("MAILBRIDGE_PAGE_RAW_BYTES", str(size * 3 + 10))
    reset_settings()
    held = []
    real = store_page.save_page

    def spy(mailbox, fetched, **kw):
        held.append(sum(len(f.raw or b"") for f in fetched))
        return real(mailbox, fetched, **kw)
    monkeypatch.setattr(store_page, "save_page", spy)
    mailbox = make_mailbox()
    result = engine.sync_mailbox(mailbox, FakeProvider({"inbox": 10}), FAR, options=SyncOptions(page_size=10),
                                 after_store=effects.announce_only)
    assert len(held) >= 4 and max(held) <= size * 3 + 10 + 20      # digits of the uid vary a few bytes
    assert result.counts.imported == 10 and len(stored(mailbox)) == 10
    deliver_events(aws["events_queue_url"])
    assert counts_of(reload(mailbox))["imported"] == 10 and len(created_events(mailbox)) == 10


@pytest.mark.parametrize("step", ["insert", "enqueue", "settle", "clear"])
def test_a_crash_mid_page_replays_without_duplicates_and_with_exact_counts(aws, monkeypatch, step):
    """Guards against a worker dying inside a page leaving duplicates, lost or doubled events, or wrong counts."""
    monkeypatch.setattr(store_page, "TRANSACT_PUTS", 3)            # a page of 8 is three insert transactions
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 8})
    calls = collections.Counter()
    targets = {"insert": (store_page, "insert_items"), "enqueue": (effects, "enqueue_events"),
               "settle": (effects, "settle_debts"),
               "clear": (cursors, "save")}     # the events stored, the debt not yet removed (it goes with the cursor)
    module, name = targets[step]
    original = getattr(module, name)

    def dies_second_time(*args, **kwargs):
        calls[step] += 1
        if calls[step] == 2 or (step != "insert" and calls[step] == 1):
            raise Killed(step)
        return original(*args, **kwargs)
    with monkeypatch.context() as patch:
        patch.setattr(module, name, dies_second_time)
        with pytest.raises(Killed):
            engine.sync_mailbox(mailbox, provider, FAR, options=SyncOptions(page_size=8),
                                after_store=effects.announce_only)
    engine.sync_mailbox(reload(mailbox), provider, FAR, options=SyncOptions(page_size=8),
                        after_store=effects.announce_only)
    messages = stored(mailbox)
    assert len(messages) == 8 and not any(m.owed for m in messages) and not reload(mailbox).owed_pages
    assert counts_of(reload(mailbox))["imported"] == 8
    deliver_events(aws["events_queue_url"])
    created = created_events(mailbox)
    assert len(created) == 8 and len({e.event_id for e in created}) == 8


def test_the_notifier_stores_events_it_receives_before_the_worker_did(aws):
    """Guards against a batched announcement being dropped when the notifier reads it before the worker
    stored its events (the worker enqueues first, then stores)."""
    mailbox = make_mailbox()
    message = store_page.save_page(mailbox, page(1, 2))[0].message
    event = effects.created_event(message)
    assert events.enqueue_events(mailbox.tenant_id, [event]) == 1
    received = receive_event(aws["events_queue_url"], 1)
    assert json.loads(received["Records"][0]["body"])["kind"] == "events"
    assert notifier.handle_batch(received, None) == {"batchItemFailures": []}
    assert [e.event_id for e in created_events(mailbox)] == [event.event_id]


def test_a_page_costs_a_few_calls_not_a_few_per_message(aws):
    """Guards the per-message call budget (≤ 0.1 DynamoDB and SQS calls per message) against regressions."""
    mailbox = make_mailbox(pairing_mode="auto")
    calls: collections.Counter = collections.Counter()
    original = botocore.client.BaseClient._make_api_call

    def counting(self, operation, params):
        calls[self.meta.service_model.service_name] += 1
        return original(self, operation, params)
    fetched = page(1, 121)
    pairing_context.invalidate()
    pairing_context.tenant_context(mailbox.tenant_id)           # a warm worker has its tenant's context
    botocore.client.BaseClient._make_api_call = counting
    try:
        outcomes = store_page.save_page(mailbox, fetched)
        effects.complete_page([o.message for o in outcomes], mailbox, debts=sorted({o.debt for o in outcomes}))
    finally:
        botocore.client.BaseClient._make_api_call = original
    assert len(stored(mailbox)) == 120 and not any(m.owed for m in stored(mailbox))
    assert not reload(mailbox).owed_pages
    assert calls["s3"] == 120
    assert calls["dynamodb"] <= 12, calls          # 0.1 per message
    assert calls["sqs"] <= 2, calls
    assert boto3.client("sqs").get_queue_attributes(
        QueueUrl=aws["events_queue_url"], AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]["ApproximateNumberOfMessages"] == "1"


def _hostile_recipients() -> bytes:
    recipients = ", ".join(f'"{"N" * 190}" <{"u" * 300}{i}@example.com>' for i in range(200))
    return (f"From: a@example.com\r\nTo: {recipients}\r\nCc: {recipients}\r\nBcc: {recipients}\r\n"
            f"Reply-To: {recipients}\r\nSubject: {'s' * 5000}\r\n\r\nbody").encode()


def _hostile_attachments() -> bytes:
    parts = b"".join(b"--x\r\nContent-Type: application/" + b"y" * 2000 + b"\r\nContent-Disposition: attachment"
                     + b"z" * 2000 + b"; filename=f%d.bin\r\nContent-ID: <" % i + b"c" * 600 + b">\r\n\r\ndata\r\n"
                     for i in range(200))
    return b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n" + parts + b"--x--\r\n"


@pytest.mark.parametrize("raw", [raw_message(1), _hostile_recipients(), _hostile_attachments()])
def test_the_size_bound_that_splits_transactions_is_never_below_the_item(aws, raw):
    """Guards the 4 MB transaction limit: chunks are cut on `_size`, an estimate that must never be smaller
    than the item as serialized (the DynamoDB JSON of the request is larger than the stored item)."""
    prepared = store.prepare(make_mailbox(), FetchedMessage(MessageRef("inbox", "1:1"), raw))
    assert store_page._size(prepared.item) >= len(json.dumps(prepared.item.serialize()))


def test_a_page_of_several_parse_groups_puts_everything_before_it_inserts_and_dedupes_across_groups(aws, monkeypatch):
    """Guards the grouped page (`store_page.PARSE_GROUP`: a group's raw PUTs run while the next group is parsed):
    a message repeated in a later group is still one message, one already stored in a later group is not stored
    again, every PUT has finished before the first insert, and a failed PUT fails the page with nothing
    inserted."""
    monkeypatch.setattr(store_page, "PARSE_GROUP", 4)
    mailbox = make_mailbox()
    store_page.save_page(mailbox, page(9, 10))                      # stored before: lands in the third group
    events: list[str] = []
    put, insert = store_page.put_raw, store_page.insert_items
    monkeypatch.setattr(store_page, "put_raw", lambda item, tagging=None: (events.append("put"),
                                                                           put(item, tagging))[1])
    monkeypatch.setattr(store_page, "insert_items", lambda *a, **k: (events.append("insert"), insert(*a, **k))[1])
    fetched = page(1, 11) + [FetchedMessage(MessageRef("inbox", "1:99"), raw_message(2, "inbox"))]
    outcomes = store_page.save_page(reload(mailbox), fetched)
    assert [o.created for o in outcomes] == [True] * 8 + [False, True, False]
    assert outcomes[-1].message.message_id == outcomes[1].message.message_id
    assert events.index("insert") > max(i for i, e in enumerate(events) if e == "put")
    assert events.count("put") == 9                                  # the stored one and the repeat: no PUT
    assert len(stored(mailbox)) == 10 and counts_of(reload(mailbox))["imported"] == 10

    def failing(item, tagging=None):
        if item.item.subject.endswith("21"):
            raise OSError("S3 is down")
        return put(item, tagging)
    monkeypatch.setattr(store_page, "put_raw", failing)
    with pytest.raises(OSError, match="S3 is down"):
        store_page.save_page(reload(mailbox), page(20, 30))
    assert len(stored(mailbox)) == 10 and counts_of(reload(mailbox))["imported"] == 10
