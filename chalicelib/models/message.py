"""Stored messages: metadata in DynamoDB, raw MIME in S3 (one object per message, key in `raw_s3_key`).

`message_id` is derived from the natural key (tenant, mailbox, folder, dedupe key = RFC Message-ID, else the
SHA-256 of the raw bytes), so a redelivered job, a retried page or a UIDVALIDITY resync writes the same item
and never a duplicate. `date_key = "<ISO date>#<message_id>"` orders listings newest first.

Item size is what a write costs: 1 WRU per started KB of the item, in the table and again in every index that
projects it whole ("Item sizes and formats", DynamoDB Developer Guide; "Global secondary indexes: writes"), and
an imported message is written twice (created, then counted in its thread). So an item carries no attribute
that holds its default (`OMITTED_WHEN_DEFAULT`: empty lists, `false`, `0` — an absent attribute reads as its
default, since PynamoDB sets the defaults before it reads an item's attributes; every condition on them treats
"absent" as the default) and its JSON attributes are written without blanks (`CompactJSONAttribute`; items
written before, with blanks and every attribute, read the same). Nor does it carry the raw object's key where
that key is the one every raw object is put under (`raw_key`: tenant, mailbox and message id): `raw_s3_key`
is then derived on read — for a message that has raw bytes (`raw_sha256`, set exactly when the object is put:
`sync/store.py`); items written before, which store it, read as stored.
"""
from __future__ import annotations

import json
from typing import Any

from pynamodb.attributes import (BooleanAttribute, JSONAttribute, ListAttribute, NumberAttribute,
                                 UnicodeAttribute)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from chalicelib.models.base import table_meta
from chalicelib.models.conflicts import SendsConflictsAgain


