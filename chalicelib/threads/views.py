"""Conversations as the API shows them: a mailbox's list (its `ThreadEntry` items, newest activity first), a
record's list (its linked messages grouped by conversation) and one conversation's messages in order.

Visibility: a mailbox's list needs read access to the mailbox and shows only that mailbox's copies (counts,
participants, latest message). A conversation's messages are each shown only to a caller who could open
them (`access.message_access`: the mailbox's access or a paired record's readers; hidden ones never). A
record's list shows, per conversation, the messages of it the caller may see.
"""
from __future__ import annotations

from typing import Any, Callable

from chalicelib.models.conversation import ThreadEntry
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.models.pairing import MessageLink
from chalicelib.pairing.visibility import record_message_page
from chalicelib.threads import assign

MAX_THREAD_MESSAGES = 500            # messages of one conversation read for a record's list entry
MAX_PARTICIPANTS = 50
MAX_DETAIL_PAGES = 10
MAX_MARKED = 1_000                   # messages a conversation-wide private mark changes at most


class SnippetMailboxes:
    """Whether a message's mailbox shows snippets (`Mailbox.show_snippet`), each mailbox read once."""

    def __init__(self, tenant_id: str):
        self.tenant_id = tenant_id
        self._shows: dict[str, bool] = {}

    def shows(self, message: Message) -> bool:
        if message.mailbox_id not in self._shows:
            try:
                self._shows[message.mailbox_id] = bool(Mailbox.get(self.tenant_id, message.mailbox_id).show_snippet)
            except Mailbox.DoesNotExist:
                self._shows[message.mailbox_id] = False
        return self._shows[message.mailbox_id]


def participants(values) -> list[dict[str, str]]:
    """`ThreadEntry.participants` ("address\\tname") as [{email, name}], one per address (a name when known)."""
    by_email: dict[str, str] = {}
    for value in sorted(values or ()):
        email, _, name = value.partition("\t")
        if name or email not in by_email:
            by_email[email] = name or by_email.get(email, "")
    return [{"email": e, "name": n} for e, n in list(by_email.items())[:MAX_PARTICIPANTS]]


def _latest_out(message: Message | None, show_snippet: bool) -> dict[str, Any] | None:
    """The entry's latest message as listed; none for a hidden one (a delete in the CRM refreshes the entry's
    latest right after uncounting it: `assign.forget` — this covers the moment between)."""
    if message is None or message.hidden:
        return None
    return {"id": message.message_id, "date": message.date, "from": message.from_addr,
            "subject": message.subject, "snippet": (message.snippet or "") if show_snippet else None}


def entry_unread(entry: ThreadEntry) -> bool | None:
    """Any of the entry's copies unread at the source (its exact counter, `threads/unread.py`); None while
    none of them had a known read state."""
    return None if entry.unread_count is None else int(entry.unread_count) > 0


def messages_unread(messages: list[Message]) -> bool | None:
    """Any of `messages` unread at the source; None when none of them has a known read state."""
    known = [m.unread for m in messages if m.unread is not None]
    return any(known) if known else None


def mailbox_threads(mailbox: Mailbox, limit: int, start_key: dict | None) -> tuple[list[dict], dict | None]:
    """One page of the mailbox's conversations, newest activity first."""
    page = ThreadEntry.by_activity.query(mailbox.mailbox_id, scan_index_forward=False, limit=limit,
                                         last_evaluated_key=start_key)
    entries = [e for e in page if e.tenant_id == mailbox.tenant_id and int(e.message_count or 0) > 0]
    latest_ids = [e.latest_message_id for e in entries if e.latest_message_id]
    latest = {m.message_id: m for m in Message.batch_get(latest_ids)} if latest_ids else {}
    items = [{"id": e.conversation_id, "mailbox_id": mailbox.mailbox_id, "subject": e.subject,
              "participants": participants(e.participants), "message_count": int(e.message_count or 0),
              "unread": entry_unread(e), "last_activity": e.latest_date,
              "latest": _latest_out(latest.get(e.latest_message_id or ""), bool(mailbox.show_snippet))}
             for e in entries]
    return items, page.last_evaluated_key


