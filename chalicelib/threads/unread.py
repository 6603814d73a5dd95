"""Read state at the source: each stored message's `unread`, and each conversation entry's `unread_count`.

Sources (the provider reports them on `MessageRef.seen`; mailbridge never changes read state at the provider):
IMAP `\\Seen` (RFC 3501 §2.3.2; changes followed with CONDSTORE, RFC 7162), Gmail's `UNREAD` label (label
history), Graph's `isRead` (message delta). A message stored with unknown state has `unread` None.

`ThreadEntry.unread_count` counts the entry's copies (those `thread_counted` in it, `threads/assign.py`) that
are unread at the source, so a mailbox's thread list answers "any message unread?" exactly from the entry it
already reads (`unread_count > 0`); the attribute is absent while no counted copy had a known state.

Exactly once, without locks: every write that changes a message's `unread` or its counted membership is a
transaction conditioned on the state it read (the message's `unread`, `thread_counted` and
`conversation_id`), and moves the entry's counter by the difference in that same transaction. Here: a page's
changes are read in ONE BatchGetItem per 100 messages, and only the messages whose state differs are written,
up to `MESSAGES_PER_TRANSACTION` per transaction with one counter update per entry; a cancelled transaction
(a concurrent count, removal or flip) falls back to one message at a time, re-read each attempt.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Mapping, Sequence

from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib.logs import logger
from chalicelib.models.base import transaction_connection
from chalicelib.models.conflicts import cancelled, retry_conflicts
from chalicelib.models.conversation import ThreadEntry
from chalicelib.models.message import Message

BATCH_GET_KEYS = 100
MESSAGES_PER_TRANSACTION = 45      # + at most as many entry updates: TransactWriteItems takes 100 actions
ATTEMPTS = 3
STATE_ATTRIBUTES = ["message_id", "tenant_id", "mailbox_id", "unread", "thread_counted", "conversation_id"]


def unread_is(value: bool | None):
    """The condition "the message's `unread` is still `value`" (absent for None)."""
    return Message.unread.does_not_exist() if value is None else Message.unread == value


def counted_as(message: Message):
    """The condition "the message is still counted in the same conversation (or still uncounted)"."""
    if message.thread_counted and message.conversation_id:
        return Message.thread_counted.exists() & (Message.conversation_id == message.conversation_id)
    return Message.thread_counted.does_not_exist()


def weight(unread: bool | None) -> int:
    return 1 if unread else 0


def _load(tenant_id: str, message_ids: Sequence[str]) -> list[Message]:
    found: list[Message] = []
    for start in range(0, len(message_ids), BATCH_GET_KEYS):
        found += [m for m in Message.batch_get(message_ids[start:start + BATCH_GET_KEYS], consistent_read=True,
                                               attributes_to_get=STATE_ATTRIBUTES) if m.tenant_id == tenant_id]
    return found


def _write(flips: Sequence[tuple[Message, bool]]) -> None:
    """One transaction: each message's new `unread` (conditioned on what was read) and each entry's counter.
    A conflict (the notifier counting these messages, or another change of the entry) is sent again
    (`retry_conflicts`): it says nothing about the read state and must not spend an attempt."""
    deltas: dict[tuple[str, str], int] = defaultdict(int)
    for message, unread in flips:
        if message.thread_counted and message.conversation_id:
            deltas[(message.mailbox_id, message.conversation_id)] += weight(unread) - weight(message.unread)

    def commit() -> None:
        with TransactWrite(connection=transaction_connection()) as transaction:
            for message, unread in flips:
                transaction.update(Message(message.message_id), actions=[Message.unread.set(unread)],
                                   condition=Message.message_id.exists() & unread_is(message.unread)
                                   & counted_as(message))
            for (mailbox_id, conversation_id), delta in deltas.items():
                transaction.update(ThreadEntry(mailbox_id, conversation_id),
                                   actions=[ThreadEntry.unread_count.add(delta)])

    retry_conflicts(commit)


def _apply_one(tenant_id: str, message_id: str, unread: bool) -> bool:
    """One message, re-read on every attempt; True when this call changed its state."""
    for _ in range(ATTEMPTS):
        fresh = _load(tenant_id, [message_id])
        if not fresh or fresh[0].unread == unread:
            return False
        try:
            _write([(fresh[0], unread)])
            return True
        except TransactWriteError as exc:
            if not cancelled(exc):
                raise
    logger.warning("read state kept changing under us; left for the next sync", extra={"message_id": message_id})
    return False


def apply(tenant_id: str, seen: Mapping[str, bool]) -> int:
    """Record read states {message_id: seen at the source} of the tenant's stored messages; returns how many
    messages changed. Messages not stored (or another tenant's) are ignored."""
    wanted = {message_id: not is_seen for message_id, is_seen in seen.items()}
    if not wanted:
        return 0
    flips = [(m, wanted[m.message_id]) for m in _load(tenant_id, list(wanted)) if m.unread != wanted[m.message_id]]
    changed = 0
    for start in range(0, len(flips), MESSAGES_PER_TRANSACTION):
        chunk = flips[start:start + MESSAGES_PER_TRANSACTION]
        try:
            _write(chunk)
            changed += len(chunk)
        except TransactWriteError as exc:
            if not cancelled(exc):
                raise
            changed += sum(_apply_one(tenant_id, m.message_id, unread) for m, unread in chunk)
    if changed:
        logger.info("read state updated", extra={"messages": changed})
    return changed
