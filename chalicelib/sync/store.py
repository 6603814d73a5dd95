"""The message store the sync worker writes through: raw MIME to S3, metadata to the `Message` table.

Idempotency (a redelivered job, a retried page, a UIDVALIDITY resync all re-deliver the same mail):

    1. message_id = stable_id("msg", tenant, mailbox, folder, "sha256:<raw digest>")   (a skipped message,
       which has no bytes: "provider:<provider id>"). The key is the CONTENT, never the Message-ID: two
       different messages with one Message-ID (a forged or careless sender) are two messages, and a raw object
       is never overwritten with other bytes. Message-ID stays on the item for threads and cross-mailbox
       identity. Mailboxes created before content keys (`Mailbox.store_keys` unset) stored messages under
       their Message-ID; the same bytes found under that legacy id are that message. So is a message the
       provider says another role folder holds too (`MessageRef.also_in`: Gmail's mail to self, INBOX and
       SENT on ONE message) found under its key there (`twin_keys`): a folder synced later never stores it twice.
    2. PUT raw/<tenant>/<mailbox>/<message_id>.eml — same key, same bytes, so a repeat is harmless
    3. PUT item IF message_id does not exist, in one transaction with a ConditionCheck that the tenant's erasure
       count is still the one read with the privacy lists (`privacy.lists.check_erasures`)
       → exists: UPDATE provider_id/provider_key (the new UID), and a message marked removed at the source is
         back (its mark cleared, `removed_count` lowered, `clear_removed_mark`); created=False
       → the count moved (an erasure was requested since the lists were read, and its job may already have
         read this mailbox): the lists are read again; a message they now refuse has its raw object deleted and
         is not stored (`insert_one`), else step 3 is retried.

A crash between 2 and 3 leaves an orphan-free state: the retry rewrites the same object and then the item.
What the CRM has stored is never overwritten (links, hidden, pairing state survive a redelivery).
Every path that creates a `Message` item goes through step 3 (`save_fetched`, the page store's one-by-one
fallback, the outbox's `save_sent`) or the page store's insert transaction, which carries the same check;
the others only update items that exist (`refresh_ref`, `clear_removed_mark`, `mark_removed`), so an item the
erasure deleted is never written back.
Cost per new message: one S3 PUT and one TransactWriteItems of two actions (the put and the ConditionCheck);
bodies are derived on read (`load_parsed`).
The sync engine stores whole pages through `store_page.py` (same keys, batched calls, counts in the insert
transaction); this module is the one-message path and the parts both share (`prepare`, `use_id`, `put_raw`).
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable, Sequence

from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from chalicelib import aws, ids
from chalicelib.config import get_settings
from chalicelib.erasure.delete import delete_raw_objects
from chalicelib.logs import logger
from chalicelib.models.base import transaction_connection
from chalicelib.models.conflicts import cancelled, retry_conflicts, transact
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message, raw_key
from chalicelib.privacy.lists import NEVER_IMPORT as NEVER_IMPORT  # re-exported: the reason's name here
from chalicelib.privacy.lists import (ErasuresMoved, MailboxLists, check_erasures, erased_refusal, lists_for,
                                      refusal)
from chalicelib.providers.base import FetchedMessage, MessageRef
from chalicelib.sync.mime import ParsedMessage, parse_message
from chalicelib.threads import derived, identity
from chalicelib.timeutil import isoformat, now_iso

CONTENT_KEYS = "content"                        # Mailbox.store_keys of mailboxes keyed by content only
OWED_IMPORTED = ["pair", "announce", "count"]   # what a new message owes (sync/effects.py pays it)
OWED_SKIPPED = ["count"]

RAW_CONTENT_TYPE = "message/rfc822"
SENT_FOLDER = "sent"
OUTBOX_PROVIDER_PREFIX = "outbox:"      # provider id of a sent copy the provider did not identify (Graph)
HEADER_PEEK_BYTES = 256 * 1024


@dataclass(frozen=True)
class SaveOutcome:
    message: Message
    created: bool
    debt: str | None = None     # the page debt (sync/effects.py) that records what this new message owes
    refused: bool = False       # not stored (`refuse`): `message` is the unsaved item, its reason `skipped_reason`


def provider_key(mailbox_id: str, folder: str, provider_id: str) -> str:
    return f"{mailbox_id}#{folder}#{provider_id}"


def direction_of(mailbox: Mailbox, folder: str, from_addr: dict | None) -> str:
    """Outbound when stored from the Sent folder or sent by the mailbox's own address."""
    sender = ((from_addr or {}).get("email") or "").strip().lower()
    if folder == "sent" or (sender and sender == (mailbox.email or "").strip().lower()):
        return "outbound"
    return "inbound"


