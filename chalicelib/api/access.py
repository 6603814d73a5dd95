"""Who may see and do what (DESIGN §4): the tenant itself sees everything of the tenant; a user sees a
mailbox they own or that is shared with them, and a message of such a mailbox — or one paired to a CRM record
that lists them (or "*") among its readers. What a caller may not see answers 404, never 403, so existence is
not revealed; another tenant's ids are simply not found (every lookup is keyed by the caller's tenant).
"""
from __future__ import annotations

from pynamodb.exceptions import DoesNotExist

from chalicelib.api.context import Principal, current_principal
from chalicelib.api.errors import Forbidden, NotFound
from chalicelib.models.mailbox import Mailbox, MailboxShare
from chalicelib.models.message import Message
from chalicelib.pairing.visibility import readable_through_links as through_links

LEVELS = {"read": 1, "read_write": 2, "owner": 3}


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
    if LEVELS[level] < LEVELS[need]:
        raise Forbidden(f"This needs {need} access to the mailbox; you have {level}.")
    return mailbox


def can_read_message(message: Message, principal: Principal) -> bool:
    if principal.tenant_id != message.tenant_id:
        return False
    if principal.user_id is None:
        return True
    try:
        mailbox = Mailbox.get(message.tenant_id, message.mailbox_id)
    except DoesNotExist:
        mailbox = None
    if mailbox is not None and mailbox_access(mailbox, principal) is not None:
        return True
    return readable_through_links(message, principal.user_id)


def readable_through_links(message: Message, user_id: str) -> bool:
    """True when the message is paired to a record listing `user_id` or "*" among its readers."""
    return through_links(message, user_id)


def get_message(message_id: str) -> Message:
    principal = current_principal()
    try:
        message = Message.get(message_id)
    except DoesNotExist:
        raise NotFound(f"No message with id {message_id!r}.") from None
    if message.hidden or not can_read_message(message, principal):
        raise NotFound(f"No message with id {message_id!r}.")
    return message
