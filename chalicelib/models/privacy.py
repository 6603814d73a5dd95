"""Privacy state: never-import / never-pair lists and the erasure jobs that delete a person's mail.

`PrivacyList` is keyed `(tenant_id, scope)` with `scope = "tenant"` (the tenant admin's list, applies to every
mailbox) or `"user#<user id>"` (a user's own list, applies to the mailboxes that user owns). Entries are
normalized (`chalicelib/privacy/lists.py`): an address `local@domain` or a whole domain `@domain`. The tenant's
item also holds the retention period (`erasure/retention.py`) and the number of erasures requested
(`privacy/erased.py`), so the store reads lists, period and erasures together.

`ErasureJob` is keyed `(tenant_id, job_id)`: one `POST /v1/erasure`. While it runs it holds the address sealed
by KMS (`sealed_subject`, encryption context tenant + job id) and its progress; when done the sealed address is
removed and only the keyed hash (`subject_hash`, HMAC-SHA256 under a key derived from the tenant's secrets key,
`privacy/erased.py`) and the counts stay — never the address in plain text, never message content.

`RetiredMailbox` is keyed `(tenant_id, mailbox_id)`: a mailbox deleted without purge. Its stored mail stays
(the CRM's record tabs keep what was paired), so erasure and the retention sweeper must still find that mail,
which they read mailbox by mailbox (the `by_mailbox` GSI): this item names the mailbox id for them once the
mailbox item is gone. It holds no address; the retention sweeper deletes it once none of the mailbox's
messages is left.
"""
from __future__ import annotations

from pynamodb.attributes import JSONAttribute, ListAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from chalicelib.models.base import table_meta
from chalicelib.models.conflicts import SendsConflictsAgain

TENANT_SCOPE = "tenant"


def user_scope(user_id: str) -> str:
    return f"user#{user_id}"


class PrivacyList(SendsConflictsAgain, Model):
    Meta = table_meta("privacy_lists")

    tenant_id = UnicodeAttribute(hash_key=True)
    scope = UnicodeAttribute(range_key=True)          # "tenant" | "user#<user id>"
    never_import = ListAttribute(of=UnicodeAttribute, default=list)
    never_pair = ListAttribute(of=UnicodeAttribute, default=list)
    retention_days = NumberAttribute(null=True)       # scope "tenant" only: stored mail is deleted after it
    erasures = NumberAttribute(null=True)             # scope "tenant" only: erasures requested (privacy/erased.py)
    updated_at = UnicodeAttribute()


class ErasureJob(Model):
    Meta = table_meta("erasure_jobs")

    tenant_id = UnicodeAttribute(hash_key=True)
    job_id = UnicodeAttribute(range_key=True)
    status = UnicodeAttribute()                      # running | done
    subject_hash = UnicodeAttribute()                # keyed hash of the normalized address (privacy/erased.py)
    sealed_subject = UnicodeAttribute(null=True)     # KMS envelope of {"email": ...}; removed when done
    requested_by = UnicodeAttribute(null=True)       # "tenant"
    progress = JSONAttribute(default=dict)           # {"mailboxes": [...], "index": n, "last_key": {...}}
    counts = JSONAttribute(default=dict)             # what was deleted so far (see erasure/delete.py)
    message_ids = ListAttribute(of=UnicodeAttribute, default=list)   # erased ids (bounded, see erasure/erase.py)
    audit_id = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    finished_at = UnicodeAttribute(null=True)


class RetiredMailbox(Model):
    Meta = table_meta("retired_mailboxes")

    tenant_id = UnicodeAttribute(hash_key=True)
    mailbox_id = UnicodeAttribute(range_key=True)
    retired_at = UnicodeAttribute()
