"""Per-folder sync cursors, one item per (mailbox, scope), apart from the mailbox item.

The IMAP cursor carries its `known` UID set, which grows with the mailbox; kept here, the mailbox item stays
small and far from DynamoDB's 400 KB item limit. Written only by the lease holder (`sync/cursors.py` makes
each write a transaction whose condition checks the mailbox's lease).
"""
from __future__ import annotations

from pynamodb.attributes import ListAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from chalicelib.models.base import table_meta


class SyncCursor(Model):
    Meta = table_meta("sync_cursors")

    mailbox_key = UnicodeAttribute(hash_key=True)   # "<tenant_id>#<mailbox_id>"
    scope = UnicodeAttribute(range_key=True)        # logical folder ("inbox", "sent") or a provider scope
    cursor = UnicodeAttribute(null=True)            # opaque provider cursor; None = initial import pending
    epoch = NumberAttribute(default=0)              # Mailbox.cursor_epoch it belongs to; another → start afresh
    since = UnicodeAttribute(null=True)             # the import_since its initial import used (YYYY-MM-DD)
    resyncs = ListAttribute(of=UnicodeAttribute, default=list)  # ISO times of recent bounded resyncs
    updated_at = UnicodeAttribute()