def _header_block(raw: bytes) -> bytes:
    """The header section of an over-size message (parsed for subject/from/date; the body is not kept)."""
    head = raw[:HEADER_PEEK_BYTES]
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = head.find(separator)
        if end >= 0:
            return head[:end + len(separator)]
    return head


def _build_item(mailbox: Mailbox, fetched: FetchedMessage, message_id: str, parsed: ParsedMessage,
                **extra) -> Message:
    folder, ref = fetched.ref.folder, fetched.ref
    imported_at = now_iso()
    errors = list(parsed.parse_errors)
    date = parsed.date
    if date is None:
        date = imported_at
        errors.append("date: using import time")
    rfc_id = parsed.rfc_message_id
    item = Message(
        message_id, tenant_id=mailbox.tenant_id, mailbox_id=mailbox.mailbox_id, folder=folder,
        mailbox_folder=f"{mailbox.mailbox_id}#{folder}", date_key=f"{date}#{message_id}",
        direction=direction_of(mailbox, folder, parsed.from_addr), provider_id=ref.provider_id,
        provider_key=provider_key(mailbox.mailbox_id, folder, ref.provider_id), thread_id=ref.thread_id,
        rfc_message_id=rfc_id,
        in_reply_to=parsed.in_reply_to, references=list(parsed.references), subject=parsed.subject,
        from_addr=parsed.from_addr, to=parsed.to, cc=parsed.cc, bcc=parsed.bcc, reply_to=parsed.reply_to,
        sender=parsed.sender,
        date=date, has_attachments=parsed.has_attachments, attachments=parsed.attachments,
        headers=parsed.headers, snippet=parsed.snippet or None, parse_errors=errors, hidden=False, link_count=0,
        imported_at=imported_at, unread=None if ref.seen is None else not ref.seen, **extra)
    item.conversation_id = identity.initial_id(mailbox.tenant_id, item)   # settled in the notifier (threads/)
    return item


def _insert_or_refresh(item: Message, provider_id: str, provider_ref: str, erasures: int | None) -> SaveOutcome:
    """Create the item, conditioned on it being absent AND on the tenant's erasure count still being
    `erasures` (`lists.check_erasures`), in one transaction; an item already there gets its provider reference
    refreshed (`refresh_ref`). Raises ErasuresMoved when only the count moved: nothing was written."""
    def commit() -> None:
        with TransactWrite(connection=transaction_connection()) as transaction:
            check_erasures(transaction, item.tenant_id, erasures)
            transaction.save(item, condition=Message.message_id.does_not_exist())

    try:
        retry_conflicts(commit)     # the tenant's privacy item, checked by every insert of the tenant's mailboxes
        return SaveOutcome(item, True)
    except TransactWriteError as exc:
        codes = [getattr(reason, "code", None) if reason is not None else None
                 for reason in (getattr(exc, "cancellation_reasons", None) or [])]
        # the ConditionCheck first, then the put (Connection.transact_write_items)
        if len(codes) != 2 or "ConditionalCheckFailed" not in codes:
            raise
        if codes[1] != "ConditionalCheckFailed":
            raise ErasuresMoved(item.tenant_id) from None
    return refresh_ref(item, provider_id, provider_ref)


