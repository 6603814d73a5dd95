"""Keyed, audited writes of links and signals; each is one DynamoDB transaction.

A link write puts the link (only if absent — or, for a person's deliberate link, also over a removed
tombstone), puts its audit entry, adds 1 to `Message.link_count` and adds the link to the message's thread
markers (directory index "rfc"/"thread" keys) in the same transaction, so a
redelivered pairing job writes nothing twice and `link_count` always equals the number of active links.
Timeline of a retry: run 1 commits {link, audit, count+1}; run 2's put fails its condition → the whole
transaction is cancelled → nothing changes.

With `require_record` (what pairing and the manual routes pass) the same transaction checks that the linked
directory record exists (a ConditionCheck): the engine read the directory earlier, and a record deleted
since — whose `directory.changed` job may already have run and found nothing to remove — gets no link.
Transactions are serializable (DynamoDB developer guide, "Isolation levels for DynamoDB transactions"): a
link committed before the delete is seen and removed by that job.

Conflicts: pairings of many mailboxes of one tenant check the same directory record (a ConditionCheck counts)
and update the same thread markers (one Message-ID's "rfc" key in every copy's transaction); DynamoDB cancels
one of two such transactions under way at once with `TransactionConflict`. Nothing was written, so each
transaction is sent again (`models.conflicts.retry_conflicts`) with the same items, built before it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from pynamodb.exceptions import DoesNotExist, TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from chalicelib.ids import new_id, stable_id
from chalicelib.models.base import transaction_connection
from chalicelib.models.conflicts import condition_failed, retry_conflicts
from chalicelib.models.directory import DirectoryIndex, DirectoryRecord, record_key, rfc_key, thread_key
from chalicelib.models.message import Message
from chalicelib.models.pairing import AuditEntry, MessageLink, Signal
from chalicelib.timeutil import now_iso


MAX_TRANSACTION_ACTIONS = 100


@dataclass(frozen=True)
class LinkSpec:
    type: str
    id: str
    source: str          # auto | rule | signal | manual | thread | created
    reason: str
    actor: str           # "matcher:<name>" | "rule:<id>" | "user:<id>" | "tenant"


def _tx() -> TransactWrite:
    """Every transaction here is sent through `retry_conflicts`, whose last conflict is raised (the pairing job
    is delivered again); a cancellation it lets through is a failed condition only when `condition_failed`
    says so (the item exists / is not in the expected state: nothing was written)."""
    return TransactWrite(connection=transaction_connection())


def thread_marker_keys(message: Message) -> list[str]:
    """Index keys through which replies inherit this message's links (its Message-ID, its provider thread)."""
    keys = []
    if message.rfc_message_id:
        keys.append(rfc_key(message.tenant_id, message.rfc_message_id))
    if message.thread_id:
        keys.append(thread_key(message.tenant_id, message.mailbox_id, message.thread_id))
    return keys


def entity_key(tenant_id: str, entity_type: str, entity_id: str) -> str:
    return f"{tenant_id}#{entity_type}#{entity_id}"


def audit_entry(tenant_id: str, action: str, actor: str, reason: str | None = None, *, message_id=None,
                entity_type=None, entity_id=None, signal_id=None, undo_of=None, details=None,
                audit_id: str | None = None) -> AuditEntry:
    return AuditEntry(tenant_id, audit_id or new_id("aud"), action=action, actor=actor, reason=reason,
                      message_id=message_id, entity_type=entity_type, entity_id=entity_id, signal_id=signal_id,
                      undo_of=undo_of, details=details or {}, created_at=now_iso())


def _link_and_audit(message: Message, spec: LinkSpec) -> tuple[MessageLink, AuditEntry]:
    audit = audit_entry(message.tenant_id, "link.created", spec.actor, spec.reason, message_id=message.message_id,
                        entity_type=spec.type, entity_id=spec.id, details={"source": spec.source})
    link = MessageLink(message.message_id, record_key(spec.type, spec.id), tenant_id=message.tenant_id,
                       mailbox_id=message.mailbox_id, entity_type=spec.type, entity_id=spec.id,
                       entity_key=entity_key(message.tenant_id, spec.type, spec.id), date_key=message.date_key,
                       status="active", source=spec.source, reason=spec.reason, actor=spec.actor,
                       audit_id=audit.audit_id, created_at=audit.created_at)
    return link, audit


def write_links(pairs: Sequence[tuple[Message, LinkSpec]], *, require_record: bool = False
                ) -> list[MessageLink | None]:
    """`write_link` for many (message, spec) pairs — a message's links or a whole page's — in as few
    transactions as fit (TransactWriteItems takes 100 actions, each item once: per link its put and audit
    entry, per message ONE count update, per thread marker ONE index update). A transaction cancelled by a
    failed condition (a replay finds some links written) is written again link by link, so every pair ends as
    `write_link` leaves it. Results in the order of `pairs`: the new link, or None when it existed."""
    results: list[MessageLink | None] = [None] * len(pairs)
    for chunk in _chunks(pairs, require_record):
        written = _write_chunk([pairs[i] for i in chunk], require_record)
        if written is None:
            for i in chunk:
                results[i] = write_link(*pairs[i], require_record=require_record)
        else:
            for i, link in zip(chunk, written):
                results[i] = link
    return results


