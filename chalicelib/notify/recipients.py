"""Which CRM users an event concerns, and as which notification kind.

- `new_mail`: `message.created` for inbound mail → every user who can read the mailbox (its owner and every
  share, `read` or `read_write`).
- `pairing_signal`: `signal.created` → the users who can act on it (owner and `read_write` shares).
- `mailbox_attention`: `mailbox.status_changed` into a state that needs a person (`auth_error`,
  `needs_admin_consent`, `error`), `mailbox.credentials_expiring`, `mailbox.push_expiring` → owner and
  `read_write` shares.
A shared (corporate) mailbox has no owner user: only its shares are notified.

Reads are per batch of events, not per event (`audiences`): the mailbox items of every distinct mailbox in one
BatchGetItem, then one `MailboxShare` Query per distinct mailbox — a page of 100 `message.created` events of one
mailbox costs 2 calls, not 200.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

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


@dataclass(frozen=True)
class Audience:
    """Who can read one mailbox: its owner (a personal mailbox) and its shares as (user id, access)."""
    owner: str | None = None
    shares: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def users(self, *, writers_only: bool) -> list[str]:
        users = [self.owner] if self.owner else []
        users += [user for user, access in self.shares if access == "read_write" or not writers_only]
        return list(dict.fromkeys(users))


def audiences(tenant_id: str, mailbox_ids: Iterable[str]) -> dict[str, Audience]:
    """The audience of each of the tenant's mailboxes among `mailbox_ids` (a missing one is absent): one
    BatchGetItem for the mailboxes (≤ 100 keys a request), one Query per mailbox found for its shares."""
    wanted = sorted(set(mailbox_ids))
    found: dict[str, Audience] = {}
    for start in range(0, len(wanted), 100):
        for mailbox in Mailbox.batch_get([(tenant_id, m) for m in wanted[start:start + 100]]):
            owner = mailbox.owner_user_id if mailbox.kind == "personal" and mailbox.owner_user_id else None
            shares = tuple((s.user_id, s.access) for s in MailboxShare.query(mailbox.mailbox_id)
                           if s.tenant_id == tenant_id)
            found[mailbox.mailbox_id] = Audience(owner, shares)
    return found


def recipients_of(events: Sequence[Event]) -> list[tuple[Event, str, list[str]]]:
    """(event, kind, user ids) for each of `events` some user is notified about, in order; each mailbox's
    audience is read once for the whole sequence."""
    wanted: list[tuple[Event, str, str]] = []
    for event in events:
        kind, mailbox_id = kind_of(event), (event.payload or {}).get("mailbox_id")
        if kind is not None and mailbox_id:
            wanted.append((event, kind, str(mailbox_id)))
    by_tenant: dict[str, set[str]] = {}
    for event, _kind, mailbox_id in wanted:
        by_tenant.setdefault(event.tenant_id, set()).add(mailbox_id)
    known = {(tenant_id, mailbox_id): audience for tenant_id, mailbox_ids in by_tenant.items()
             for mailbox_id, audience in audiences(tenant_id, mailbox_ids).items()}
    found = []
    for event, kind, mailbox_id in wanted:
        audience = known.get((event.tenant_id, mailbox_id))
        users = audience.users(writers_only=kind != "new_mail") if audience else []
        if users:
            found.append((event, kind, users))
    return found
