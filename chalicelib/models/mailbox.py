"""Mail servers (per-tenant presets/OAuth apps), mailboxes with their sync state, and mailbox shares.

Write discipline: after creation, mailbox items change only through `update(actions=...)` on named
attributes, so the API (settings) and the worker (sync state, lease) never overwrite each other.
"""
from __future__ import annotations

from pynamodb.attributes import (BooleanAttribute, JSONAttribute, ListAttribute, NumberAttribute,
                                 UnicodeAttribute, UnicodeSetAttribute)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, IncludeProjection, KeysOnlyProjection
from pynamodb.models import Model

from chalicelib.models.base import table_meta
from chalicelib.models.conflicts import SendsConflictsAgain


class MailServer(Model):
    Meta = table_meta("mail_servers")

    tenant_id = UnicodeAttribute(hash_key=True)
    server_id = UnicodeAttribute(range_key=True)
    name = UnicodeAttribute()
    type = UnicodeAttribute()                      # imap | gmail | outlook
    imap = JSONAttribute(null=True)                # {host, port, security, login_method}
    smtp = JSONAttribute(null=True)
    oauth = JSONAttribute(null=True)               # {client_id, ms_tenant, ...} (no secrets)
    push = JSONAttribute(null=True)                # gmail: {topic, audience, service_account} (no secrets)
    secret_ciphertext = UnicodeAttribute(null=True)  # KMS envelope of {"client_secret": ...}
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()


class MailboxesByStatus(GlobalSecondaryIndex):
    """Scheduler fan-out: every mailbox in a status, paged, without a scan."""
    class Meta:
        index_name = "by_status"
        projection = KeysOnlyProjection()

    status = UnicodeAttribute(hash_key=True)
    mailbox_id = UnicodeAttribute(range_key=True)


def owner_key(tenant_id: str, user_id: str) -> str:
    """The hash key of a user's personal mailboxes (`MailboxesByOwner`) and of the shares they were given
    (`MailboxShare.user_key`, `SharesByUser`)."""
    return f"{tenant_id}#{user_id}"


class MailboxesByOwner(GlobalSecondaryIndex):
    """A user's personal mailboxes: `owner_key = "<tenant_id>#<user_id>"`. The index holds the keys, `kind` and
    `owner_user_id` only (who owns what), never the whole item: with every attribute projected, each write of a
    personal mailbox — lease, counters, cursors, its sealed credentials — was written to the index again, at the
    item's size ("Global secondary indexes: writes", DynamoDB Developer Guide). Readers fetch the items."""
    class Meta:
        index_name = "by_owner_keys"
        projection = IncludeProjection(["kind", "owner_user_id"])

    owner_key = UnicodeAttribute(hash_key=True)
    mailbox_id = UnicodeAttribute(range_key=True)


class MailboxesByPushKey(GlobalSecondaryIndex):
    """Push notifications → mailboxes: `push_key` names what a provider's push carries (Gmail:
    "gmail#<email address>"; one address may be connected in several tenants, hence a list)."""
    class Meta:
        index_name = "by_push_key"
        projection = KeysOnlyProjection()

    push_key = UnicodeAttribute(hash_key=True)
    mailbox_id = UnicodeAttribute(range_key=True)


