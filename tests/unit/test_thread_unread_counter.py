"""Guards the exact unread counter of a conversation entry (`threads/unread.py`) against drift: read-state
changes before and after a message is counted, a change racing the notifier's count, a removal at the source
of an unread message, repeated changes, and messages of unknown read state."""
from __future__ import annotations

import datetime as dt

import pytest

from chalicelib.models.conversation import ThreadEntry
from chalicelib.models.message import Message
from chalicelib.providers.base import FetchedMessage, MessageRef
from chalicelib.sync import store
from chalicelib.threads import assign, derived, unread
from chalicelib.threads.views import entry_unread, messages_unread
from tests.mailfactory import make_message
from tests.unit.test_message_store import make_mailbox

DAY = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.timezone.utc)
_uid = iter(range(1, 10_000))


@pytest.fixture
def box(aws):
    return make_mailbox("ten_rs", "mbx_rs", email="alice@acme-crm.example")


def save(mailbox, seen: bool | None, days: int = 0, **kwargs) -> Message:
    raw = make_message(date=DAY + dt.timedelta(days=days), **kwargs)
    return store.save_fetched(mailbox, FetchedMessage(MessageRef("inbox", f"1:{next(_uid)}", seen=seen), raw)).message


def thread(seen_first: bool | None, seen_reply: bool | None, mailbox) -> tuple[Message, Message]:
    root = save(mailbox, seen_first, message_id="<root@customer.example>", subject="Offer",
                from_="jan@customer.example")
    reply = save(mailbox, seen_reply, days=1, message_id="<re@customer.example>", subject="Re: Offer",
                 from_="jan@customer.example", in_reply_to="<root@customer.example>",
                 references=["<root@customer.example>"])
    return root, reply


def settled(*messages: Message) -> list[Message]:
    derived.remember(messages[0].tenant_id, [m.message_id for m in messages])
    return [Message.get(m.message_id, consistent_read=True) for m in messages]


def counter(message: Message) -> int | None:
    item = ThreadEntry.get(message.mailbox_id, message.conversation_id, consistent_read=True)
    return None if item.unread_count is None else int(item.unread_count)


def test_the_counter_follows_changes_before_and_after_counting(box):
    root, reply = thread(False, False, box)                         # both unseen at the source
    assert (root.unread, reply.unread) == (True, True)
    unread.apply(box.tenant_id, {reply.message_id: True})           # read before the notifier counts it
    root, reply = settled(root, reply)
    assert root.conversation_id == reply.conversation_id and counter(root) == 1
    assert unread.apply(box.tenant_id, {root.message_id: True, reply.message_id: True}) == 1
    assert counter(root) == 0
    assert entry_unread(ThreadEntry.get(root.mailbox_id, root.conversation_id)) is False
    assert unread.apply(box.tenant_id, {root.message_id: True}) == 0   # repeated: nothing moves twice
    assert unread.apply(box.tenant_id, {root.message_id: False, reply.message_id: False}) == 2
    assert counter(root) == 2
    assert entry_unread(ThreadEntry.get(root.mailbox_id, root.conversation_id)) is True


def test_a_change_racing_the_notifiers_count_is_counted_once(box):
    """The notifier read the message unread; the sync marks it read before the count transaction runs."""
    root, reply = thread(False, True, box)
    loaded = derived.load(box.tenant_id, [root.message_id, reply.message_id])
    unread.apply(box.tenant_id, {root.message_id: True})            # lands between the read and the count
    assign.assign(loaded)
    root, reply = (Message.get(m.message_id, consistent_read=True) for m in (root, reply))
    assert root.thread_counted and reply.thread_counted and counter(root) == 0


def test_removal_of_an_unread_message_leaves_the_counter(box):
    root, reply = settled(*thread(False, True, box))
    assert counter(root) == 1
    store.mark_removed(box, "inbox", [root.provider_id])
    assert counter(reply) == 0


def test_unknown_read_state_stays_null(box):
    root, reply = settled(*thread(None, None, box))
    assert root.unread is None and counter(root) is None
    assert entry_unread(ThreadEntry.get(root.mailbox_id, root.conversation_id)) is None
    assert messages_unread([root, reply]) is None
    assert unread.apply(box.tenant_id, {reply.message_id: False}) == 1    # a state learnt later
    reply = Message.get(reply.message_id, consistent_read=True)
    assert messages_unread([root, reply]) is True and counter(root) == 1
