"""The batched store: one page of fetched messages into S3 and the `Message` table in a handful of calls.

Per page (the same keys and invariants as `store.py`, which stores one message):

    1. prepare every message (parse headers, snippet and attachment list; key it by content) — no I/O;
    2. ONE consistent BatchGetItem per 100 keys: which of the content keys (and, for mailboxes older than
       content keys, the Message-ID keys; in Sent, the keys of copies the outbox stored when it sent them,
       `store.sent_copy_id`; a Gmail mail to self's keys in the other role folder, `store.twin_keys`) are
       already stored;
    3. the raw objects of the new messages PUT to S3 in parallel (a bounded thread pool; boto3 clients are
       thread-safe, resources are not — "Multithreading or multiprocessing with resources", boto3 guide).
       Steps 1-3 go by groups of `PARSE_GROUP` messages: a group's PUTs run while the next group is parsed,
       and all of them have finished before step 4;
    4. the new items in TransactWriteItems of ≤ 98 puts (each conditioned on the item being absent) plus ONE
       update of the mailbox's `imported_count`/`skipped_count` by the number of items in that transaction,
       conditioned on the sync lease. A transaction is all-or-nothing (DynamoDB Developer Guide, "Amazon
       DynamoDB Transactions"), so a message is counted exactly when it is created, however often the page is
       replayed — counts need no per-message write. The same update records ONE page debt on the mailbox
       (`effects.page_debt`: the ids of the new, not skipped, messages — they owe pairing and
       `message.created`); `effects.complete_page` pays it and removes it.
    5. messages already stored only get their provider reference moved (one update each, only when it moved).

Mail the store must not store (`privacy.lists.refusal`: a never-import list names it, it names an erased person,
it is past the tenant's retention period; the lists are read once per page) is dropped after step 1: no raw
object, no item; it is counted as skipped (`store.refuse`). An erasure requested while the page is under way
must not be outrun (its job may already have read this mailbox): each insert transaction also checks that the
tenant's erasure count (`PrivacyList.erasures`) is still the one read with the lists; when it moved, the
transaction is cancelled as a whole, the lists are read again, the messages now refused have their raw objects
deleted, and the rest are inserted.

A transaction cancelled by an item condition (the item appeared meanwhile) falls back to the one-message path
for its messages (`store.insert_one`, owing `count` too, with the same erasure check); one cancelled by the
lease condition raises `LeaseLost`. A crash anywhere leaves raw objects without items (rewritten with the same
bytes on replay) or items that still owe their effects (completed on replay or by the sweep) — never a count
without its item.
Requests stay under DynamoDB's limits: 100 keys per BatchGetItem, 100 actions and 4 MB per transaction (each
`Message` item is ≤ 256 KB by `sync/limits.py`).
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib.config import get_settings
from chalicelib.logs import logger
from chalicelib.models.base import transaction_connection
from chalicelib.models.conflicts import retry_conflicts
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.erasure.delete import delete_raw_objects
from chalicelib.privacy.lists import ErasuresMoved, MailboxLists, check_erasures, lists_for, refusal
from chalicelib.providers.base import FetchedMessage
from chalicelib.sync import effects
from chalicelib.sync.lease import LeaseLost
from chalicelib.sync.limits import FIELD_BUDGETS, size_of
from chalicelib.threads.unread import apply as apply_read_state
from chalicelib.timeutil import now_iso
from chalicelib.sync.store import (OWED_IMPORTED, OWED_SKIPPED, Prepared, SaveOutcome, insert_one, is_twin,
                                   mark_removed, prepare, provider_key, put_raw, refresh_ref, refuse,
                                   restore_removed, save_fetched, stored_message_ids, stored_provider_ids,
                                   use_id)

PARSE_GROUP = 100                        # messages prepared, looked up and PUT together (`save_page`)
TRANSACT_PUTS = 98                       # TransactWriteItems: 100 actions; the mailbox counter, the erasure check
TRANSACT_BYTES = 3_000_000               # TransactWriteItems: 4 MB per request, with room for the envelope

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=get_settings().s3_put_concurrency,
                                       thread_name_prefix="raw-put")
        return _pool


def put_raw_objects(prepared: Sequence[Prepared], tagging: str | None = None) -> None:
    """PUT every raw object, at most `s3_put_concurrency` at a time; the first failure is raised (after all
    have finished, so no PUT outlives the page). `tagging`: the tenant's retention tag (`store.put_raw`)."""
    _finish(_raw_puts(prepared, tagging))


def existing_items(keys: Sequence[str]) -> dict[str, Message]:
    """The stored items among `keys` (consistent reads, ≤ 100 keys a request: `effects.stored_messages`)."""
    return {item.message_id: item for item in effects.stored_messages(keys)}


ITEM_OVERHEAD_BYTES = 8 * 1024          # keys, ids, dates and state: short values outside the field budgets