def insert_one(mailbox: Mailbox, prepared: Prepared, lists: MailboxLists, lease_owner: str | None = None,
               refused_by: Callable[[Message, MailboxLists], str | None] = refusal) -> SaveOutcome:
    """Store one prepared message whose raw object is PUT (`_insert_or_refresh` with the erasure count of
    `lists`). When an erasure was requested since `lists` were read, they are read again: a message they now
    refuse (`refused_by`) has its raw object deleted and is refused (`refuse`); else the insert is retried with
    the new count. Each retry means another erasure committed meanwhile, so the loop ends."""
    item = prepared.item
    while True:
        try:
            return _insert_or_refresh(item, item.provider_id, item.provider_key, lists.erasures)
        except ErasuresMoved:
            lists = lists_for(mailbox)
        reason = refused_by(item, lists)
        if reason is not None:
            if prepared.raw is not None:
                delete_raw_objects([item.raw_s3_key])
            logger.info("erasure requested while storing a message; refused", extra={"message_id": item.message_id})
            return refuse(mailbox, [(prepared, reason)], lease_owner)[0]


def refresh_ref(stored: Message, provider_id: str, provider_ref: str) -> SaveOutcome:
    """Already stored (redelivery / retried page / resync): only the provider reference moves. The answer
    (ALL_NEW) carries what the message still owes (`owed`), so the caller completes an interrupted store.
    `stored` names the message (its id, tenant and mailbox). A message marked removed at the source that the
    provider has again is back: its mark is cleared with the mailbox's `removed_count` lowered
    (`clear_removed_mark`) and it rejoins its conversation and the search index."""
    moves = [Message.provider_id.set(provider_id), Message.provider_key.set(provider_ref)]
    existing = Message(stored.message_id)
    try:
        existing.update(actions=moves, condition=Message.message_id.exists()
                        & Message.removed_at_source.does_not_exist())
        return SaveOutcome(existing, False)
    except UpdateError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
    if clear_removed_mark(stored.message_id, stored.tenant_id, stored.mailbox_id, moves):
        derived.remember(stored.tenant_id, [stored.message_id])
        return SaveOutcome(Message.get(stored.message_id, consistent_read=True), False)
    existing.update(actions=moves, condition=Message.message_id.exists())   # a missing item raises UpdateError
    return SaveOutcome(existing, False)


def clear_removed_mark(message_id: str, tenant_id: str, mailbox_id: str, actions: Sequence[Action] = ()) -> bool:
    """Clear a message's `removed_at_source` (with `actions`) and lower its mailbox's `removed_count` by one,
    in ONE transaction conditioned on the mark being set — all-or-nothing (DynamoDB Developer Guide, "Amazon
    DynamoDB Transactions"), so `removed_count` stays the number of messages marked removed however often a
    removal or a return is replayed (`mark_removed` raises it the same way). False when the mark was not set
    any more (a concurrent or replayed return) or the message or mailbox is gone: nothing was written. A
    conflict with another transaction on the mailbox item is no such answer: it is sent again (`retry_conflicts`)."""
    def build(transaction: TransactWrite) -> None:
        transaction.update(Message(message_id), actions=[*actions, Message.removed_at_source.remove()],
                           condition=Message.removed_at_source.exists())
        transaction.update(Mailbox(tenant_id, mailbox_id), actions=[Mailbox.removed_count.add(-1)],
                           condition=Mailbox.mailbox_id.exists())

    return transact(build)


def _legacy_twin(mailbox: Mailbox, folder: str, rfc_message_id: str | None, digest: str) -> str | None:
    """The id of this very message (same bytes) stored under the Message-ID key of older mailboxes."""
    if mailbox.store_keys == CONTENT_KEYS or not rfc_message_id:
        return None
    legacy_id = ids.stable_id("msg", mailbox.tenant_id, mailbox.mailbox_id, folder, rfc_message_id)
    try:
        stored = Message.get(legacy_id, attributes_to_get=["message_id", "raw_sha256"])
    except Message.DoesNotExist:
        return None
    return legacy_id if stored.raw_sha256 == digest else None


def sent_copy_id(mailbox: Mailbox, rfc_message_id: str) -> str:
    """The id of the copy of a message this service sent (chalicelib/outbox) from `mailbox`: keyed by the
    fresh Message-ID the outbox generated, because the provider's own copy in Sent may differ in bytes (Gmail
    and Graph add headers), so a content key could not find it."""
    return ids.stable_id("msg", mailbox.tenant_id, mailbox.mailbox_id, SENT_FOLDER, "sent:" + rfc_message_id)