def conversation_messages(tenant_id: str, conversation_id: str, can_read: Callable[[Message], bool],
                          limit: int, start_key: dict | None) -> tuple[list[Message], dict | None]:
    """The conversation's messages the caller may read, oldest first; reads at most `MAX_DETAIL_PAGES`
    pages of `limit` (a short page with a cursor is normal)."""
    result = Message.by_conversation.query(conversation_id, scan_index_forward=True, page_size=limit,
                                           last_evaluated_key=start_key)
    pages = result.page_iter
    found: list[Message] = []
    for pages_read, raw_page in enumerate(pages, start=1):
        raw_items = raw_page.get("Items") or []
        for position, raw in enumerate(raw_items):
            message = Message.from_raw_data(raw)
            if message.tenant_id == tenant_id and not message.hidden and can_read(message):
                found.append(message)
                if len(found) == limit:
                    more = position + 1 < len(raw_items) or pages.last_evaluated_key
                    return found, ({name: raw[name] for name in pages.key_names} if more else None)
        if pages_read >= MAX_DETAIL_PAGES:
            return found, pages.last_evaluated_key
    return found, None


def readable_messages(tenant_id: str, conversation_id: str, can_read: Callable[[Message], bool],
                      most: int = MAX_MARKED) -> list[Message]:
    """Every message of the conversation the caller may read (at most `most`, oldest first): what a
    conversation-wide change (a private mark) applies to."""
    found: list[Message] = []
    for message in Message.by_conversation.query(conversation_id, scan_index_forward=True, page_size=100):
        if message.tenant_id == tenant_id and not message.hidden and can_read(message):
            found.append(message)
            if len(found) >= most:
                break
    return found


def summary_of(conversation_id: str, messages: list[Message], show_snippet: Callable[[Message], bool]) -> dict:
    """A conversation as the caller sees it, from the messages of it they may read (oldest first)."""
    newest = max(messages, key=lambda m: m.date_key)
    people: set[str] = set()
    for message in messages:
        people |= assign.participants_of(message)
    return {"id": conversation_id, "mailbox_id": None, "subject": messages[0].subject,
            "participants": participants(people), "message_count": len(messages), "unread": messages_unread(messages),
            "last_activity": newest.date, "latest": _latest_out(newest, show_snippet(newest))}


def _newer_linked(tenant_id: str, link_key: str, conversations: dict[str, list[Message]],
                  anchors: dict[str, Message]) -> set[str]:
    """Conversations with a message newer than its anchor (the newest of this page) also linked to the
    record: they are listed on the page of that newer message instead (each conversation once)."""
    newer = {m.message_id: cid for cid, messages in conversations.items() for m in messages
             if m.date_key > anchors[cid].date_key and int(m.link_count or 0) > 0}
    if not newer:
        return set()
    found = MessageLink.batch_get([(mid, link_key) for mid in newer])
    return {newer[link.message_id] for link in found if link.status == "active" and link.tenant_id == tenant_id}


def record_threads(tenant_id: str, record_type: str, record_id: str, can_read: Callable[[Message], bool],
                   show_snippet: Callable[[Message], bool], limit: int,
                   start_key: dict | None) -> tuple[list[dict], dict | None]:
    """One page of a record's conversations, newest linked message first: the record's linked messages
    (its e-mails tab) grouped by conversation, each conversation listed once (on the page of its newest
    linked message) with the messages of it the caller may read."""
    linked, last = record_message_page(tenant_id, record_type, record_id, limit, start_key)
    anchors: dict[str, Message] = {}
    for message in linked:
        if message.conversation_id and message.conversation_id not in anchors and can_read(message):
            anchors[message.conversation_id] = message
    conversations = {cid: [m for m in Message.by_conversation.query(cid, limit=MAX_THREAD_MESSAGES)
                           if m.tenant_id == tenant_id and not m.hidden] for cid in anchors}
    skip = _newer_linked(tenant_id, f"{record_type}#{record_id}", conversations, anchors)
    items = []
    for cid, anchor in anchors.items():
        if cid in skip:
            continue
        visible = [m for m in conversations[cid] if can_read(m)] or [anchor]
        items.append(summary_of(cid, visible, show_snippet))
    return items, last
