"""Pairing state: message links, suggested pairings (signals), scanner rules and the audit trail.

`MessageLink` is keyed `(message_id, link_key = "<type>#<entity_id>")`, so writing the same link twice is
the same item (idempotent pairing). A link undone or unpaired keeps its item with `status = "removed"` (a
tombstone: automatic pairing never re-creates it) and loses `entity_key`, which takes it out of the sparse
`by_entity` GSI that serves a record's e-mails tab (`entity_key = "<tenant>#<type>#<entity_id>"`, newest
first by the message's `date_key`). Thread inheritance reads the directory index instead (see
`models/directory.py`, "rfc" and "thread" keys), which `pairing.store` updates in the same transaction.

`Signal` ids are derived from (tenant, message, type, entity), so a dismissed suggestion is never created
again for the same message (a conditional put finds the tombstone).
"""
from __future__ import annotations

from pynamodb.attributes import (BooleanAttribute, JSONAttribute, NumberAttribute, UnicodeAttribute)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from chalicelib.models.base import table_meta


class LinksByEntity(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_entity"
        projection = AllProjection()

    entity_key = UnicodeAttribute(hash_key=True)
    date_key = UnicodeAttribute(range_key=True)


class LinksByMailbox(GlobalSecondaryIndex):
    """A mailbox's links in its messages' order (`date_key` = the message's): the links of a whole page of
    messages in one Query (`pairing.links.links_for_messages`)."""
    class Meta:
        index_name = "by_mailbox"
        projection = AllProjection()

    mailbox_id = UnicodeAttribute(hash_key=True)
    date_key = UnicodeAttribute(range_key=True)


class MessageLink(Model):
    Meta = table_meta("message_links")

    message_id = UnicodeAttribute(hash_key=True)
    link_key = UnicodeAttribute(range_key=True)     # "<type>#<entity_id>"
    tenant_id = UnicodeAttribute()
    mailbox_id = UnicodeAttribute(null=True)
    entity_type = UnicodeAttribute()
    entity_id = UnicodeAttribute()
    entity_key = UnicodeAttribute(null=True)        # only while active (sparse GSI)
    date_key = UnicodeAttribute()                   # the message's date_key
    status = UnicodeAttribute(default="active")     # active | removed
    source = UnicodeAttribute()                     # auto | rule | signal | manual | thread | created
    reason = UnicodeAttribute(null=True)
    actor = UnicodeAttribute(null=True)             # "matcher:company" | "rule:<id>" | "user:<id>" | "tenant"
    audit_id = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    removed_at = UnicodeAttribute(null=True)

    by_entity = LinksByEntity()
    by_mailbox = LinksByMailbox()


class SignalsByTenantStatus(GlobalSecondaryIndex):
    """`tenant_status = "<tenant>#<status>"`."""
    class Meta:
        index_name = "by_tenant_status"
        projection = AllProjection()

    tenant_status = UnicodeAttribute(hash_key=True)
    created_key = UnicodeAttribute(range_key=True)


class SignalsByMailboxStatus(GlobalSecondaryIndex):
    """`mailbox_status = "<mailbox_id>#<status>"`."""
    class Meta:
        index_name = "by_mailbox_status"
        projection = AllProjection()

    mailbox_status = UnicodeAttribute(hash_key=True)
    created_key = UnicodeAttribute(range_key=True)


class Signal(Model):
    Meta = table_meta("signals")

    tenant_id = UnicodeAttribute(hash_key=True)
    signal_id = UnicodeAttribute(range_key=True)
    message_id = UnicodeAttribute()
    mailbox_id = UnicodeAttribute()
    entity_type = UnicodeAttribute()
    entity_id = UnicodeAttribute()
    reason = UnicodeAttribute()
    matcher = UnicodeAttribute()
    confidence = NumberAttribute()
    status = UnicodeAttribute(default="open")       # open | accepted | dismissed | undone
    tenant_status = UnicodeAttribute()
    mailbox_status = UnicodeAttribute()
    created_key = UnicodeAttribute()                # "<created_at>#<signal_id>"
    audit_id = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    resolved_at = UnicodeAttribute(null=True)
    resolved_by = UnicodeAttribute(null=True)

    by_tenant_status = SignalsByTenantStatus()
    by_mailbox_status = SignalsByMailboxStatus()


class Rule(Model):
    """Scanner rules, evaluated in ascending `position` (tenant-wide and the message's mailbox's)."""
    Meta = table_meta("pairing_rules")

    tenant_id = UnicodeAttribute(hash_key=True)
    rule_id = UnicodeAttribute(range_key=True)
    name = UnicodeAttribute()
    mailbox_id = UnicodeAttribute(null=True)        # None = every mailbox of the tenant
    position = NumberAttribute(default=100)
    enabled = BooleanAttribute(default=True)
    conditions = JSONAttribute(default=dict)
    actions = JSONAttribute(default=list)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()


class AuditByMessage(GlobalSecondaryIndex):
    """Sparse (entries naming a message): deleting a message deletes its audit trail (erasure/delete.py)."""
    class Meta:
        index_name = "by_message"
        projection = KeysOnlyProjection()

    message_id = UnicodeAttribute(hash_key=True)


class AuditEntry(Model):
    """Who/what made every automatic link, signal and record, and every undo (ids are time-ordered)."""
    Meta = table_meta("pairing_audit")

    tenant_id = UnicodeAttribute(hash_key=True)
    audit_id = UnicodeAttribute(range_key=True)
    action = UnicodeAttribute()      # link.created | link.removed | signal.created | record.created |
    #                                  ticket.reopened | undo
    actor = UnicodeAttribute()       # "matcher:<name>" | "rule:<id>" | "user:<id>" | "tenant"
    reason = UnicodeAttribute(null=True)
    message_id = UnicodeAttribute(null=True)
    entity_type = UnicodeAttribute(null=True)
    entity_id = UnicodeAttribute(null=True)
    signal_id = UnicodeAttribute(null=True)
    undo_of = UnicodeAttribute(null=True)
    undone_by = UnicodeAttribute(null=True)         # audit id of the undo entry
    details = JSONAttribute(default=dict)
    created_at = UnicodeAttribute()

    by_message = AuditByMessage()