def _sent_twin(mailbox: Mailbox, candidate: str | None) -> str | None:
    """A message the sync finds in Sent (or labelled SENT too, `MessageRef.also_in`) that the outbox already
    stored (`Prepared.sent_id`: same Message-ID, same mailbox): that item, so the next sync only refreshes its
    provider id instead of storing it twice."""
    if not candidate:
        return None
    try:
        Message.get(candidate, attributes_to_get=["message_id"])
    except Message.DoesNotExist:
        return None
    return candidate


SYNCED_COPY_WINDOW = 900      # seconds around the attempt in which a provider may date its own copy


def synced_copy(mailbox: Mailbox, rfc_message_id: str, date: str | None, attempted_at: float | None) -> Message | None:
    """Sent's copy of a message the outbox sent, when a sync stored it BEFORE the outbox stored its own (a
    push-triggered sync right after the provider accepted it; an attempt that died, or whose outcome was
    unknown, recovered later): same mailbox, folder "sent", same Message-ID. Searched by date in the
    by_mailbox_folder index — the Date header the outbox wrote (kept by SMTP, IMAP APPEND and Gmail) and the
    attempt's time ± `SYNCED_COPY_WINDOW` (a provider that dates its copy when it sends it)."""
    own = sent_copy_id(mailbox, rfc_message_id)
    ranges = [(f"{date}#", f"{date}#~")] if date else []
    if attempted_at:
        ranges.append((isoformat(datetime.fromtimestamp(attempted_at - SYNCED_COPY_WINDOW, timezone.utc)),
                       isoformat(datetime.fromtimestamp(attempted_at + SYNCED_COPY_WINDOW, timezone.utc)) + "~"))
    for low, high in ranges:
        for found in Message.by_mailbox_folder.query(f"{mailbox.mailbox_id}#{SENT_FOLDER}",
                                                     Message.date_key.between(low, high),
                                                     filter_condition=Message.rfc_message_id == rfc_message_id):
            if found.message_id != own:
                return found
    return None


def save_sent(mailbox: Mailbox, raw: bytes, *, rfc_message_id: str, provider_id: str,
              thread_id: str | None = None, attempted_at: float | None = None) -> SaveOutcome:
    """Store the copy of a message the outbox just sent, in "sent" under `sent_copy_id` (idempotent like
    `save_fetched`: a repeat refreshes the provider id). It owes the same effects as an imported message.
    When a sync already stored Sent's copy (`synced_copy`), that message is the one: nothing is stored twice.
    Never-import lists do not apply to it (docs/api.md); an erasure does (`lists.erased_refusal`): a copy
    naming a person erased while the message was being sent — dated at acceptance, before the erasure — is
    refused (`refused=True`, counted as skipped), with the same erasure check as every insert (`insert_one`).
    The raw object carries the tenant's retention tag like synced mail."""
    message_id = sent_copy_id(mailbox, rfc_message_id)
    parsed = parse_message(raw)
    try:
        Message.get(message_id, attributes_to_get=["message_id"])
    except Message.DoesNotExist:
        synced = synced_copy(mailbox, rfc_message_id, parsed.date, attempted_at)
        if synced is not None:
            return SaveOutcome(synced, False)
    fetched = FetchedMessage(ref=MessageRef(SENT_FOLDER, provider_id, size=len(raw), thread_id=thread_id), raw=raw)
    item = _build_item(mailbox, fetched, message_id, parsed, raw_s3_key=raw_key(mailbox.tenant_id,
                       mailbox.mailbox_id, message_id), raw_sha256=hashlib.sha256(raw).hexdigest(), size=len(raw))
    item.owed, item.owed_mailbox = list(OWED_IMPORTED), mailbox.mailbox_id
    prepared = Prepared(item, raw)
    lists = lists_for(mailbox)
    reason = erased_refusal(item, lists)
    if reason is not None:
        return refuse(mailbox, [(prepared, reason)])[0]
    put_raw(prepared, lists.raw_tagging)
    return insert_one(mailbox, prepared, lists, refused_by=erased_refusal)


@dataclass
class Prepared:
    """A fetched message made ready to store: its item (owing what a new message owes) and the raw bytes to
    PUT (None for a skipped message, which has no raw object)."""
    item: Message
    raw: bytes | None
    legacy_id: str | None = None      # the Message-ID key of older mailboxes that may hold these very bytes
    sent_id: str | None = None        # in Sent: the key of the copy the outbox stored when it sent this message
    folder_twins: tuple[str, ...] = ()    # its keys in the other folders holding this very message (`twin_keys`)