def _size(item: Message) -> int:
    """An upper bound of the item's size: its header-derived fields as `limits.size_of` counts them (the
    fields `limits.FIELD_BUDGETS` bounds) plus `ITEM_OVERHEAD_BYTES` for the rest — without serializing it."""
    return sum(size_of(getattr(item, name, None)) + len(name) for name in FIELD_BUDGETS) + ITEM_OVERHEAD_BYTES


def _chunks(new: list[Prepared]) -> list[list[Prepared]]:
    chunks: list[list[Prepared]] = [[]]
    size = 0
    for prepared in new:
        item_size = _size(prepared.item)
        if chunks[-1] and (len(chunks[-1]) >= TRANSACT_PUTS or size + item_size > TRANSACT_BYTES):
            chunks.append([])
            size = 0
        chunks[-1].append(prepared)
        size += item_size
    return [chunk for chunk in chunks if chunk]


def insert_items(mailbox: Mailbox, chunk: Sequence[Prepared], lease_owner: str | None,
                 erasures: int | None = None) -> str | None | bool:
    """Create the chunk's items, count them and record what they owe (one page debt on the mailbox,
    `effects.page_debt`) in one transaction. Returns the debt (None when every item is skipped and owes
    nothing); False when an item already existed (nothing was written); raises LeaseLost when the lease is no
    longer `lease_owner`'s, ErasuresMoved when the tenant's erasure count is no longer `erasures` (the count
    read with the lists; the transaction's ConditionCheck of the tenant's privacy item, `lists.check_erasures`)."""
    imported = [p.item.message_id for p in chunk if not p.item.skipped_reason]
    skipped = len(chunk) - len(imported)
    debt = effects.page_debt(imported, now_iso()) if imported else None
    actions = ([Mailbox.imported_count.add(len(imported))] if imported else []) + \
              ([Mailbox.skipped_count.add(skipped)] if skipped else []) + \
              ([Mailbox.owed_pages.add({debt})] if debt else [])
    condition = Mailbox.mailbox_id.exists()
    if lease_owner is not None:
        condition = condition & (Mailbox.lease_owner == lease_owner)
    def commit() -> None:
        with TransactWrite(connection=transaction_connection()) as transaction:
            for prepared in chunk:
                transaction.save(prepared.item, condition=Message.message_id.does_not_exist())
            transaction.update(Mailbox(mailbox.tenant_id, mailbox.mailbox_id), actions=actions,
                               condition=condition)
            check_erasures(transaction, mailbox.tenant_id, erasures)

    try:
        retry_conflicts(commit)     # the tenant's privacy item, checked by every insert of the tenant's mailboxes
    except TransactWriteError as exc:
        reasons = list(getattr(exc, "cancellation_reasons", None) or [])
        codes = [getattr(reason, "code", None) if reason is not None else None for reason in reasons]
        # PynamoDB sends the ConditionCheck first, then the puts, then the update (Connection.transact_write_items)
        if len(codes) == len(chunk) + 2 and codes[-1] == "ConditionalCheckFailed":
            raise LeaseLost(mailbox.mailbox_id) from None
        if len(codes) == len(chunk) + 2 and codes[0] == "ConditionalCheckFailed":
            raise ErasuresMoved(mailbox.tenant_id) from None
        if "ConditionalCheckFailed" in codes:
            return False
        raise
    return debt


def _refresh(existing: Message, prepared: Prepared) -> SaveOutcome:
    """A message stored before: move its provider reference if it moved (one update), else write nothing."""
    ref_key = prepared.item.provider_key
    if existing.provider_key == ref_key and existing.removed_at_source is None:
        return SaveOutcome(existing, False)
    return refresh_ref(existing, prepared.item.provider_id, ref_key)


def _raw_puts(prepared: Sequence[Prepared], tagging: str | None) -> list[Future]:
    """Start the PUTs of the raw objects of `prepared` on the pool (they run while the caller goes on)."""
    return [_executor().submit(put_raw, item, tagging) for item in prepared if item.raw is not None]


def _finish(puts: Sequence[Future]) -> None:
    """Wait for every PUT, then raise the first failure (no PUT outlives the page)."""
    errors = [future.exception() for future in puts]
    for error in errors:
        if error is not None:
            raise error


@dataclass
class _Sorted:
    """A page's messages in order, sorted into stored ones (their outcome known), repeats of an earlier message
    of the page, and new ones (inserted later, counted and owed by the insert's page debt)."""
    prepared: list[Prepared] = field(default_factory=list)
    outcomes: list[SaveOutcome | None] = field(default_factory=list)
    new: list[Prepared] = field(default_factory=list)
    first_of: dict[str, int] = field(default_factory=dict)
    repeats: list[int] = field(default_factory=list)

    def add(self, item: Prepared, stored: dict[str, Message]) -> bool:
        """Place one message (`stored`: the items found for its keys); True when it is new."""
        index = len(self.prepared)
        self.prepared.append(item)
        self.outcomes.append(None)
        twin = stored.get(item.legacy_id or "")
        if twin is not None and twin.raw_sha256 == item.item.raw_sha256:
            use_id(item, twin.message_id)
        elif item.sent_id in stored:          # the outbox's copy of a message it sent: found by Message-ID
            use_id(item, item.sent_id)
        else:                                 # this very message stored under another folder (mail to self)
            use_id(item, next((key for key in item.folder_twins if key in stored and is_twin(item, stored[key])),
                              item.item.message_id))
        message_id = item.item.message_id
        if message_id in stored:
            self.outcomes[index] = _refresh(stored[message_id], item)
            return False
        if message_id in self.first_of:
            self.repeats.append(index)
            return False
        self.first_of[message_id] = index
        item.item.owed = item.item.owed_mailbox = None          # counted and owed by the insert (page debt)
        self.new.append(item)
        return True


