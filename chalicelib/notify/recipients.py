"""Which CRM users an event concerns, and as which notification kind.

- `new_mail`: `message.created` for inbound mail → every user who can read the mailbox (its owner and every
  share, `read` or `read_write`).
- `pairing_signal`: `signal.created` → the users who can act on it (owner and `read_write` shares).
- `mailbox_attention`: `mailbox.status_changed` into a state that needs a person (`auth_error`,
  `needs_admin_consent`, `error`), `mailbox.credentials_expiring`, `mailbox.push_expiring` → owner and
  `read_write` shares.
A shared (corporate) mailbox has no owner user: only its shares are notified.
"""
from __future__ import annotations

from pynamodb.exceptions import DoesNotExist

from chalicelib.models.event import Event
from chalicelib.models.mailbox import Mailbox, MailboxShare

KINDS: tuple[str, ...] = ("new_mail", "pairing_signal", "mailbox_attention")
ATTENTION_STATUSES = frozenset({"auth_error", "needs_admin_consent", "error"})
ATTENTION_TYPES = frozenset({"mailbox.credentials_expiring", "mailbox.push_expiring"})


def kind_of(event: Event) -> str | None:
    payload = event.payload or {}
    if event.type == "message.created":
        return "new_mail" if payload.get("direction", "inbound") == "inbound" else None
    if event.type == "signal.created":
        return "pairing_signal"
    if event.type in ATTENTION_TYPES:
        return "mailbox_attention"
    if event.type == "mailbox.status_changed" and payload.get("status") in ATTENTION_STATUSES:
        return "mailbox_attention"
    return None


def mailbox_users(tenant_id: str, mailbox_id: str, *, writers_only: bool) -> list[str]:
    try:
        mailbox = Mailbox.get(tenant_id, mailbox_id)
    except DoesNotExist:
        return []
    users = [mailbox.owner_user_id] if mailbox.kind == "personal" and mailbox.owner_user_id else []
    for share in MailboxShare.query(mailbox_id):
        if share.tenant_id == tenant_id and (share.access == "read_write" or not writers_only):
            users.append(share.user_id)
    return list(dict.fromkeys(users))


def recipients(event: Event) -> tuple[str | None, list[str]]:
    """(kind, user ids); (None, []) for events no user is notified about."""
    kind = kind_of(event)
    mailbox_id = (event.payload or {}).get("mailbox_id")
    if kind is None or not mailbox_id:
        return None, []
    return kind, mailbox_users(event.tenant_id, str(mailbox_id), writers_only=kind != "new_mail")
