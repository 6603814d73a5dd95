"""Accepting a send into the outbox, reading and cancelling outbox items (`POST /v1/mailboxes/{id}/send`).

Acceptance builds the MIME once (`compose.py`) and keeps it in S3, records its Message-ID on the item, and
enqueues an `outbox.send` job on the events queue (`delivery.py` delivers it). Nothing is sent in the request.

Idempotency (draft-ietf-httpapi-idempotency-key-header): with an `Idempotency-Key` the item id is
stable_id(tenant, caller, key) and the item is created with a conditional put, so a retried request — also
two concurrent ones — returns the one item; the same key with a different request body (or mailbox) is
refused with 422 (the draft's status for a reused key), never sent. A retry of a still-queued item re-enqueues
its job (a lost enqueue is repaired; a duplicate job is harmless, see `delivery.py`).

Scheduling: `send_at` up to 30 days ahead; SQS delays are at most 900 s, so the job is re-enqueued with the
remaining delay until due (`delivery.py`), and the renewer's sweep catches an item whose job was lost.
"""
from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timezone

from pynamodb.exceptions import PutError, UpdateError

from chalicelib import aws, ids
from chalicelib.config import get_settings
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.models.outbox import PENDING_SHARD, OutboxItem
from chalicelib.notify import queue
from chalicelib.outbox import compose
from chalicelib.outbox.errors import InvalidField, KeyReused, NotCancellable, TooLarge
from chalicelib.outbox.limits import MAX_ATTACHMENT_BYTES, MAX_MESSAGE_BYTES, MAX_RECIPIENTS, MAX_SCHEDULE_AHEAD
from chalicelib.security.sanitize import sanitize_html
from chalicelib.sync import attachments as stored_attachments
from chalicelib.sync import store
from chalicelib.timeutil import now_iso

JOB_KIND = "outbox.send"
CANCELLABLE = ("queued", "scheduled")


