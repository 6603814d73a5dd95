"""Thread bookkeeping: settle each new message's conversation and count it in its mailbox's list entry.

Runs in the notifier on the page's `message.created` events (`threads/derived.py`), off the sync's critical
path; a message is already stored with its first-guess `conversation_id` (`identity.initial_id`).

Per batch of messages (one tenant): ONE BatchGetItem per 100 thread keys (own Message-ID, provider thread,
parents, subject keys — `identity`), the conversation of each message in date order (earlier messages of the
batch are seen by later ones), the missing keys written in BatchWriteItem calls, the entries' latest message
read (one BatchGetItem per 100 entries), then transactions of up to 100 actions (TransactWriteItems' limit),
each packing several (mailbox, conversation) groups: per group, each message's `conversation_id` and
`thread_counted` set — conditioned on `thread_counted` being absent, the message not removed at the source and
its read state unchanged — and ONE update of the `ThreadEntry` adding their number and participants and, when
the group holds a message later than the entry's latest, moving the latest to it (conditioned on moving
forward). A page of 100 new messages in 100 conversations: 2 transactions (was 100 + 100 updates).

Exactly once under redelivery and crashes: a message is counted only in the transaction that marks it
counted (a replay finds the mark: the transaction is cancelled and its groups fall back to one group, then
one message, at a time, skipping the counted ones, with a separate forward-only latest update); the latest
message only moves forward; keys are idempotent puts. A removal that re-reads the entry's latest
(`_refresh_latest`) between this batch's entry read and its transaction can leave the entry's latest on an
older message than one counted here (it is corrected by the next message of that conversation); the
unbatched update had the same race, a little narrower.
Two notifiers racing on one thread's key may pick different conversations only when the headers are broken
(intact headers give the same `initial_id`); conversations are never merged afterwards.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from chalicelib.logs import logger
from chalicelib.models.base import transaction_connection
from chalicelib.models.conflicts import cancelled, retry_conflicts, transact
from chalicelib.models.conversation import ThreadEntry, ThreadKey
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.threads import identity
from chalicelib.threads.unread import unread_is, weight

BATCH_GET_KEYS = 100
MAX_TRANSACTION_ACTIONS = 100      # TransactWriteItems takes at most 100 actions
MESSAGES_PER_TRANSACTION = 90      # a unit: its messages + its entry's update
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


@dataclass
class _Unit:
    """Messages of one (mailbox, conversation) counted together; `latest`: the one the entry's latest moves
    to in the same transaction (None: the entry already shows a later one, or it is moved afterwards)."""
    mailbox_id: str
    conversation_id: str
    messages: Sequence[Message]
    latest: Message | None = None

    @property
    def actions(self) -> int:
        return len(self.messages) + 1


def _newest(messages: Iterable[Message]) -> Message:
    return max(messages, key=lambda m: (m.date, m.message_id))


def _forward_only(message: Message):
    """The entry's latest may become `message`: none yet, or an earlier one (ties by message id)."""
    return (ThreadEntry.latest_date.does_not_exist() | (ThreadEntry.latest_date < message.date)
            | ((ThreadEntry.latest_date == message.date) & (ThreadEntry.latest_message_id <= message.message_id)))


def _latest_actions(conversation_id: str, message: Message) -> list:
    return [ThreadEntry.latest_date.set(message.date), ThreadEntry.latest_message_id.set(message.message_id),
            ThreadEntry.activity_key.set(f"{message.date}#{conversation_id}")]


def _entry_actions(unit: _Unit) -> list:
    messages = unit.messages
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
    if unit.latest is not None:
        actions += _latest_actions(unit.conversation_id, unit.latest)
    return actions


def _write(units: Sequence[_Unit]) -> None:
    """ONE transaction: each unit's messages marked counted (conditioned on not counted yet, still at the
    source and read state unchanged) and its entry's count, participants — and latest, conditioned on moving
    forward — updated. All or nothing. A conflict (another notifier counting into the same entry, a read-state
    change or a removal of one of the messages under way) is sent again (`retry_conflicts`): read as a
    cancellation it would fall back, and after two more conflicts leave the message counted nowhere."""
    def commit() -> None:
        with TransactWrite(connection=transaction_connection()) as transaction:
            for unit in units:
                for message in unit.messages:
                    transaction.update(Message(message.message_id),
                                       actions=[Message.conversation_id.set(unit.conversation_id),
                                                Message.thread_counted.set(True)],
                                       condition=Message.message_id.exists()
                                       & Message.thread_counted.does_not_exist()
                                       & Message.removed_at_source.does_not_exist() & unread_is(message.unread))
                condition = _forward_only(unit.latest) if unit.latest is not None else None
                transaction.update(ThreadEntry(unit.mailbox_id, unit.conversation_id),
                                   actions=_entry_actions(unit), condition=condition)

    retry_conflicts(commit)
    for unit in units:
        for message in unit.messages:
            message.conversation_id, message.thread_counted = unit.conversation_id, True


def _count(mailbox_id: str, conversation_id: str, messages: Sequence[Message]) -> list[Message]:
    """Mark `messages` counted in one transaction with the entry's count; returns the ones counted."""
    _write([_Unit(mailbox_id, conversation_id, messages)])
    return list(messages)


