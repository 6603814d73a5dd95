"""Guards the packed conversation counting (`threads/assign.py`: several conversations per transaction, the
entry's latest moved in the same transaction): a cancelled transaction must fall back without counting any
message twice or losing one, and the latest message must never move backwards."""
from __future__ import annotations

from chalicelib.models.conversation import ThreadEntry
from chalicelib.models.message import Message
from chalicelib.threads import assign
from tests.sync_helpers import dynamodb_calls
from tests.unit.test_threads import alice, save  # noqa: F401 - `alice` is a fixture

__all__ = ["alice"]


def fresh(message: Message) -> Message:
    return Message.get(message.message_id, consistent_read=True)


def test_a_packed_transaction_cancelled_by_one_counted_message_counts_the_others_once(tenant, alice):  # noqa: F811
    """Guards against a replayed batch double-counting the message counted meanwhile or dropping the others."""
    stale = [save(alice, days=n, message_id=f"<pack-{n}@customer{n}.example>", subject=f"Crates {n}",
                  from_=f"buyer{n}@customer{n}.example", to="alice@acme-crm.example") for n in range(5)]
    assert assign.assign([fresh(stale[2])]) == 1       # counted by someone else first
    with dynamodb_calls() as calls:
        assert assign.assign(stale) == 4                # `stale[2]` still reads as uncounted here
    assert calls["TransactWriteItems"] >= 2             # the packed one (cancelled), then the fallback
    for message in stale:
        counted = fresh(message)
        entry = ThreadEntry.get(alice.mailbox_id, counted.conversation_id)
        assert counted.thread_counted and entry.message_count == 1
        assert entry.latest_message_id == message.message_id


def test_packed_conversations_share_transactions_and_move_their_latest(tenant, alice):  # noqa: F811
    """Guards against a transaction (and a latest update) per conversation: 60 conversations fit in 2."""
    messages = [save(alice, days=n % 5, message_id=f"<many-{n}@c{n}.example>", subject=f"Pallets {n}",
                     from_=f"b{n}@c{n}.example", to="alice@acme-crm.example") for n in range(60)]
    with dynamodb_calls() as calls:
        assert assign.assign(messages) == 60
    assert calls["TransactWriteItems"] == 2 and calls["UpdateItem"] == 0
    for message in messages:
        counted = fresh(message)
        assert ThreadEntry.get(alice.mailbox_id, counted.conversation_id).latest_message_id == message.message_id


def test_an_entry_whose_latest_moved_past_the_read_keeps_it_and_counts_once(tenant, alice, monkeypatch):  # noqa: F811
    """Guards against the folded latest update moving an entry backwards when a later message was counted
    between the entry read and the transaction."""
    root = save(alice, message_id="<late-root@customer.example>", subject="Quote", from_="jan@customer.example",
                to="alice@acme-crm.example")
    reply = save(alice, days=2, message_id="<late-reply@customer.example>", subject="Re: Quote",
                 from_="jan@customer.example", to="alice@acme-crm.example",
                 in_reply_to="<late-root@customer.example>", references=["<late-root@customer.example>"])
    assert assign.assign([reply]) == 1
    monkeypatch.setattr(ThreadEntry, "batch_get", classmethod(lambda cls, *a, **k: iter(())))  # a read from before
    assert assign.assign([root]) == 1
    root, reply = fresh(root), fresh(reply)
    entry = ThreadEntry.get(alice.mailbox_id, reply.conversation_id)
    assert root.conversation_id == reply.conversation_id and root.thread_counted
    assert entry.message_count == 2 and entry.latest_message_id == reply.message_id
    monkeypatch.undo()
    assert assign.assign([root]) == 0 and ThreadEntry.get(alice.mailbox_id, reply.conversation_id).message_count == 2