def _lookup_keys(group: Sequence[Prepared]) -> list[str]:
    """The keys that say whether a message is stored: its id, its legacy id, the outbox copy's id, its keys in
    the other folders holding this very message (`store.twin_keys`; Gmail mail to self only)."""
    return [p.item.message_id for p in group] + [p.legacy_id for p in group if p.legacy_id] + [
        p.sent_id for p in group if p.sent_id] + [key for p in group for key in p.folder_twins]


def save_page(mailbox: Mailbox, fetched: Sequence[FetchedMessage], *,
              lease_owner: str | None = None) -> list[SaveOutcome]:
    """Store a page of fetched messages (idempotent; see the module docstring); one outcome per message, in
    order. Messages with the same bytes in one page are one message (the later ones are `created=False`).

    The page is prepared, looked up and PUT in groups of `PARSE_GROUP`: a group's raw PUTs run on the pool
    while the next group is parsed (the parse is CPU, a PUT waits on S3), and every PUT has finished before the
    first item is inserted — the order a crash relies on (an item never points to a missing object)."""
    lists = lists_for(mailbox)           # once per page: lists, retention, erasures (privacy/lists.py)
    page, refused, puts = _Sorted(), [], []
    try:
        for start in range(0, len(fetched), PARSE_GROUP):
            group = [prepare(mailbox, item) for item in fetched[start:start + PARSE_GROUP]]
            reasons = [refusal(p.item, lists) for p in group]
            refused += [(p, reason) for p, reason in zip(group, reasons) if reason is not None]
            group = [p for p, reason in zip(group, reasons) if reason is None]
            stored = existing_items(_lookup_keys(group))
            puts += _raw_puts([item for item in group if page.add(item, stored)], lists.raw_tagging)
    except BaseException:
        for future in puts:
            future.exception()               # let them finish; the page's own failure is what is raised
        raise
    _finish(puts)
    outcomes = page.outcomes
    chunks = _chunks(page.new)
    while chunks:
        chunk = chunks.pop(0)
        try:
            debt = insert_items(mailbox, chunk, lease_owner, lists.erasures)
        except ErasuresMoved:
            lists, chunks, newly = _recheck(mailbox, [chunk] + chunks)
            refused += newly
            continue
        if debt is not False:
            for item in chunk:
                outcomes[page.first_of[item.item.message_id]] = SaveOutcome(
                    item.item, True, None if item.item.skipped_reason else debt)
            continue
        logger.info("page insert raced with another writer; storing one by one", extra={"messages": len(chunk)})
        for item in chunk:
            item.item.owed = list(OWED_SKIPPED if item.item.skipped_reason else OWED_IMPORTED)
            item.item.owed_mailbox = mailbox.mailbox_id
            outcomes[page.first_of[item.item.message_id]] = insert_one(mailbox, item, lists, lease_owner)
    for index in page.repeats:
        first = outcomes[page.first_of[page.prepared[index].item.message_id]]
        if first is not None and not first.refused:   # refused after an erasure came: so is its repeat
            outcomes[index] = _refresh(first.message, page.prepared[index])
    return [outcome for outcome in outcomes if outcome is not None] + refuse(mailbox, refused, lease_owner)


def _recheck(mailbox: Mailbox, chunks: list[list[Prepared]]
             ) -> tuple[MailboxLists, list[list[Prepared]], list[tuple[Prepared, str]]]:
    """An erasure came while the page was under way: the lists read again, the not-yet-inserted messages they
    now refuse taken out (their raw objects, already PUT, deleted) and the rest re-chunked."""
    lists = lists_for(mailbox)
    keep: list[Prepared] = []
    newly: list[tuple[Prepared, str]] = []
    for prepared in (p for chunk in chunks for p in chunk):
        reason = refusal(prepared.item, lists)
        if reason is None:
            keep.append(prepared)
        else:
            newly.append((prepared, reason))
    delete_raw_objects(p.item.raw_s3_key for p, _ in newly if p.raw is not None)
    logger.info("erasure requested during the page; lists read again", extra={"refused": len(newly)})
    return lists, _chunks(keep), newly


# The engine's store interface: pages through `save_page`; the rest is the one-message store's.
__all__ = ["save_page", "existing_items", "insert_items", "put_raw_objects", "provider_key", "save_fetched",
           "stored_provider_ids", "stored_message_ids", "apply_read_state", "mark_removed", "restore_removed"]