def prepare(mailbox: Mailbox, fetched: FetchedMessage) -> Prepared:
    """Parse and key one fetched message (no I/O)."""
    settings = get_settings()
    ref = fetched.ref
    raw = fetched.raw
    skipped_reason = fetched.skipped_reason
    if raw is not None and len(raw) > settings.max_message_bytes:
        skipped_reason = f"too_large: {len(raw)} bytes > {settings.max_message_bytes}"
    if raw is None or skipped_reason:
        parsed = parse_message(_header_block(raw)) if raw else ParsedMessage()
        message_id = ids.stable_id("msg", mailbox.tenant_id, mailbox.mailbox_id, ref.folder,
                                   "provider:" + ref.provider_id)
        item = _build_item(mailbox, fetched, message_id, parsed, skipped_reason=skipped_reason or "no_content",
                           size=len(raw) if raw else (ref.size or 0))
        item.has_attachments, item.attachments = False, []
        prepared = Prepared(item, None, folder_twins=twin_keys(mailbox, ref, "provider:" + ref.provider_id))
    else:
        digest = hashlib.sha256(raw).hexdigest()
        parsed = parse_message(raw)
        message_id = ids.stable_id("msg", mailbox.tenant_id, mailbox.mailbox_id, ref.folder, f"sha256:{digest}")
        legacy_id = None
        if mailbox.store_keys != CONTENT_KEYS and parsed.rfc_message_id:
            legacy_id = ids.stable_id("msg", mailbox.tenant_id, mailbox.mailbox_id, ref.folder,
                                      parsed.rfc_message_id)
        item = _build_item(mailbox, fetched, message_id, parsed, raw_sha256=digest, size=len(raw))
        sent_id = sent_copy_id(mailbox, parsed.rfc_message_id) if (
            SENT_FOLDER in (ref.folder, *ref.also_in) and parsed.rfc_message_id) else None
        prepared = Prepared(item, raw, legacy_id, sent_id,
                            twin_keys(mailbox, ref, f"sha256:{digest}", parsed.rfc_message_id))
    item.owed = list(OWED_SKIPPED if item.skipped_reason else OWED_IMPORTED)
    item.owed_mailbox = mailbox.mailbox_id
    return prepared


def twin_keys(mailbox: Mailbox, ref: MessageRef, content: str, rfc_message_id: str | None = None) -> tuple[str, ...]:
    """The keys this very message would have in the other folders that hold it (`MessageRef.also_in`: Gmail's
    mail to self is ONE message labelled INBOX and SENT, the same id and bytes under both): its content key
    there and, for mailboxes older than content keys, its Message-ID key there. A message stored under one of
    them with the same bytes (`raw_sha256`, `is_twin`) is this message: a folder synced later (or again)
    refreshes its provider reference instead of storing it twice, as when both were synced from the start."""
    keys = [ids.stable_id("msg", mailbox.tenant_id, mailbox.mailbox_id, folder, content) for folder in ref.also_in]
    if mailbox.store_keys != CONTENT_KEYS and rfc_message_id:
        keys += [ids.stable_id("msg", mailbox.tenant_id, mailbox.mailbox_id, folder, rfc_message_id)
                 for folder in ref.also_in]
    return tuple(keys)


def is_twin(prepared: Prepared, stored: Message) -> bool:
    """Whether `stored` (found under one of `prepared.folder_twins`) holds the same bytes (both skipped: none)."""
    return stored.raw_sha256 == prepared.item.raw_sha256


def _folder_twin(prepared: Prepared) -> str | None:
    for key in prepared.folder_twins:
        try:
            if is_twin(prepared, Message.get(key, attributes_to_get=["message_id", "raw_sha256"])):
                return key
        except Message.DoesNotExist:
            continue
    return None


def use_id(prepared: Prepared, message_id: str) -> None:
    """Key the prepared item (and its raw object) under `message_id` (the content key or a legacy twin)."""
    item = prepared.item
    item.message_id = message_id
    item.date_key = f"{item.date}#{message_id}"
    if prepared.raw is not None:
        item.raw_s3_key = raw_key(item.tenant_id, item.mailbox_id, message_id)