def _shared_items(message: Message, spec: LinkSpec, require_record: bool) -> list[tuple[str, str]]:
    """Items a link's transaction touches that other links may share: the message (its count), the linked
    record (its existence check, when required) and the message's thread markers."""
    record = [("r", f"{message.tenant_id}#{record_key(spec.type, spec.id)}")] if require_record else []
    return [("m", message.message_id)] + record + [("k", k) for k in thread_marker_keys(message)]


def _chunks(pairs: Sequence[tuple[Message, LinkSpec]], require_record: bool = False) -> list[list[int]]:
    chunks: list[list[int]] = [[]]
    actions, items = 0, set()
    for index, (message, spec) in enumerate(pairs):
        link_item = (message.message_id, record_key(spec.type, spec.id))
        new = [key for key in _shared_items(message, spec, require_record) if key not in items]
        if chunks[-1] and (link_item in items or actions + 2 + len(new) > MAX_TRANSACTION_ACTIONS):
            chunks.append([])
            actions, items = 0, set()
            new = _shared_items(message, spec, require_record)
        chunks[-1].append(index)
        items.update([link_item, *new])
        actions += 2 + len(new)
    return [chunk for chunk in chunks if chunk]


def _write_chunk(pairs: list[tuple[Message, LinkSpec]], require_record: bool) -> list[MessageLink] | None:
    """All of `pairs` in one transaction, or None when a condition cancelled it (nothing written)."""
    written = [_link_and_audit(message, spec) for message, spec in pairs]
    counts: dict[str, tuple[Message, int]] = {}
    markers: dict[str, tuple[str, set[str]]] = {}
    records: set[tuple[str, str]] = set()
    for (message, spec), (link, _) in zip(pairs, written):
        counts[message.message_id] = (message, counts.get(message.message_id, (message, 0))[1] + 1)
        if require_record:
            records.add((message.tenant_id, record_key(spec.type, spec.id)))
        for key in thread_marker_keys(message):
            markers.setdefault(key, (message.tenant_id, set()))[1].add(link.link_key)

    def commit() -> None:
        with _tx() as tx:
            for link, audit in written:
                tx.save(link, condition=MessageLink.link_key.does_not_exist())
                tx.save(audit)
            for message, added in counts.values():
                tx.update(message, actions=[Message.link_count.add(added)], condition=Message.message_id.exists())
            for tenant_id, key in sorted(records):
                _check_record(tx, tenant_id, key)
            for key, (tenant_id, link_keys) in markers.items():
                tx.update(DirectoryIndex(key), actions=[DirectoryIndex.record_keys.add(link_keys),
                                                        DirectoryIndex.tenant_id.set(tenant_id)])

    try:
        retry_conflicts(commit)
    except TransactWriteError as exc:
        if condition_failed(exc):
            return None
        raise
    for message, added in counts.values():
        message.link_count = int(message.link_count or 0) + added
    return [link for link, _ in written]


def _check_record(tx: TransactWrite, tenant_id: str, key: str) -> None:
    tx.condition_check(DirectoryRecord, tenant_id, key, condition=DirectoryRecord.record_key.exists())


def write_link(message: Message, spec: LinkSpec, *, revive: bool = False,
               require_record: bool = False) -> MessageLink | None:
    """The new link, or None when it already existed (or was removed and `revive` is false), or — with
    `require_record` — its record is not in the directory (any more)."""
    link, audit = _link_and_audit(message, spec)
    condition = MessageLink.link_key.does_not_exist()
    if revive:
        condition = condition | (MessageLink.status == "removed")

    def commit() -> None:
        with _tx() as tx:
            tx.save(link, condition=condition)
            tx.save(audit)
            tx.update(message, actions=[Message.link_count.add(1)], condition=Message.message_id.exists())
            if require_record:
                _check_record(tx, message.tenant_id, link.link_key)
            for key in thread_marker_keys(message):
                tx.update(DirectoryIndex(key), actions=[DirectoryIndex.record_keys.add({link.link_key}),
                                                        DirectoryIndex.tenant_id.set(message.tenant_id)])

    try:
        retry_conflicts(commit)
    except TransactWriteError as exc:
        if condition_failed(exc):
            return None
        raise
    message.link_count = int(message.link_count or 0) + 1
    return link


