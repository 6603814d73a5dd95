"""Search over what the caller may see: the mailboxes they can read, the filters, then the stored messages.

Scope (docs/api.md, "Search"): the tenant itself (no X-User-Id) searches every mailbox of the tenant; a user
searches the mailboxes they can read — their personal mailboxes and the ones shared with them — or the one
`mailbox_id` names (404 when they cannot read it). Messages a user reads only through a record's readers are
not searched (they are on the record's e-mails tab). Hidden messages and messages removed at the source are
never returned; `paired` is checked on the stored message (pairing may change after indexing).
"""
from __future__ import annotations

from typing import Any

from chalicelib.models.mailbox import Mailbox, MailboxShare
from chalicelib.models.message import Message
from chalicelib.search.index import SearchFilters, backend

BATCH_GET_KEYS = 100
MAX_MAILBOXES = 1_000


def user_mailboxes(tenant_id: str, user_id: str) -> frozenset[str]:
    """The mailboxes a user can read (`api.access.mailbox_access` ≠ None): personal ones they own, shares."""
    key = f"{tenant_id}#{user_id}"
    owned = {m.mailbox_id for m in Mailbox.by_owner.query(key, limit=MAX_MAILBOXES)
             if m.tenant_id == tenant_id and m.kind == "personal" and m.owner_user_id == user_id}
    shared = {s.mailbox_id for s in MailboxShare.by_user.query(key, limit=MAX_MAILBOXES) if s.tenant_id == tenant_id}
    return frozenset(owned | shared)


def search(tenant_id: str, tokens: list[str], filters: SearchFilters, *, paired: bool | None, limit: int,
           start_key: dict[str, Any] | None) -> tuple[list[Message], dict[str, Any] | None]:
    """One page of matching messages, newest first (a short page with a cursor is normal)."""
    if filters.mailbox_ids is not None and not filters.mailbox_ids:
        return [], None
    page = backend().search(tenant_id, tokens, filters, limit, start_key)
    found: dict[str, Message] = {}
    for start in range(0, len(page.message_ids), BATCH_GET_KEYS):
        for message in Message.batch_get(page.message_ids[start:start + BATCH_GET_KEYS]):
            found[message.message_id] = message
    messages = []
    for message_id in page.message_ids:
        message = found.get(message_id)
        if message is None or message.tenant_id != tenant_id or message.hidden or message.removed_at_source:
            continue
        if filters.mailbox_ids is not None and message.mailbox_id not in filters.mailbox_ids:
            continue
        if paired is not None and (int(message.link_count or 0) > 0) != paired:
            continue
        messages.append(message)
    return messages, page.last_key
