"""Links as seen by readers: a message's links, whether a user may read a message through the records it
is paired to (docs/api.md, access levels), and a record's messages (its "E-mails" tab) newest first.
"""
from __future__ import annotations

from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.models.pairing import MessageLink
from chalicelib.pairing import directory
from chalicelib.pairing.store import entity_key

EVERYONE = "*"


def links_of(message: Message) -> list[MessageLink]:
    if not int(message.link_count or 0):
        return []
    return [link for link in MessageLink.query(message.message_id) if link.status == "active"]


def record_lets_read(readers, user_id: str) -> bool:
    return EVERYONE in (readers or ()) or user_id in (readers or ())


def readable_through_links(message: Message, user_id: str) -> bool:
    """A private message (messages/privacy.py) is never readable through its records."""
    if message.private:
        return False
    links = links_of(message)
    if not links:
        return False
    records = directory.read_records(message.tenant_id, [link.link_key for link in links])
    return any(record_lets_read(r.readers, user_id) for r in records.values())


def record_message_page(tenant_id: str, record_type: str, record_id: str, limit: int,
                        last_key: dict | None) -> tuple[list[Message], dict | None]:
    """One page of the record's linked messages, newest first (hidden and private messages left out)."""
    page = MessageLink.by_entity.query(entity_key(tenant_id, record_type, record_id), scan_index_forward=False,
                                       limit=limit, last_evaluated_key=last_key)
    ids = [link.message_id for link in page]
    found = {m.message_id: m for m in Message.batch_get(ids)} if ids else {}
    messages = [found[i] for i in ids if i in found and not found[i].hidden and not found[i].private
                and found[i].tenant_id == tenant_id]
    return messages, page.last_evaluated_key


def snippet_mailboxes(tenant_id: str, mailbox_ids: set[str]) -> set[str]:
    """Which of these mailboxes show snippets (`Mailbox.show_snippet`)."""
    if not mailbox_ids:
        return set()
    keys = [(tenant_id, m) for m in sorted(mailbox_ids)]
    return {m.mailbox_id for m in Mailbox.batch_get(keys) if m.show_snippet}