def remove_link(message: Message, entity_type: str, entity_id: str, actor: str, reason: str,
                undo_of: str | None = None) -> AuditEntry | None:
    """Tombstone an active link (kept for the audit trail; automatic pairing will not re-create it). With
    `undo_of` (the `link.created` entry being undone) only the link that entry made is removed — not one made
    again since (by hand, or by an accepted signal) — and the entry is marked undone in the same transaction,
    once; None when either condition fails."""
    link = MessageLink(message.message_id, record_key(entity_type, entity_id))
    audit = audit_entry(message.tenant_id, "undo" if undo_of else "link.removed", actor, reason,
                        message_id=message.message_id, entity_type=entity_type, entity_id=entity_id, undo_of=undo_of)
    condition = MessageLink.status == "active"
    if undo_of:
        condition = condition & (MessageLink.audit_id == undo_of)

    def commit() -> None:
        with _tx() as tx:
            tx.update(link, actions=[MessageLink.status.set("removed"), MessageLink.entity_key.remove(),
                                     MessageLink.removed_at.set(audit.created_at)],
                      condition=condition)
            tx.save(audit)
            if undo_of:
                _mark_undone(tx, message.tenant_id, undo_of, audit.audit_id)
            tx.update(message, actions=[Message.link_count.add(-1)], condition=Message.message_id.exists())
            for key in thread_marker_keys(message):
                tx.update(DirectoryIndex(key), actions=[DirectoryIndex.record_keys.delete({link.link_key})])

    try:
        retry_conflicts(commit)
    except TransactWriteError as exc:
        if condition_failed(exc):
            return None
        raise
    message.link_count = max(0, int(message.link_count or 0) - 1)
    return audit


def _mark_undone(tx: TransactWrite, tenant_id: str, audit_id: str, undo_id: str) -> None:
    tx.update(AuditEntry(tenant_id, audit_id), actions=[AuditEntry.undone_by.set(undo_id)],
              condition=AuditEntry.audit_id.exists() & AuditEntry.undone_by.does_not_exist())


def save_undo(undo: AuditEntry) -> bool:
    """Store an "undo" entry and mark the entry it undoes (`undo.undo_of`) in one transaction; False when
    that entry was undone already (a concurrent or repeated undo): nothing is written."""

    def commit() -> None:
        with _tx() as tx:
            tx.save(undo, condition=AuditEntry.audit_id.does_not_exist())
            _mark_undone(tx, undo.tenant_id, undo.undo_of, undo.audit_id)

    try:
        retry_conflicts(commit)
    except TransactWriteError as exc:
        if condition_failed(exc):
            return False
        raise
    return True


def active_links(message_id: str) -> list[MessageLink]:
    return [link for link in MessageLink.query(message_id) if link.status == "active"]


def all_links(message_id: str) -> list[MessageLink]:
    return list(MessageLink.query(message_id))


def signal_id_for(tenant_id: str, message_id: str, entity_type: str, entity_id: str) -> str:
    return stable_id("sig", tenant_id, message_id, entity_type, entity_id)


def write_signal(message: Message, entity_type: str, entity_id: str, reason: str, matcher: str,
                 confidence: float) -> Signal | None:
    """A new open signal, or None when one for this message and record exists in any status (so a
    dismissed suggestion is never made again for the same message)."""
    signal_id = signal_id_for(message.tenant_id, message.message_id, entity_type, entity_id)
    audit = audit_entry(message.tenant_id, "signal.created", f"matcher:{matcher}", reason,
                        message_id=message.message_id, entity_type=entity_type, entity_id=entity_id,
                        signal_id=signal_id, details={"confidence": confidence})
    now = audit.created_at
    signal = Signal(message.tenant_id, signal_id, message_id=message.message_id, mailbox_id=message.mailbox_id,
                    entity_type=entity_type, entity_id=entity_id, reason=reason, matcher=matcher,
                    confidence=confidence, status="open", tenant_status=f"{message.tenant_id}#open",
                    mailbox_status=f"{message.mailbox_id}#open", created_key=f"{now}#{signal_id}",
                    audit_id=audit.audit_id, created_at=now)

    def commit() -> None:
        with _tx() as tx:
            tx.save(signal, condition=Signal.signal_id.does_not_exist())
            tx.save(audit)

    try:
        retry_conflicts(commit)
    except TransactWriteError as exc:
        if condition_failed(exc):
            return None
        raise
    return signal


def set_signal_status(signal: Signal, status: str, actor: str, *, expected: str = "open") -> bool:
    """Move a signal in status `expected` (open) to `status`; False when it was not in it any more (a
    concurrent resolve)."""
    now = now_iso()
    try:
        signal.update(actions=[Signal.status.set(status), Signal.tenant_status.set(f"{signal.tenant_id}#{status}"),
                               Signal.mailbox_status.set(f"{signal.mailbox_id}#{status}"),
                               Signal.resolved_at.set(now), Signal.resolved_by.set(actor)],
                      condition=Signal.status == expected)
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


def get_signal(tenant_id: str, signal_id: str) -> Signal | None:
    try:
        return Signal.get(tenant_id, signal_id)
    except DoesNotExist:
        return None
