"""Deleting stored messages: the ONE function every deletion goes through (purge, erasure, retention).

`delete_messages(messages)` removes, for each message: its raw object in S3, its conversation membership, thread
keys and search postings (`threads.derived.erase`), its links (active and removed
tombstones), its signals, its audit entries (`AuditEntry.by_message`), the pairing index entries its thread
markers created (`pairing.store.thread_marker_keys`: the "rfc" key of its Message-ID and the "thread" key of its
provider thread — replies arriving later no longer inherit through them), and finally the `Message` item.

Order: everything derived first, the message item last, so a run that dies half-way is completed by running it
again (the message is still found by whoever found it the first time). Every step is idempotent; messages
already deleted (a GSI that lags behind) are left out and not counted.
Batched: S3 `DeleteObjects` takes at most 1,000 keys a request (S3 API reference, DeleteObjects); DynamoDB
`BatchWriteItem` 25 deletes a request (PynamoDB's `batch_write` splits and retries unprocessed items).
Nothing at the provider is touched.

Not here: the events, webhook deliveries and in-app notifications that name a message carry only ids (no
content, no address) and expire after 90 days (DynamoDB TTL); a purge deletes those of its mailbox
(`erasure/refs.py`).
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

from chalicelib import aws
from chalicelib.config import get_settings
from chalicelib.models.directory import DirectoryIndex
from chalicelib.models.message import Message
from chalicelib.models.pairing import AuditEntry, MessageLink, Signal
from chalicelib.pairing.store import thread_marker_keys
from chalicelib.threads import derived

S3_DELETE_KEYS = 1000                     # DeleteObjects: at most 1,000 keys per request
SIGNAL_STATUSES = ("open", "accepted", "dismissed", "undone")


class RawDeleteFailed(RuntimeError):
    """S3 refused to delete some raw objects (the caller retries; nothing else was deleted)."""


def delete_raw_objects(keys: Iterable[str]) -> int:
    """Delete S3 objects of the raw bucket in requests of ≤ 1,000 keys; returns how many were requested.
    Deleting a key that does not exist succeeds (S3 answers it as deleted)."""
    unique = list(dict.fromkeys(k for k in keys if k))
    bucket = get_settings().raw_bucket
    for start in range(0, len(unique), S3_DELETE_KEYS):
        chunk = unique[start:start + S3_DELETE_KEYS]
        answer = aws.s3().delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk],
                                                                "Quiet": True})
        if answer.get("Errors"):
            raise RawDeleteFailed(f"{len(answer['Errors'])} raw objects could not be deleted: "
                                  f"{answer['Errors'][0].get('Code')}")
    return len(unique)


def _signals_of(messages: Sequence[Message]) -> list[Signal]:
    """The signals of `messages` (one Query per mailbox and status, filtered on the message ids)."""
    found: list[Signal] = []
    by_mailbox: dict[tuple[str, str], set[str]] = {}
    for message in messages:
        by_mailbox.setdefault((message.tenant_id, message.mailbox_id), set()).add(message.message_id)
    for (tenant_id, mailbox_id), ids in by_mailbox.items():
        for status in SIGNAL_STATUSES:
            for signal in Signal.by_mailbox_status.query(f"{mailbox_id}#{status}"):
                if signal.message_id in ids and signal.tenant_id == tenant_id:
                    found.append(signal)
    return found


def still_stored(messages: Sequence[Message]) -> list[Message]:
    """The messages whose item still exists (consistent BatchGetItem, ≤ 100 keys a request): callers find
    messages through GSIs, which lag behind deletes (DynamoDB Developer Guide, "Global secondary indexes":
    eventually consistent), so a page may name messages already deleted."""
    ids = list(dict.fromkeys(m.message_id for m in messages))
    found: set[str] = set()
    for start in range(0, len(ids), 100):
        found.update(m.message_id for m in Message.batch_get(ids[start:start + 100], consistent_read=True,
                                                             attributes_to_get=["message_id"]))
    seen: set[str] = set()
    kept = []
    for message in messages:
        if message.message_id in found and message.message_id not in seen:
            seen.add(message.message_id)
            kept.append(message)
    return kept


def delete_messages(messages: Sequence[Message]) -> dict[str, int]:
    """Delete `messages` (full items, any mailboxes of one or more tenants) and what derives from them; returns
    counts by kind: messages, raw_objects, thread_keys, links, signals, audit_entries, index_entries."""
    counts: Counter = Counter()
    messages = still_stored(messages)
    if not messages:
        return {}
    counts["raw_objects"] = delete_raw_objects(m.raw_s3_key for m in messages)
    counts["thread_keys"] = derived.erase(messages)     # out of conversations and the search index
    links = [link for m in messages for link in MessageLink.query(m.message_id)]
    signals = _signals_of(messages)
    audit = [entry for m in messages for entry in AuditEntry.by_message.query(m.message_id)]
    markers = list(dict.fromkeys(key for m in messages for key in thread_marker_keys(m)))
    with MessageLink.batch_write() as batch:
        for link in links:
            batch.delete(link)
    with Signal.batch_write() as batch:
        for signal in signals:
            batch.delete(signal)
    with AuditEntry.batch_write() as batch:
        for entry in audit:
            batch.delete(AuditEntry(entry.tenant_id, entry.audit_id))
    with DirectoryIndex.batch_write() as batch:
        for key in markers:
            batch.delete(DirectoryIndex(key))
    with Message.batch_write() as batch:
        for message in messages:
            batch.delete(Message(message.message_id))
    counts.update(messages=len(messages), links=len(links), signals=len(signals), audit_entries=len(audit),
                  index_entries=len(markers))
    return dict(counts)


def add_counts(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    """`total` + `more`, key by key (progress records keep running totals)."""
    merged = Counter(total or {})
    merged.update(more or {})
    return dict(merged)
