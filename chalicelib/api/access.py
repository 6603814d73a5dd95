"""Who may see and do what: the tenant itself (no X-User-Id) is "owner" of everything of the tenant; a user
is "owner" of their personal mailbox, has the level of a share (`read` / `read_write`) on a shared one, and
sees a message of such a mailbox — or "read" of one paired to a CRM record that lists them (or "*") among
its readers.

Levels, lowest first: read (see, list, download) < read_write (also hide, pair/unpair, accept/dismiss
signals, create records, refresh, send) < owner (also change settings, test, share, delete).
What a caller may not see answers 404, so existence is not revealed; what a caller sees but may not do
answers 403 `insufficient-access`. Another tenant's ids are simply not found (every lookup is keyed by the
caller's tenant). docs/api.md has the table.
"""
from __future__ import annotations

from pynamodb.exceptions import DoesNotExist

from chalicelib.api.context import Principal, current_principal
from chalicelib.api.errors import InsufficientAccess, NotFound
from chalicelib.lazy import lazy_module
from chalicelib.models.mailbox import Mailbox, MailboxShare
from chalicelib.models.message import Message

# Asked only for a user without access to the message's mailbox (chalicelib.lazy: the API's cold start).
visibility = lazy_module("chalicelib.pairing.visibility")

LEVELS = {"read": 1, "read_write": 2, "owner": 3}


def require_level(level: str, need: str, what: str) -> None:
    """403 `insufficient-access` when `level` (which lets the caller see `what`) is below `need`."""
    if LEVELS[level] < LEVELS[need]:
        raise InsufficientAccess(f"This needs {need} access to the {what}; you have {level}.",
                                 extra={"required": need, "access": level})


def mailbox_access(mailbox: Mailbox, principal: Principal) -> str | None:
    """"owner" | "read_write" | "read" | None for this principal."""
    if principal.tenant_id != mailbox.tenant_id:
        return None
    if principal.user_id is None:
        return "owner"
    if mailbox.kind == "personal" and mailbox.owner_user_id == principal.user_id:
        return "owner"
    try:
        share = MailboxShare.get(mailbox.mailbox_id, principal.user_id)
    except DoesNotExist:
        return None
    return share.access if share.tenant_id == mailbox.tenant_id else None


def get_mailbox(mailbox_id: str, need: str = "read") -> Mailbox:
    """The caller's mailbox with at least `need` access; 404 when invisible, 403 when visible but
    the access level is too low (the caller already knows it exists)."""
    principal = current_principal()
    try:
        mailbox = Mailbox.get(principal.tenant_id, mailbox_id)
    except DoesNotExist:
        raise NotFound(f"No mailbox with id {mailbox_id!r}.") from None
    level = mailbox_access(mailbox, principal)
    if level is None:
        raise NotFound(f"No mailbox with id {mailbox_id!r}.")
    require_level(level, need, "mailbox")
    return mailbox


def message_access(message: Message, principal: Principal) -> str | None:
    """The caller's level on a message: its mailbox's level, else "read" when a record it is paired to lets
    the user read it, else None (invisible)."""
    if principal.tenant_id != message.tenant_id:
        return None
    if principal.user_id is None:
        return "owner"
    try:
        mailbox = Mailbox.get(message.tenant_id, message.mailbox_id)
    except DoesNotExist:
        mailbox = None
    level = mailbox_access(mailbox, principal) if mailbox is not None else None
    if level is not None:
        return level
    return "read" if readable_through_links(message, principal.user_id) else None


def can_read_message(message: Message, principal: Principal) -> bool:
    return message_access(message, principal) is not None


def readable_through_links(message: Message, user_id: str) -> bool:
    """True when the message is paired to a record listing `user_id` or "*" among its readers."""
    return visibility.readable_through_links(message, user_id)


def get_message(message_id: str, need: str = "read") -> Message:
    """The caller's visible (not hidden) message; 404 when invisible, 403 when visible at a level below
    `need` (a user who reads it only through a record's readers has "read")."""
    principal = current_principal()
    try:
        message = Message.get(message_id)
    except DoesNotExist:
        raise NotFound(f"No message with id {message_id!r}.") from None
    level = None if message.hidden else message_access(message, principal)
    if level is None:
        raise NotFound(f"No message with id {message_id!r}.")
    require_level(level, need, "message's mailbox")
    return message


class MessageReader:
    """`can_read(message)` for the many messages of one request (a conversation, search results): the same
    answer as `message_access` — hidden messages never — with each mailbox's level read once."""

    def __init__(self, principal: Principal):
        self.principal = principal
        self._levels: dict[str, str | None] = {}

    def mailbox_level(self, mailbox_id: str) -> str | None:
        if mailbox_id not in self._levels:
            try:
                mailbox = Mailbox.get(self.principal.tenant_id, mailbox_id)
            except DoesNotExist:
                mailbox = None
            self._levels[mailbox_id] = mailbox_access(mailbox, self.principal) if mailbox is not None else None
        return self._levels[mailbox_id]

    def can_read(self, message: Message) -> bool:
        if message.hidden or message.tenant_id != self.principal.tenant_id:
            return False
        if self.principal.user_id is None or self.mailbox_level(message.mailbox_id) is not None:
            return True
        return readable_through_links(message, self.principal.user_id)
