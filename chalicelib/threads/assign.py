"""Thread bookkeeping: settle each new message's conversation and count it in its mailbox's list entry.

Runs in the notifier on the page's `message.created` events (`threads/derived.py`), off the sync's critical
path; a message is already stored with its first-guess `conversation_id` (`identity.initial_id`).

Per batch of messages (one tenant): ONE BatchGetItem per 100 thread keys (own Message-ID, provider thread,
parents, subject keys — `identity`), the conversation of each message in date order (earlier messages of the
batch are seen by later ones), the missing keys written in BatchWriteItem calls, then per (mailbox,
conversation) ONE transaction that sets `conversation_id` and `thread_counted` on each message — conditioned
on `thread_counted` being absent and the message not removed at the source — and adds their number and
participants to the `ThreadEntry`; then one conditional update moving the entry's latest message forward.

Exactly once under redelivery and crashes: a message is counted only in the transaction that marks it
counted (a replay finds the mark: the transaction is cancelled and the batch falls back to one message at a
time, skipping the counted ones); the latest-message update only moves forward; keys are idempotent puts.
Two notifiers racing on one thread's key may pick different conversations only when the headers are broken
(intact headers give the same `initial_id`); conversations are never merged afterwards.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from chalicelib.logs import logger
from chalicelib.models.base import transaction_connection
from chalicelib.models.conversation import ThreadEntry, ThreadKey
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.threads import identity
from chalicelib.threads.unread import unread_is, weight

BATCH_GET_KEYS = 100
MESSAGES_PER_TRANSACTION = 90      # + the entry update: TransactWriteItems takes 100 actions
MAX_PARTICIPANTS_PER_MESSAGE = 20


def _own_addresses(tenant_id: str, mailbox_ids: Iterable[str]) -> dict[str, str]:
    keys = [(tenant_id, m) for m in sorted(set(mailbox_ids))]
    return {m.mailbox_id: (m.email or "").lower() for m in Mailbox.batch_get(keys)} if keys else {}


def _lookup(keys: Iterable[str]) -> dict[str, ThreadKey]:
    wanted = list(dict.fromkeys(k for k in keys if k))
    found: dict[str, ThreadKey] = {}
    for start in range(0, len(wanted), BATCH_GET_KEYS):
        for item in ThreadKey.batch_get(wanted[start:start + BATCH_GET_KEYS]):
            found[item.key] = item
    return found


def _candidate_keys(message: Message, own: str) -> list[str]:
    tenant = message.tenant_id
    keys = [identity.mid_key(tenant, message.rfc_message_id) if message.rfc_message_id else None,
            identity.provider_key(tenant, message.mailbox_id, message.thread_id) if message.thread_id else None]
    keys += [identity.mid_key(tenant, parent) for parent in identity.parents(message)]
    if identity.may_join_by_subject(message):
        digest = identity.subject_digest(message.subject)
        keys += [identity.subject_key(tenant, digest, a) for a in identity.external_addresses(message, [own])]
    return [k for k in keys if k]


def resolve(message: Message, known: dict[str, ThreadKey], own: str) -> str | None:
    """The existing conversation this message belongs to (`identity`'s order of evidence), else None."""
    for key in _candidate_keys(message, own):
        hit = known.get(key)
        if hit is None:
            continue
        if "#subj#" in key and not identity.within_window(hit.date, message.date):
            continue
        return hit.conversation_id
    return None


def _keys_to_write(message: Message, conversation_id: str, own: str) -> list[ThreadKey]:
    tenant = message.tenant_id
    items = []
    if message.rfc_message_id:
        items.append(ThreadKey(identity.mid_key(tenant, message.rfc_message_id), conversation_id=conversation_id))
    if message.thread_id:
        items.append(ThreadKey(identity.provider_key(tenant, message.mailbox_id, message.thread_id),
                               conversation_id=conversation_id))
    digest = identity.subject_digest(message.subject)
    if digest:
        items += [ThreadKey(identity.subject_key(tenant, digest, address), conversation_id=conversation_id,
                            date=message.date) for address in identity.external_addresses(message, [own])]
    return items


def participants_of(message: Message) -> set[str]:
    return {f"{str(e['email']).lower()}\t{(e.get('name') or '')[:200]}"
            for e in identity.addresses(message)[:MAX_PARTICIPANTS_PER_MESSAGE]}


def _count(mailbox_id: str, conversation_id: str, messages: Sequence[Message]) -> list[Message]:
    """Mark `messages` counted in one transaction with the entry's count; returns the ones counted."""
    participants: set[str] = set()
    for message in messages:
        participants |= participants_of(message)
    actions = [ThreadEntry.message_count.add(len(messages)), ThreadEntry.tenant_id.set(messages[0].tenant_id)]
    subject = next((m.subject for m in messages if m.subject), None)
    if subject:
        actions.append(ThreadEntry.subject.set(ThreadEntry.subject | subject))
    if participants:
        actions.append(ThreadEntry.participants.add(participants))
    if any(m.unread is not None for m in messages):     # read state at the source (threads/unread.py)
        actions.append(ThreadEntry.unread_count.add(sum(weight(m.unread) for m in messages)))
    with TransactWrite(connection=transaction_connection()) as transaction:
        for message in messages:
            transaction.update(Message(message.message_id),
                               actions=[Message.conversation_id.set(conversation_id),
                                        Message.thread_counted.set(True)],
                               condition=Message.message_id.exists() & Message.thread_counted.does_not_exist()
                               & Message.removed_at_source.does_not_exist() & unread_is(message.unread))
        transaction.update(ThreadEntry(mailbox_id, conversation_id), actions=actions)
    for message in messages:
        message.conversation_id, message.thread_counted = conversation_id, True
    return list(messages)


def _count_group(mailbox_id: str, conversation_id: str, messages: Sequence[Message]) -> list[Message]:
    counted: list[Message] = []
    for start in range(0, len(messages), MESSAGES_PER_TRANSACTION):
        chunk = messages[start:start + MESSAGES_PER_TRANSACTION]
        try:
            counted += _count(mailbox_id, conversation_id, chunk)
        except TransactWriteError as exc:
            if getattr(exc, "cause_response_code", "") != "TransactionCanceledException":
                raise
            for message in chunk:            # one was counted already (a replay) or removed meanwhile
                counted += _count_one(mailbox_id, conversation_id, message)
    return counted


def _count_one(mailbox_id: str, conversation_id: str, message: Message) -> list[Message]:
    """Count one message. A cancelled transaction means it was counted or removed meanwhile — or its read
    state changed since it was read (threads/unread.py): it is read again and, still uncounted, retried once."""
    for attempt in range(2):
        try:
            return _count(mailbox_id, conversation_id, [message])
        except TransactWriteError as exc:
            if getattr(exc, "cause_response_code", "") != "TransactionCanceledException":
                raise
        if attempt:
            break
        try:
            message = Message.get(message.message_id, consistent_read=True)
        except Message.DoesNotExist:
            break
        if message.thread_counted or message.removed_at_source or message.hidden:
            break
    return []


def move_latest(mailbox_id: str, conversation_id: str, message: Message) -> None:
    """Make `message` the entry's latest unless a later one is there (only ever moves forward)."""
    condition = (ThreadEntry.latest_date.does_not_exist() | (ThreadEntry.latest_date < message.date)
                 | ((ThreadEntry.latest_date == message.date)
                    & (ThreadEntry.latest_message_id <= message.message_id)))
    try:
        ThreadEntry(mailbox_id, conversation_id).update(
            actions=[ThreadEntry.latest_date.set(message.date), ThreadEntry.latest_message_id.set(message.message_id),
                     ThreadEntry.activity_key.set(f"{message.date}#{conversation_id}")],
            condition=condition)
    except UpdateError as exc:
        if getattr(exc, "cause_response_code", "") != "ConditionalCheckFailedException":
            raise


def assign(messages: Sequence[Message]) -> int:
    """Settle and count the conversations of `messages` (one tenant's); returns how many were counted now.
    Messages already counted, removed at the source or hidden are left alone."""
    todo = sorted((m for m in messages if not m.thread_counted and not m.removed_at_source and not m.hidden),
                  key=lambda m: m.date_key)
    if not todo:
        return 0
    tenant_id = todo[0].tenant_id
    own = _own_addresses(tenant_id, (m.mailbox_id for m in todo))
    known = _lookup(k for m in todo for k in _candidate_keys(m, own.get(m.mailbox_id, "")))
    new_keys: dict[str, ThreadKey] = {}
    groups: dict[tuple[str, str], list[Message]] = defaultdict(list)
    for message in todo:
        mine = own.get(message.mailbox_id, "")
        conversation_id = (resolve(message, known, mine) or message.conversation_id
                           or identity.initial_id(tenant_id, message))
        for item in _keys_to_write(message, conversation_id, mine):
            if "#subj#" in item.key or item.key not in known:
                known[item.key] = new_keys[item.key] = item
        groups[(message.mailbox_id, conversation_id)].append(message)
    with ThreadKey.batch_write() as batch:
        for item in new_keys.values():
            batch.save(item)
    counted = 0
    for (mailbox_id, conversation_id), group in groups.items():
        done = _count_group(mailbox_id, conversation_id, group)
        counted += len(done)
        if done:
            move_latest(mailbox_id, conversation_id, max(done, key=lambda m: (m.date, m.message_id)))
    logger.info("threads assigned", extra={"messages": len(todo), "counted": counted,
                                           "conversations": len(groups)})
    return counted


def _refresh_latest(mailbox_id: str, conversation_id: str) -> None:
    """After a removal: the entry's latest message is the newest one still counted and its participants are
    theirs (a removed or erased message's addresses leave the list); no message → no entry."""
    condition = (Message.mailbox_id == mailbox_id) & Message.thread_counted.exists()
    newest = next(iter(Message.by_conversation.query(conversation_id, scan_index_forward=False,
                                                     filter_condition=condition, limit=1)), None)
    entry = ThreadEntry(mailbox_id, conversation_id)
    if newest is None:
        try:
            entry.delete(condition=ThreadEntry.message_count <= 0)
        except Exception as exc:  # noqa: BLE001 - a message was counted meanwhile: keep the entry
            logger.info("thread entry kept", extra={"conversation_id": conversation_id, "reason": str(exc)[:80]})
        return
    remaining: set[str] = set()      # the participants of the copies still counted (a removed one's go)
    for message in Message.by_conversation.query(conversation_id, filter_condition=condition):
        remaining |= participants_of(message)
    actions = [ThreadEntry.latest_date.set(newest.date), ThreadEntry.latest_message_id.set(newest.message_id),
               ThreadEntry.activity_key.set(f"{newest.date}#{conversation_id}")]
    actions.append(ThreadEntry.participants.set(remaining) if remaining else ThreadEntry.participants.remove())
    entry.update(actions=actions)


def forget(message: Message, _attempt: int = 0) -> bool:
    """Take a message out of its conversation (removal at the source; the privacy purge and erasure may call
    this too): uncount it from its mailbox's entry (exactly once: conditioned on `thread_counted`) and drop
    its `conversation_id`. Its thread keys stay (other copies of the Message-ID may still exist). True when
    it was counted."""
    try:
        fresh = Message.get(message.message_id, consistent_read=True)
    except Message.DoesNotExist:
        return False
    conversation_id = fresh.conversation_id
    if not fresh.thread_counted or not conversation_id:
        if conversation_id:
            fresh.update(actions=[Message.conversation_id.remove()])
        return False
    entry_actions = [ThreadEntry.message_count.add(-1)]
    if fresh.unread:
        entry_actions.append(ThreadEntry.unread_count.add(-1))
    try:
        with TransactWrite(connection=transaction_connection()) as transaction:
            transaction.update(Message(fresh.message_id),
                               actions=[Message.thread_counted.remove(), Message.conversation_id.remove()],
                               condition=Message.thread_counted.exists() & unread_is(fresh.unread))
            transaction.update(ThreadEntry(fresh.mailbox_id, conversation_id), actions=entry_actions)
    except TransactWriteError as exc:
        if getattr(exc, "cause_response_code", "") != "TransactionCanceledException":
            raise
        if _attempt < 2:       # uncounted meanwhile (the re-read says so), or its read state changed: again
            return forget(message, _attempt=_attempt + 1)
        return False
    _refresh_latest(fresh.mailbox_id, conversation_id)
    return True


def forget_keys(messages: Sequence[Message]) -> int:
    """Delete the thread keys `messages` wrote (their Message-ID, provider thread and subject keys — a subject
    key holds a participant's address): for a purge or an erasure, after which nothing may name them. A
    surviving copy of the same Message-ID in another mailbox loses its key too, so a later reply to it may
    start a new conversation. Returns how many keys were deleted (idempotent)."""
    keys: set[str] = set()
    by_tenant: dict[str, list[Message]] = defaultdict(list)
    for message in messages:
        by_tenant[message.tenant_id].append(message)
    for tenant_id, mine in by_tenant.items():
        own = _own_addresses(tenant_id, (m.mailbox_id for m in mine))
        for message in mine:
            keys |= {item.key for item in _keys_to_write(message, "", own.get(message.mailbox_id, ""))}
    with ThreadKey.batch_write() as batch:
        for key in sorted(keys):
            batch.delete(ThreadKey(key))
    return len(keys)