def put_raw(prepared: Prepared, tagging: str | None = None) -> None:
    """PUT the raw object (same key, same bytes: a repeat is harmless); `tagging` is the tenant's retention
    tag (`privacy.lists.MailboxLists.raw_tagging`) for the bucket's lifecycle rules."""
    if prepared.raw is None:
        return
    extra = {"Tagging": tagging} if tagging else {}
    aws.s3().put_object(Bucket=get_settings().raw_bucket, Key=prepared.item.raw_s3_key, Body=prepared.raw,
                        ContentType=RAW_CONTENT_TYPE, ServerSideEncryption="AES256", **extra)


def refuse(mailbox: Mailbox, refused: list[tuple[Prepared, str]],
           lease_owner: str | None = None) -> list[SaveOutcome]:
    """Messages the store must not store, each with its reason (`privacy.lists.refusal`: a never-import list
    names it, it names an erased person, it is past the retention period): nothing is stored (no raw object, no
    item); each counts once more in the mailbox's `skipped_count` (a replayed page counts them again). The
    outcomes carry the unsaved items, marked skipped with the reason and owing nothing."""
    if not refused:
        return []
    condition = Mailbox.mailbox_id.exists()
    if lease_owner is not None:
        condition = condition & (Mailbox.lease_owner == lease_owner)
    Mailbox(mailbox.tenant_id, mailbox.mailbox_id).update(actions=[Mailbox.skipped_count.add(len(refused))],
                                                          condition=condition)
    for prepared, reason in refused:
        prepared.item.skipped_reason, prepared.item.owed, prepared.item.owed_mailbox = reason, None, None
    return [SaveOutcome(prepared.item, True, refused=True) for prepared, _ in refused]


def save_fetched(mailbox: Mailbox, fetched: FetchedMessage) -> SaveOutcome:
    """Store one fetched message (idempotent; see the module docstring). The sync engine stores whole pages
    through `sync/store_page.py`; this is the one-message path (and the page path's fallback)."""
    prepared = prepare(mailbox, fetched)
    lists = lists_for(mailbox)
    reason = refusal(prepared.item, lists)
    if reason is not None:
        return refuse(mailbox, [(prepared, reason)])[0]
    ref, item = fetched.ref, prepared.item
    twin = (_legacy_twin(mailbox, ref.folder, item.rfc_message_id, item.raw_sha256)
            or _sent_twin(mailbox, prepared.sent_id)) if prepared.raw else None
    use_id(prepared, twin or _folder_twin(prepared) or item.message_id)
    put_raw(prepared, lists.raw_tagging)
    outcome = insert_one(mailbox, prepared, lists)
    if not outcome.created:
        logger.info("message already stored", extra={"message_id": item.message_id, "provider_id": ref.provider_id})
    return outcome


def stored_provider_ids(mailbox: Mailbox, folder: str, provider_ids: Iterable[str]) -> set[str]:
    """Which of `provider_ids` the store already holds for this folder (one `by_provider_ref` query each;
    keys-only). Used for `ChangeSet.changed` refs, which providers re-list for known messages."""
    return set(stored_message_ids(mailbox, folder, provider_ids))


def stored_message_ids(mailbox: Mailbox, folder: str, provider_ids: Iterable[str]) -> dict[str, str]:
    """{provider id: message id} for the `provider_ids` the store holds in this folder (one keys-only
    `by_provider_ref` query each): what a read-state change (`threads/unread.py`) is applied to."""
    found: dict[str, str] = {}
    for provider_id in provider_ids:
        ref = provider_key(mailbox.mailbox_id, folder, provider_id)
        hit = next(iter(Message.by_provider_ref.query(ref, limit=1)), None)
        if hit is not None:
            found[provider_id] = hit.message_id
    return found