class Mailbox(SendsConflictsAgain, Model):
    Meta = table_meta("mailboxes")

    tenant_id = UnicodeAttribute(hash_key=True)
    mailbox_id = UnicodeAttribute(range_key=True)
    name = UnicodeAttribute()
    type = UnicodeAttribute()                      # imap | gmail | outlook
    email = UnicodeAttribute()
    sender_name = UnicodeAttribute(null=True)
    import_since = UnicodeAttribute()              # YYYY-MM-DD
    pairing_mode = UnicodeAttribute(default="auto")  # auto | signal | off
    show_snippet = BooleanAttribute(default=True)
    kind = UnicodeAttribute(default="personal")    # personal | shared
    owner_user_id = UnicodeAttribute(null=True)
    owner_key = UnicodeAttribute(null=True)
    signature_html = UnicodeAttribute(null=True)
    signature_on_replies = BooleanAttribute(default=False)
    append_sent = BooleanAttribute(null=True)      # IMAP: APPEND sent copies to Sent (None = on)
    mail_server_id = UnicodeAttribute(null=True)
    imap = JSONAttribute(null=True)                # {host, port, security, username, login_method}
    smtp = JSONAttribute(null=True)
    secret_ciphertext = UnicodeAttribute(null=True)  # KMS envelope of {"password": ...} / token cache
    secret_version = NumberAttribute(null=True)    # bumped on every credential write (credentials/store.py)
    store_keys = UnicodeAttribute(null=True)       # "content": messages keyed by their bytes (sync/store.py)
    cursor_epoch = NumberAttribute(null=True)      # bumped when the account/server changes: cursors start afresh
    status = UnicodeAttribute(default="pending_auth")  # pending_auth|active|auth_error|needs_admin_consent|disabled
    #                                                    | purging (DELETE ?purge=true under way: erasure/purge.py)
    purge = JSONAttribute(null=True)               # purge progress: {started_at, counts, push_stop, users}
    sync_folders = ListAttribute(of=UnicodeAttribute, null=True)  # roles + named folders (None = inbox + sent)
    status_reason = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()

    # Sync state (written by the worker only).
    sync_stage = UnicodeAttribute(default="idle")  # idle | queued | syncing | retrying | error
    lease_owner = UnicodeAttribute(null=True)
    lease_expires_at = NumberAttribute(null=True)  # epoch seconds
    sync_requested = BooleanAttribute(default=False)  # a push/refresh arrived during a sync: one follow-up
    sync_queued_at = NumberAttribute(null=True)    # a job is queued (push coalescing); cleared by the lease
    not_before = NumberAttribute(null=True)        # throttled: no sync before this epoch second
    page_seconds = NumberAttribute(null=True)      # the longest page of the last sync run (sync/time_budget.py)
    cut_folders = UnicodeSetAttribute(null=True)   # "<cursor_epoch>:<folder>" of pages a sync cut short (engine)
    cut_refused = JSONAttribute(null=True)         # {"<cursor_epoch>:<folder>": provider ids the cut page refused}
    last_refresh_at = NumberAttribute(null=True)   # epoch seconds of the last manual refresh
    last_sync_started_at = UnicodeAttribute(null=True)
    last_success_at = UnicodeAttribute(null=True)
    last_error = JSONAttribute(null=True)          # {code, detail, at}
    counts = JSONAttribute(null=True)              # legacy {imported, skipped, removed} (before the counters)
    imported_count = NumberAttribute(null=True)    # exact: settled once per stored message (sync/effects.py)
    skipped_count = NumberAttribute(null=True)
    owed_pages = UnicodeSetAttribute(null=True)    # page debts: new messages not yet paired/announced (sync/effects.py)
    removed_count = NumberAttribute(null=True)
    cursors = JSONAttribute(null=True)             # legacy (before sync_cursors); migrated on the next sync
    resync_count = NumberAttribute(default=0)
    push_expires_at = UnicodeAttribute(null=True)
    push_renewed_at = UnicodeAttribute(null=True)  # when the registration was last made or renewed (daily cadence)
    push_state = JSONAttribute(null=True)          # PushState.resource + expires_at (no secrets)
    push_error = JSONAttribute(null=True)          # {code, detail, at} of the last failed watch/subscription
    push_key = UnicodeAttribute(null=True)         # what a push names this mailbox by (by_push_key)
    push_lifecycle = JSONAttribute(null=True)      # a provider lifecycle event still owed (sync/push.py `settle`)

    by_status = MailboxesByStatus()
    by_owner = MailboxesByOwner()
    by_push_key = MailboxesByPushKey()


FOLDER_ROLES = ("inbox", "sent")          # the folder roles every provider kind maps (providers/*/adapter.py)


def synced_folders(mailbox: Mailbox) -> list[str]:
    """The folders this mailbox syncs (`sync_folders`; unset = inbox and sent): its roles in role order, then
    its named folders — an IMAP mailbox name, a Gmail label (name or id), a Microsoft mail folder (display
    name or well-known name) — which the provider resolves at sync time (`named_folders`)."""
    chosen = list(dict.fromkeys(mailbox.sync_folders or FOLDER_ROLES))
    return [role for role in FOLDER_ROLES if role in chosen] + named_folders(mailbox)


def named_folders(mailbox: Mailbox) -> list[str]:
    """The named (non-role) folders in `sync_folders`, in the order given; each is also its stored `folder`."""
    return [name for name in dict.fromkeys(mailbox.sync_folders or ()) if name not in FOLDER_ROLES]


def folders_to_sync(mailbox: Mailbox, provider_folders: list[str]) -> list[str]:
    """The folders a sync visits, in order: the provider's role folders this mailbox syncs (roles turned off
    keep their cursor), then its named folders (a missing one is the provider's NOT_FOUND for that folder)."""
    chosen = set(synced_folders(mailbox))
    folders = [f for f in provider_folders if f not in FOLDER_ROLES or f in chosen]
    return folders + [f for f in named_folders(mailbox) if f not in folders]


class SharesByUser(GlobalSecondaryIndex):
    """Mailboxes shared with a user: `user_key = "<tenant_id>#<user_id>"`."""
    class Meta:
        index_name = "by_user"
        projection = AllProjection()

    user_key = UnicodeAttribute(hash_key=True)
    mailbox_id = UnicodeAttribute(range_key=True)


class MailboxShare(Model):
    Meta = table_meta("mailbox_shares")

    mailbox_id = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute(range_key=True)
    tenant_id = UnicodeAttribute()
    user_key = UnicodeAttribute()
    access = UnicodeAttribute()                    # read | read_write
    created_at = UnicodeAttribute()

    by_user = SharesByUser()
