"""Guards the worker's and the notifier's transactions against DynamoDB transaction conflicts (injected by
`tests/dynamo_conflicts.py`): a conflict used to be read as "a condition failed" — a removal not marked, a
return not restored, a count or a read state dropped, a page debt "of a deleted mailbox", a cursor save read
as a lost lease — or to exhaust a retry loop meant for changed state. Each is now sent again
(`models.conflicts.retry_conflicts`) and lands exactly once."""
from __future__ import annotations

import datetime as dt
import time

import pytest
from pynamodb.exceptions import TransactWriteError

from chalicelib.models import conflicts
from chalicelib.models.conversation import ThreadEntry
from chalicelib.models.event import Event
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.models.sync_cursor import SyncCursor
from chalicelib.notify.events import new_event
from chalicelib.providers.base import FetchedMessage, MessageRef
from chalicelib.sync import cursors, effects, lease, store
from chalicelib.threads import assign, derived, unread
from tests.mailfactory import make_message
from tests.unit.test_message_store import make_mailbox

DAY = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.timezone.utc)
_uid = iter(range(1, 10_000))


@pytest.fixture
def box(aws):
    return make_mailbox("ten_cf", "mbx_cf", email="alice@acme-crm.example")


def save(mailbox, seen: bool | None = None, days: int = 0, **kwargs) -> Message:
    raw = make_message(date=DAY + dt.timedelta(days=days), **kwargs)
    return store.save_fetched(mailbox, FetchedMessage(MessageRef("inbox", f"1:{next(_uid)}", seen=seen), raw)).message


def fresh(message: Message) -> Message:
    return Message.get(message.message_id, consistent_read=True)


def mailbox_of(box: Mailbox) -> Mailbox:
    return Mailbox.get(box.tenant_id, box.mailbox_id, consistent_read=True)


def entry(message: Message) -> ThreadEntry:
    return ThreadEntry.get(message.mailbox_id, message.conversation_id, consistent_read=True)


def test_a_removal_at_the_source_is_marked_and_counted_once_through_a_conflict(box, conflicts_ahead):
    message = save(box, subject="Gone")
    conflicts_ahead("TransactWriteItems", 2, touching="mailboxes")

    assert store.mark_removed(box, "inbox", [message.provider_id]) == 1

    assert fresh(message).removed_at_source and int(mailbox_of(box).removed_count) == 1


def test_a_message_back_at_the_source_is_restored_once_through_a_conflict(box, conflicts_ahead):
    message = save(box, subject="Back")
    store.mark_removed(box, "inbox", [message.provider_id])
    conflicts_ahead("TransactWriteItems", 2, touching="mailboxes")

    assert store.restore_removed(box, [message.message_id]) == 1

    assert fresh(message).removed_at_source is None and int(mailbox_of(box).removed_count) == 0


def test_a_count_debt_is_paid_exactly_once_through_a_conflict(box, conflicts_ahead):
    """The conflict was logged as "count already settled": the item kept owing, the live count missed it."""
    message = save(box, subject="Counted")
    before = int(mailbox_of(box).imported_count or 0)
    message.owed = ["count"]
    Message(message.message_id).update(actions=[Message.owed.set(["count"])])
    conflicts_ahead("TransactWriteItems", 2, touching="mailboxes")

    assert effects.complete(message)

    assert int(mailbox_of(box).imported_count or 0) == before + 1 and fresh(message).owed is None


def test_a_large_page_debt_is_cleared_through_a_conflict(box, conflicts_ahead):
    """The conflict was logged as "debts of a deleted mailbox": the debt stayed open and was paid twice."""
    key = effects.page_debt(["msg_x"], "2026-12-02T10:00:00Z")
    Mailbox(box.tenant_id, box.mailbox_id).update(actions=[Mailbox.owed_pages.add({key})])
    events = [new_event(box.tenant_id, "message.created", {"n": n}, f"evt_cf_{n}")
              for n in range(effects.BATCH_WRITE_ITEMS + 1)]
    conflicts_ahead("TransactWriteItems", 2, touching="mailboxes")

    effects.settle_debts(mailbox_of(box), [key], events)

    assert mailbox_of(box).owed_pages is None
    assert sum(1 for _ in Event.query(box.tenant_id)) == len(events)