def _count_group(mailbox_id: str, conversation_id: str, messages: Sequence[Message]) -> list[Message]:
    counted: list[Message] = []
    for start in range(0, len(messages), MESSAGES_PER_TRANSACTION):
        chunk = messages[start:start + MESSAGES_PER_TRANSACTION]
        try:
            counted += _count(mailbox_id, conversation_id, chunk)
        except TransactWriteError as exc:
            if not cancelled(exc):
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
            if not cancelled(exc):
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
    try:
        ThreadEntry(mailbox_id, conversation_id).update(actions=_latest_actions(conversation_id, message),
                                                        condition=_forward_only(message))
    except UpdateError as exc:
        if getattr(exc, "cause_response_code", "") != "ConditionalCheckFailedException":
            raise


def _units(groups: dict[tuple[str, str], list[Message]]) -> list[_Unit]:
    """Each group in chunks of ≤ `MESSAGES_PER_TRANSACTION` (date order), the entries read once (BatchGetItem)
    so that a chunk holding a message later than its entry's latest moves the latest in its own transaction."""
    keys = list(groups)
    entries: dict[tuple[str, str], ThreadEntry] = {}
    for start in range(0, len(keys), BATCH_GET_KEYS):
        for entry in ThreadEntry.batch_get(keys[start:start + BATCH_GET_KEYS],
                                           attributes_to_get=["mailbox_id", "conversation_id", "latest_date",
                                                              "latest_message_id"]):
            entries[(entry.mailbox_id, entry.conversation_id)] = entry
    units = []
    for key, group in groups.items():
        entry = entries.get(key)
        shown = (entry.latest_date, entry.latest_message_id) if entry and entry.latest_date else None
        for start in range(0, len(group), MESSAGES_PER_TRANSACTION):
            chunk = group[start:start + MESSAGES_PER_TRANSACTION]
            newest = _newest(chunk)
            later = shown is None or (newest.date, newest.message_id) > (shown[0], shown[1] or "")
            units.append(_Unit(key[0], key[1], chunk, newest if later else None))
            if later:
                shown = (newest.date, newest.message_id)
    return units


def _packed(units: Sequence[_Unit]) -> Iterable[list[_Unit]]:
    """Units packed into transactions of ≤ `MAX_TRANSACTION_ACTIONS` actions, one unit per entry each (a
    transaction may not touch one item twice)."""
    batch: list[_Unit] = []
    size, entries = 0, set()
    for unit in units:
        key = (unit.mailbox_id, unit.conversation_id)
        if batch and (size + unit.actions > MAX_TRANSACTION_ACTIONS or key in entries):
            yield batch
            batch, size, entries = [], 0, set()
        batch.append(unit)
        size += unit.actions
        entries.add(key)
    if batch:
        yield batch


def _count_units(units: Sequence[_Unit]) -> int:
    """Count `units` in as few transactions as fit; a cancelled transaction (a message counted, removed or
    flipped meanwhile, or an entry's latest moved past ours) falls back, for its units only, to the unit at a
    time path (`_count_group`, then `move_latest`) — exactly once either way, since every message's mark is
    conditioned on it not being counted."""
    counted = 0
    for batch in _packed(units):
        try:
            _write(batch)
            counted += sum(len(unit.messages) for unit in batch)
            continue
        except TransactWriteError as exc:
            if not cancelled(exc):
                raise
        for unit in batch:
            done = _count_group(unit.mailbox_id, unit.conversation_id, unit.messages)
            counted += len(done)
            if done:
                move_latest(unit.mailbox_id, unit.conversation_id, _newest(done))
    return counted


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
    counted = _count_units(_units(groups))
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


def forget(message: Message, _attempt: int = 0, *, hide: bool = False) -> bool:
    """Take a message out of its conversation (removal at the source, a delete in the CRM; the privacy purge and
    erasure may call this too): uncount it from its mailbox's entry (exactly once: conditioned on
    `thread_counted`) and drop its `conversation_id`. Its thread keys stay (other copies of the Message-ID may
    still exist). `hide` marks it hidden in the same write, so a hidden message is never left counted (and
    `assign` never counts a hidden one). True when it was counted."""
    try:
        fresh = Message.get(message.message_id, consistent_read=True)
    except Message.DoesNotExist:
        return False
    conversation_id = fresh.conversation_id
    hidden = [Message.hidden.set(True)] if hide else []
    if not fresh.thread_counted or not conversation_id:
        if conversation_id or hidden:
            # conditioned on "still uncounted": one counted meanwhile is uncounted by the next attempt
            still = Message.thread_counted.does_not_exist() if not fresh.thread_counted else None
            try:
                fresh.update(actions=hidden + ([Message.conversation_id.remove()] if conversation_id else []),
                             condition=still)
            except UpdateError as exc:
                if getattr(exc, "cause_response_code", "") != "ConditionalCheckFailedException" or _attempt >= 2:
                    raise
                return forget(message, _attempt=_attempt + 1, hide=hide)
        return False
    entry_actions = [ThreadEntry.message_count.add(-1)]
    if fresh.unread:
        entry_actions.append(ThreadEntry.unread_count.add(-1))
    def build(transaction: TransactWrite) -> None:
        transaction.update(Message(fresh.message_id),
                           actions=[Message.thread_counted.remove(), Message.conversation_id.remove(), *hidden],
                           condition=Message.thread_counted.exists() & unread_is(fresh.unread))
        transaction.update(ThreadEntry(fresh.mailbox_id, conversation_id), actions=entry_actions)

    if not transact(build):     # a conflict is no answer about the mark (sent again): never a spent attempt
        if _attempt < 2:       # uncounted meanwhile (the re-read says so), or its read state changed: again
            return forget(message, _attempt=_attempt + 1, hide=hide)
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
