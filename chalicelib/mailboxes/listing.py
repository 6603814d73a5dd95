"""Which mailboxes a caller sees, a page at a time, without scans (docs/api.md, access levels).

- The tenant itself (no X-User-Id): every mailbox of the tenant — a Query on the table's hash key.
- A user: their personal mailboxes (`by_owner` GSI, owner_key "<tenant>#<user>", which holds the keys, `kind`
  and owner only: the page's items are then read in one BatchGetItem), then the mailboxes shared with them
  (`MailboxShare.by_user` GSI, user_key "<tenant>#<user>"). The page state records which of the two phases it
  is in and DynamoDB's LastEvaluatedKey for it; the API signs it into an opaque cursor.
"""
from __future__ import annotations

from typing import Any

from chalicelib.tenancy.principal import Principal
from chalicelib.models.mailbox import Mailbox, MailboxShare, owner_key

Page = tuple[list[tuple[Mailbox, str]], dict[str, Any] | None]


def list_visible(principal: Principal, limit: int, state: dict[str, Any] | None) -> Page:
    """[(mailbox, caller's access)], next state (None = last page)."""
    if principal.user_id is None:
        result = Mailbox.query(principal.tenant_id, limit=limit, last_evaluated_key=(state or {}).get("key"))
        items = [(mailbox, "owner") for mailbox in result]
        return items, ({"phase": "tenant", "key": result.last_evaluated_key}
                       if result.last_evaluated_key else None)
    return _user_page(principal.tenant_id, principal.user_id, limit, state or {"phase": "own"})


def _user_page(tenant_id: str, user_id: str, limit: int, state: dict[str, Any]) -> Page:
    items: list[tuple[Mailbox, str]] = []
    key = state.get("key")
    if state.get("phase", "own") == "own":
        result = Mailbox.by_owner.query(owner_key(tenant_id, user_id), limit=limit, last_evaluated_key=key)
        owned = [m.mailbox_id for m in result if m.tenant_id == tenant_id and m.kind == "personal"]
        items = [(m, "owner") for m in _items(tenant_id, owned)               # the items, not the index, decide
                 if m.kind == "personal" and m.owner_user_id == user_id]
        if result.last_evaluated_key:
            return items, {"phase": "own", "key": result.last_evaluated_key}
        key = None
        if len(items) >= limit:
            return items, {"phase": "shared", "key": None}
    result = MailboxShare.by_user.query(owner_key(tenant_id, user_id), limit=limit - len(items),
                                        last_evaluated_key=key)
    shares = [share for share in result if share.tenant_id == tenant_id]
    found = {m.mailbox_id: m for m in _items(tenant_id, [s.mailbox_id for s in shares])}
    owned = {m.mailbox_id for m, _ in items}
    items += [(found[s.mailbox_id], s.access) for s in shares
              if s.mailbox_id in found and s.mailbox_id not in owned]
    return items, ({"phase": "shared", "key": result.last_evaluated_key} if result.last_evaluated_key else None)


def _items(tenant_id: str, mailbox_ids: list[str]) -> list[Mailbox]:
    """The mailbox items of `mailbox_ids`, in that order (BatchGetItem answers in any order; a mailbox deleted
    since the index was read is left out)."""
    if not mailbox_ids:
        return []
    found = {m.mailbox_id: m for m in Mailbox.batch_get([(tenant_id, mailbox_id) for mailbox_id in mailbox_ids])}
    return [found[mailbox_id] for mailbox_id in mailbox_ids if mailbox_id in found]
