"""Outbox items: one per accepted send (`POST /v1/mailboxes/{id}/send`), delivered by the outbox worker.

Keys: `tenant_id` + `outbox_id`. With an `Idempotency-Key` the id is derived from (tenant, caller, key)
(`outbox/service.py`), so a retried request finds the existing item instead of creating a second one.
The MIME to send is built once at acceptance and kept in S3 (`raw_s3_key`), so every attempt submits the same
bytes with the same Message-ID (`rfc_message_id`, recorded before the first attempt).

States: queued | scheduled (`send_at` in the future) → sending (one attempt holds `attempt_token`) → sent |
failed | cancelled; a transient failure goes back to queued with `next_attempt_at`.

`by_pending` (sparse: `pending_shard` is set only while queued/scheduled/sending, range `due_at` epoch
seconds): the renewer's sweep finds items whose delayed queue message was lost or whose attempt died.
"""
from __future__ import annotations

from pynamodb.attributes import BooleanAttribute, JSONAttribute, ListAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.indexes import GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from chalicelib.models.base import table_meta

PENDING_SHARD = "pending"


class OutboxPending(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_pending"
        projection = KeysOnlyProjection()

    pending_shard = UnicodeAttribute(hash_key=True)
    due_at = NumberAttribute(range_key=True)


class OutboxItem(Model):
    Meta = table_meta("outbox")

    tenant_id = UnicodeAttribute(hash_key=True)
    outbox_id = UnicodeAttribute(range_key=True)
    mailbox_id = UnicodeAttribute()
    created_by = UnicodeAttribute(null=True)        # X-User-Id of the caller (None: the tenant itself)
    via_share = BooleanAttribute(null=True)         # the caller could send through a share: re-checked when due
    request_sha256 = UnicodeAttribute()             # of the canonical request body (Idempotency-Key reuse)
    mode = UnicodeAttribute()                       # new | reply | reply_all | forward
    in_reply_to = UnicodeAttribute(null=True)       # stored message id of the original
    subject = UnicodeAttribute(null=True)
    sender = UnicodeAttribute()                     # envelope MAIL FROM
    recipients = ListAttribute(of=UnicodeAttribute)  # envelope RCPT TO (to + cc + bcc)
    thread = JSONAttribute(null=True)               # ThreadHint fields
    raw_s3_key = UnicodeAttribute()
    rfc_message_id = UnicodeAttribute()             # without <>
    status = UnicodeAttribute()
    send_at = UnicodeAttribute(null=True)
    due_at = NumberAttribute(null=True)             # epoch seconds of the next attempt
    pending_shard = UnicodeAttribute(null=True)
    attempts = NumberAttribute(default=0)
    attempt_token = UnicodeAttribute(null=True)
    attempt_started_at = NumberAttribute(null=True)
    last_error = JSONAttribute(null=True)           # {code, detail, at}
    provider_message_id = UnicodeAttribute(null=True)
    provider_thread_id = UnicodeAttribute(null=True)
    message_id = UnicodeAttribute(null=True)        # the stored sent copy (messages table)
    sent_at = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()

    by_pending = OutboxPending()