class CompactJSONAttribute(JSONAttribute):
    """JSON without the blanks after `,` and `:` (ASCII-escaped as before, so a lone surrogate from hostile
    mail stays encodable); `json.loads` reads either form."""

    def serialize(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"))


def raw_key(tenant_id: str, mailbox_id: str, message_id: str) -> str:
    """The S3 key of a message's raw MIME (`sync/store.py` puts every raw object under it)."""
    return f"raw/{tenant_id}/{mailbox_id}/{message_id}.eml"


# Not written while they hold their default (see the module docstring): readers get the default back.
OMITTED_WHEN_DEFAULT = ("references", "to", "cc", "bcc", "reply_to", "attachments", "headers", "parse_errors",
                        "has_attachments", "hidden", "link_count")


class MessagesByMailbox(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_mailbox"
        projection = AllProjection()

    mailbox_id = UnicodeAttribute(hash_key=True)
    date_key = UnicodeAttribute(range_key=True)


class MessagesByMailboxFolder(GlobalSecondaryIndex):
    """`mailbox_folder = "<mailbox_id>#<folder>"`."""
    class Meta:
        index_name = "by_mailbox_folder"
        projection = AllProjection()

    mailbox_folder = UnicodeAttribute(hash_key=True)
    date_key = UnicodeAttribute(range_key=True)


class MessagesByProviderRef(GlobalSecondaryIndex):
    """Removal at the source: `provider_key = "<mailbox_id>#<folder>#<provider_id>"`."""
    class Meta:
        index_name = "by_provider_ref"
        projection = KeysOnlyProjection()

    provider_key = UnicodeAttribute(hash_key=True)


class MessagesByConversation(GlobalSecondaryIndex):
    """A conversation's messages in date order (`threads/`); sparse: set at ingest, removed with the message's
    thread membership (removal at the source)."""
    class Meta:
        index_name = "by_conversation"
        projection = AllProjection()

    conversation_id = UnicodeAttribute(hash_key=True)
    date_key = UnicodeAttribute(range_key=True)


class MessagesOwing(GlobalSecondaryIndex):
    """Sparse: only messages that still owe effects carry `owed_mailbox` (sync/effects.py sweeps them)."""
    class Meta:
        index_name = "by_owed"
        projection = KeysOnlyProjection()

    owed_mailbox = UnicodeAttribute(hash_key=True)
    imported_at = UnicodeAttribute(range_key=True)


class Message(SendsConflictsAgain, Model):
    Meta = table_meta("messages")

    message_id = UnicodeAttribute(hash_key=True)
    tenant_id = UnicodeAttribute()
    mailbox_id = UnicodeAttribute()
    folder = UnicodeAttribute()                    # inbox | sent
    mailbox_folder = UnicodeAttribute()
    date_key = UnicodeAttribute()
    direction = UnicodeAttribute()                 # inbound | outbound
    provider_id = UnicodeAttribute(null=True)
    provider_key = UnicodeAttribute(null=True)
    thread_id = UnicodeAttribute(null=True)        # provider thread id when the provider has one
    conversation_id = UnicodeAttribute(null=True)  # threads/identity.py: first guess at ingest, settled after
    thread_counted = BooleanAttribute(null=True)   # counted in its mailbox's ThreadEntry (threads/assign.py)
    rfc_message_id = UnicodeAttribute(null=True)  # (items before 2026-12-02 also carry `rfc_key`, which nothing
    #                                               read: pairing and threads key on `rfc_message_id`)
    in_reply_to = UnicodeAttribute(null=True)
    references = ListAttribute(of=UnicodeAttribute, default=list)
    subject = UnicodeAttribute(null=True)
    from_addr = CompactJSONAttribute(null=True)    # {"name", "email"}
    to = CompactJSONAttribute(default=list)        # [{"name", "email"}]
    cc = CompactJSONAttribute(default=list)
    bcc = CompactJSONAttribute(default=list)
    reply_to = CompactJSONAttribute(default=list)
    sender = CompactJSONAttribute(null=True)       # {"name", "email"} of a Sender header (erasure finds it)
    date = UnicodeAttribute()                      # ISO UTC; falls back to the import time when unparsable
    size = NumberAttribute(default=0)
    has_attachments = BooleanAttribute(default=False)
    attachments = CompactJSONAttribute(default=list)  # [{"index", "filename", "content_type", "size", "content_id",
    #                                                 "disposition", "raw": {"start", "end", "encoding"}}] (sync.mime)
    headers = CompactJSONAttribute(default=dict)   # selected extra headers (auto-submitted, precedence, ...)
    snippet = UnicodeAttribute(null=True)
    stored_raw_key = UnicodeAttribute(null=True, attr_name="raw_s3_key")  # read it as `raw_s3_key` (below)
    raw_sha256 = UnicodeAttribute(null=True)
    parse_errors = ListAttribute(of=UnicodeAttribute, default=list)
    skipped_reason = UnicodeAttribute(null=True)   # e.g. over the size limit: recorded, not dropped
    removed_at_source = UnicodeAttribute(null=True)  # ISO time the provider no longer had it
    hidden = BooleanAttribute(default=False)       # deleted in the CRM only
    unread = BooleanAttribute(null=True)           # unread at the source; None = the provider did not tell
    private = BooleanAttribute(null=True)          # only its mailbox's users see it (messages/privacy.py)
    link_count = NumberAttribute(default=0)
    owed = ListAttribute(of=UnicodeAttribute, null=True)  # effects not yet done ("pair", "announce"): sync/effects.py
    owed_mailbox = UnicodeAttribute(null=True)     # = mailbox_id while `owed` is not empty (sparse GSI by_owed)
    imported_at = UnicodeAttribute()

    def __init__(self, hash_key: Any = None, range_key: Any = None, _user_instantiated: bool = True,
                 **attributes: Any) -> None:
        raw_s3_key = attributes.pop("raw_s3_key", None)       # a property (below), still a constructor argument
        super().__init__(hash_key, range_key, _user_instantiated=_user_instantiated, **attributes)
        if raw_s3_key is not None:
            self.stored_raw_key = raw_s3_key

    def _derived_raw_key(self) -> str | None:
        if self.raw_sha256 and self.tenant_id and self.mailbox_id and self.message_id:
            return raw_key(self.tenant_id, self.mailbox_id, self.message_id)
        return None

    @property
    def raw_s3_key(self) -> str | None:
        """The raw object's S3 key: as stored, else — for a message with raw bytes — `raw_key` (see the module
        docstring); None for a skipped message (no raw object) or an item read without `raw_sha256`."""
        return self.stored_raw_key or self._derived_raw_key()

    @raw_s3_key.setter
    def raw_s3_key(self, value: str | None) -> None:
        self.stored_raw_key = value

    def serialize(self, null_check: bool = True) -> dict[str, dict[str, Any]]:
        """The item as written: without the attributes of `OMITTED_WHEN_DEFAULT` that hold their default, and
        without `raw_s3_key` when it is the derived one."""
        values = super().serialize(null_check=null_check)
        attributes = self.get_attributes()
        for name in OMITTED_WHEN_DEFAULT:
            default = attributes[name].default
            if getattr(self, name) == (default() if callable(default) else default):
                values.pop(attributes[name].attr_name, None)
        if self.stored_raw_key is not None and self.stored_raw_key == self._derived_raw_key():
            values.pop("raw_s3_key", None)
        return values

    by_mailbox = MessagesByMailbox()
    by_mailbox_folder = MessagesByMailboxFolder()
    by_provider_ref = MessagesByProviderRef()
    by_owed = MessagesOwing()
    by_conversation = MessagesByConversation()