def mark_removed(mailbox: Mailbox, folder: str, provider_ids: Iterable[str]) -> int:
    """Mark messages the provider no longer has (`removed_at_source`); they stay in the CRM but leave their
    conversation and the search index.
    Returns how many were newly marked. Each mark is one transaction with the mailbox's `removed_count`, and
    re-checks `provider_key` because the GSI is eventually consistent and a resync may have moved the item to
    a new provider id — so a replayed removal neither marks nor counts twice. A conflict (another transaction on
    the mailbox or the message) is sent again (`retry_conflicts`), never read as "marked already"."""
    removed_at = now_iso()
    count = 0

    def commit(message_id: str, ref: str) -> None:
        with TransactWrite(connection=transaction_connection()) as transaction:
            transaction.update(Message(message_id), actions=[Message.removed_at_source.set(removed_at)],
                               condition=(Message.provider_key == ref) & Message.removed_at_source.does_not_exist())
            transaction.update(Mailbox(mailbox.tenant_id, mailbox.mailbox_id), actions=[Mailbox.removed_count.add(1)],
                               condition=Mailbox.mailbox_id.exists())

    for provider_id in provider_ids:
        ref = provider_key(mailbox.mailbox_id, folder, provider_id)
        for hit in Message.by_provider_ref.query(ref):
            try:
                retry_conflicts(functools.partial(commit, hit.message_id, ref))
                count += 1
            except TransactWriteError as exc:
                if not cancelled(exc):
                    raise
                continue
            _forget_derived(hit.message_id)
    return count


def restore_removed(mailbox: Mailbox, message_ids: Iterable[str]) -> int:
    """Messages the provider lists in their folder again after they were marked `removed_at_source` are back:
    Gmail re-labels an untrashed or re-inboxed message (history `labelsAdded` with the folder's label,
    developers.google.com/gmail/api/guides/sync), Graph's folder delta re-lists a message moved back — its
    immutable id unchanged ("Get immutable identifiers for Outlook resources", "Get incremental changes to
    messages in a folder"). Both reach the engine as known `ChangeSet.changed` refs, which it never fetches.

    One consistent BatchGetItem per 100 ids (a small projection); only the removed ones are written: the mark
    cleared conditioned on it still being set, with `removed_count` lowered (`clear_removed_mark`: a replayed
    page restores and counts nothing twice), then the message
    rejoins its conversation and the search index (`threads.derived.remember`, idempotent). A crash between
    the two leaves a message unmarked but out of its conversation; the replayed page finds it so (no
    `conversation_id`, not hidden) and rejoins it then. Returns how many came back."""
    wanted = list(dict.fromkeys(message_ids))
    back: list[str] = []
    rejoin: list[str] = []
    for start in range(0, len(wanted), 100):
        for hit in Message.batch_get(wanted[start:start + 100], consistent_read=True,
                                     attributes_to_get=["message_id", "tenant_id", "removed_at_source",
                                                        "conversation_id", "hidden"]):
            if hit.tenant_id != mailbox.tenant_id:
                continue
            if hit.removed_at_source is None:
                if not hit.conversation_id and not hit.hidden:
                    rejoin.append(hit.message_id)
                continue
            if clear_removed_mark(hit.message_id, mailbox.tenant_id, mailbox.mailbox_id):
                back.append(hit.message_id)
    if back or rejoin:
        derived.remember(mailbox.tenant_id, back + rejoin)
    if back:
        logger.info("messages back at the source", extra={"messages": len(back)})
    return len(back)


def _forget_derived(message_id: str) -> None:
    """A message removed at the source leaves its conversation and the search index (`threads.derived`);
    a failure is logged: its postings are filtered out at query time anyway (`removed_at_source`)."""
    try:
        derived.forget([Message.get(message_id, consistent_read=True)])
    except Exception:  # noqa: BLE001 - the removal itself is recorded; derived items are best effort here
        logger.exception("forgetting a removed message's thread and index entries failed",
                         extra={"message_id": message_id})


def load_raw(message: Message) -> bytes:
    """The stored raw MIME (b"" for a skipped message, which has no raw object)."""
    if not message.raw_s3_key:
        return b""
    response = aws.s3().get_object(Bucket=get_settings().raw_bucket, Key=message.raw_s3_key)
    return response["Body"].read()


def load_parsed(message: Message) -> ParsedMessage:
    """Re-parse the raw object: text/html bodies and attachments are derived on read, not stored."""
    return parse_message(load_raw(message))