def request_digest(mailbox_id: str, body: dict) -> str:
    canonical = json.dumps({"mailbox_id": mailbox_id, "body": body}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def outbox_id_for(tenant_id: str, user_id: str | None, idempotency_key: str | None) -> str:
    if not idempotency_key:
        return ids.new_id("obx")
    return ids.stable_id("obx", tenant_id, user_id or "", idempotency_key)


def get_item(tenant_id: str, outbox_id: str) -> OutboxItem | None:
    try:
        return OutboxItem.get(tenant_id, outbox_id, consistent_read=True)
    except OutboxItem.DoesNotExist:
        return None


def enqueue(item: OutboxItem, now: float | None = None) -> None:
    now = time.time() if now is None else now
    queue.send({"kind": JOB_KIND, "tenant_id": item.tenant_id, "outbox_id": item.outbox_id},
               max(0.0, (item.due_at or now) - now))


def _recipients(items) -> tuple[compose.Recipient, ...]:
    return tuple(compose.Recipient(r["email"] if isinstance(r, dict) else r.email,
                                   (r.get("name") if isinstance(r, dict) else r.name) or None) for r in items or ())


def _one(value) -> compose.Recipient | None:
    found = _recipients([value]) if isinstance(value, dict) and value.get("email") else ()
    return found[0] if found else None


def load_original(mailbox: Mailbox, message: Message, *, with_attachments: bool) -> compose.Original:
    """What a reply or forward takes from the stored original (bodies re-parsed from its raw object)."""
    parsed = store.load_parsed(message) if message.raw_s3_key else None
    attachments: list[compose.Attachment] = []
    if with_attachments:
        for listed in message.attachments or []:
            content = stored_attachments.read_attachment(message, int(listed.get("index", -1)))
            if content is not None:
                attachments.append(compose.Attachment(content.filename or f"attachment-{listed.get('index')}",
                                                      content.content_type, content.data))
    provider_id = message.provider_id or ""
    return compose.Original(
        rfc_message_id=message.rfc_message_id, references=tuple(message.references or ()),
        in_reply_to=message.in_reply_to, subject=message.subject, sender=_one(message.from_addr),
        reply_to=_recipients(message.reply_to), to=_recipients(message.to), cc=_recipients(message.cc),
        date=message.date, text=parsed.text if parsed else None,
        html=sanitize_html(parsed.html) if parsed and parsed.html else None,
        provider_thread_id=message.thread_id,
        provider_message_id=None if provider_id.startswith(store.OUTBOX_PROVIDER_PREFIX) else provider_id or None,
        attachments=tuple(attachments))


def _schedule(send_at: datetime | None, now: datetime) -> tuple[str, float, str | None]:
    if send_at is None or send_at <= now:
        return "queued", now.timestamp(), None
    if send_at - now > MAX_SCHEDULE_AHEAD:
        raise InvalidField("send_at", "at most 30 days ahead")
    at = send_at.astimezone(timezone.utc)
    return "scheduled", at.timestamp(), at.strftime("%Y-%m-%dT%H:%M:%SZ")


def accept(mailbox: Mailbox, user_id: str | None, body, original: Message | None,
           idempotency_key: str | None, *, via_share: bool = False) -> tuple[OutboxItem, bool]:
    """(item, created). `body` is a validated `SendRequest`; `original` the visible stored message for
    reply/forward modes; `via_share`: the caller may send through a mailbox share, which is checked again
    when the item goes out (`delivery.may_still_send`). Raises InvalidField / TooLarge / KeyReused."""
    digest = request_digest(mailbox.mailbox_id, body.model_dump(mode="json"))
    outbox_id = outbox_id_for(mailbox.tenant_id, user_id, idempotency_key)
    if idempotency_key:
        existing = get_item(mailbox.tenant_id, outbox_id)
        if existing is not None:
            return _replayed(existing, digest), False
    now = datetime.now(timezone.utc)
    status, due_at, send_at = _schedule(body.send_at, now)
    new_files = [compose.Attachment(a.filename, a.content_type, a.data()) for a in body.attachments]
    if sum(len(a.data) for a in new_files) > MAX_ATTACHMENT_BYTES:
        raise TooLarge("attachments", f"at most {MAX_ATTACHMENT_BYTES} bytes of attachments (decoded) per message")
    source = None
    if original is not None:
        if original.mailbox_id != mailbox.mailbox_id:
            raise InvalidField("in_reply_to", "must be a message of this mailbox")
        source = load_original(mailbox, original, with_attachments=body.mode == "forward")
    draft = compose.Draft(mode=body.mode, to=_recipients(body.to), cc=_recipients(body.cc),
                          bcc=_recipients(body.bcc), subject=body.subject, text=body.text, html=body.html,
                          attachments=tuple(new_files))
    sender = compose.Sender(mailbox.email, mailbox.sender_name, mailbox.signature_html,
                            bool(mailbox.signature_on_replies))
    composed = compose.compose(sender, draft, source, now=now)
    if not composed.recipients:
        raise InvalidField("to", "the original names no one to reply to; give to")
    if len(composed.recipients) > MAX_RECIPIENTS:
        raise InvalidField("to", f"at most {MAX_RECIPIENTS} recipients (to + cc + bcc together)")
    if len(composed.raw) > MAX_MESSAGE_BYTES:
        raise TooLarge("attachments", f"the message would exceed {MAX_MESSAGE_BYTES} bytes")
    key = (f"outbox/{mailbox.tenant_id}/{mailbox.mailbox_id}/{outbox_id}-"
           f"{hashlib.sha256(composed.raw).hexdigest()[:16]}.eml")
    aws.s3().put_object(Bucket=get_settings().raw_bucket, Key=key, Body=composed.raw,
                        ContentType="message/rfc822", ServerSideEncryption="AES256")
    stamp = now_iso()
    item = OutboxItem(
        mailbox.tenant_id, outbox_id, mailbox_id=mailbox.mailbox_id, created_by=user_id,
        via_share=True if via_share and user_id else None, request_sha256=digest,
        mode=body.mode, in_reply_to=body.in_reply_to, subject=composed.subject, sender=composed.sender,
        recipients=list(composed.recipients),
        thread={"mode": composed.thread.mode, "in_reply_to": composed.thread.in_reply_to,
                "references": list(composed.thread.references),
                "provider_thread_id": composed.thread.provider_thread_id,
                "provider_message_id": composed.thread.provider_message_id},
        raw_s3_key=key, rfc_message_id=composed.rfc_message_id, status=status, send_at=send_at, due_at=due_at,
        pending_shard=PENDING_SHARD, attempts=0, created_at=stamp, updated_at=stamp)
    try:
        item.save(condition=OutboxItem.outbox_id.does_not_exist())
    except PutError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
        existing = get_item(mailbox.tenant_id, outbox_id)       # a concurrent request with the same key won
        aws.s3().delete_object(Bucket=get_settings().raw_bucket, Key=key)
        assert existing is not None
        return _replayed(existing, digest), False
    enqueue(item)
    return item, True


def _replayed(existing: OutboxItem, digest: str) -> OutboxItem:
    if existing.request_sha256 != digest:
        raise KeyReused("This Idempotency-Key was used for a different request.")
    if existing.status in CANCELLABLE and (existing.due_at or 0) <= time.time():
        enqueue(existing)        # repairs a lost enqueue; a duplicate job finds the item taken or done
    return existing


def cancel(item: OutboxItem) -> OutboxItem:
    """queued/scheduled → cancelled (conditional, so an attempt that just took the item wins)."""
    try:
        item.update(actions=[OutboxItem.status.set("cancelled"), OutboxItem.pending_shard.remove(),
                             OutboxItem.due_at.remove(), OutboxItem.updated_at.set(now_iso())],
                    condition=OutboxItem.status.is_in(*CANCELLABLE))
    except UpdateError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
        current = get_item(item.tenant_id, item.outbox_id)
        raise NotCancellable(f"The item is {current.status if current else 'gone'}; only queued or scheduled "
                             "items can be cancelled.") from None
    return item