def test_a_cursor_is_saved_through_a_conflict_and_a_conflict_is_never_a_lost_lease(box, conflicts_ahead):
    held, _ = lease.acquire(box.tenant_id, box.mailbox_id)
    conflicts_ahead("TransactWriteItems", 2, touching="sync_cursors")

    cursors.save(mailbox_of(box), held, cursors.FolderState("inbox", cursor="42"))

    assert SyncCursor.get(cursors.mailbox_key(box), "inbox").cursor == "42"
    conflicts_ahead("TransactWriteItems", len(conflicts.CONFLICT_DELAYS) + 1, touching="sync_cursors")
    with pytest.raises(TransactWriteError):      # a job failure (redelivered), not LeaseLost (dropped)
        cursors.save(mailbox_of(box), held, cursors.FolderState("inbox", cursor="43"))
    assert SyncCursor.get(cursors.mailbox_key(box), "inbox").cursor == "42"


def test_a_read_state_change_lands_once_through_conflicts(box, conflicts_ahead):
    """Conflicts used to spend the batch and every one-message attempt (`unread.ATTEMPTS`): "left for the next
    sync", which never comes."""
    message = save(box, seen=False, subject="Unread", from_="jan@customer.example")
    derived.remember(box.tenant_id, [message.message_id])
    assert int(entry(fresh(message)).unread_count) == 1
    conflicts_ahead("TransactWriteItems", 1 + unread.ATTEMPTS, touching="messages")   # the batch, then each attempt

    assert unread.apply(box.tenant_id, {message.message_id: True}) == 1

    assert fresh(message).unread is False and int(entry(fresh(message)).unread_count) == 0


def test_the_notifier_counts_a_message_once_through_conflicts(box, conflicts_ahead):
    """A conflict fell back batch → group → one message (twice), then gave up: counted nowhere, acknowledged."""
    message = save(box, subject="Thread", from_="jan@customer.example")
    conflicts_ahead("TransactWriteItems", 4, touching="thread_entries")

    assert assign.assign(derived.load(box.tenant_id, [message.message_id])) == 1

    counted = fresh(message)
    assert counted.thread_counted and int(entry(counted).message_count) == 1


def test_a_message_leaves_its_conversation_once_through_conflicts(box, conflicts_ahead):
    first = save(box, subject="Pair", from_="jan@customer.example", message_id="<a@customer.example>")
    second = save(box, days=1, subject="Re: Pair", from_="jan@customer.example",
                  message_id="<b@customer.example>", in_reply_to="<a@customer.example>")
    derived.remember(box.tenant_id, [first.message_id, second.message_id])
    assert int(entry(fresh(first)).message_count) == 2
    conflicts_ahead("TransactWriteItems", 3, touching="thread_entries")

    assert assign.forget(fresh(first)) is True

    assert not fresh(first).thread_counted and int(entry(fresh(second)).message_count) == 1


def test_a_single_write_on_the_mailbox_goes_through_a_conflict(box, conflicts_ahead):
    """A push arriving mid-sync flags a follow-up on the mailbox item the worker's transactions hold."""
    lease.acquire(box.tenant_id, box.mailbox_id, now=time.time())
    conflicts_ahead("UpdateItem", 2, touching="mailboxes")

    assert lease.flag_follow_up(box.tenant_id, box.mailbox_id) is True

    assert mailbox_of(box).sync_requested is True


def test_a_lease_is_released_through_a_conflict_with_its_follow_up(box, conflicts_ahead):
    held, _ = lease.acquire(box.tenant_id, box.mailbox_id)
    lease.flag_follow_up(box.tenant_id, box.mailbox_id)
    conflicts_ahead("UpdateItem", 2, touching="mailboxes")

    assert lease.release(held) is True          # the follow-up is enqueued exactly once

    assert mailbox_of(box).lease_owner is None
