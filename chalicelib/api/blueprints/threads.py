"""Conversations: a mailbox's or a record's threads, and one thread's messages (docs/api.md, "Conversations")."""
from __future__ import annotations

from typing import TYPE_CHECKING

from chalice import Blueprint

from chalicelib.api import access
from chalicelib.api.context import current_principal
from chalicelib.api.errors import NotFound
from chalicelib.api.guards import not_found
from chalicelib.api.pagination import decode_cursor, encode_cursor
from chalicelib.api.routing import route
from chalicelib.lazy import lazy_module
from chalicelib.models.directory import RECORD_TYPES

if TYPE_CHECKING:   # annotations only: the models load on first use (chalicelib.api.routing)
    from chalicelib.api.schemas.common import ListQuery
    from chalicelib.api.schemas.privacy import PrivacyMarkIn
    from chalicelib.api.schemas.threads import ThreadListQuery

# Imported when a route first uses them (chalicelib.lazy: the API's cold start).
views = lazy_module("chalicelib.messages.views")
message_privacy = lazy_module("chalicelib.messages.privacy")
directory = lazy_module("chalicelib.pairing.directory")
manual = lazy_module("chalicelib.pairing.manual")
thread_views = lazy_module("chalicelib.threads.views")

bp = Blueprint(__name__)
TAGS = ("threads",)


@route(bp, "/v1/threads", methods=["GET"], query="chalicelib.api.schemas.threads:ThreadListQuery",
       response="chalicelib.api.schemas.threads:ThreadList", errors=(400, 422),
       summary="A mailbox's or a record's conversations, newest activity first", tags=TAGS)
def list_threads(query: ThreadListQuery):
    principal = current_principal()
    if query.mailbox_id:
        mailbox = access.get_mailbox(query.mailbox_id, "read")
        scope = f"threads:{mailbox.mailbox_id}"
        items, last = thread_views.mailbox_threads(mailbox, query.limit,
                                                   decode_cursor(query.cursor, principal.tenant_id, scope))
        return {"items": items, "next_cursor": encode_cursor(principal.tenant_id, scope, last)}
    record = directory.get_record(principal.tenant_id, query.record_type, query.record_id) if (
        query.record_type in RECORD_TYPES) else None
    if record is None:
        raise not_found(query.record_type, query.record_id)
    scope = f"threads-record:{record.record_key}"
    reader = access.MessageReader(principal)
    snippets = thread_views.SnippetMailboxes(principal.tenant_id)
    items, last = thread_views.record_threads(principal.tenant_id, record.type, record.record_id, reader.can_read,
                                              snippets.shows, query.limit,
                                              decode_cursor(query.cursor, principal.tenant_id, scope))
    return {"items": items, "next_cursor": encode_cursor(principal.tenant_id, scope, last)}


@route(bp, "/v1/threads/{thread_id}", methods=["GET"], query="chalicelib.api.schemas.common:ListQuery",
       response="chalicelib.api.schemas.threads:ThreadDetail", errors=(400,),
       summary="A conversation's messages the caller may read, oldest first", tags=TAGS)
def get_thread(thread_id: str, query: ListQuery):
    principal = current_principal()
    scope = f"thread:{thread_id}"
    start = decode_cursor(query.cursor, principal.tenant_id, scope)
    reader = access.MessageReader(principal)
    messages, last = thread_views.conversation_messages(principal.tenant_id, thread_id[:100], reader.can_read,
                                                        query.limit, start)
    if not messages and start is None:
        raise NotFound(f"No conversation with id {thread_id[:100]!r}.")
    snippets = thread_views.SnippetMailboxes(principal.tenant_id)
    links = views.page_links(messages)
    return {"id": thread_id, "items": [views.summary(m, show_snippet=snippets.shows(m), links=links[m.message_id])
                                       for m in messages],
            "next_cursor": encode_cursor(principal.tenant_id, scope, last)}


@route(bp, "/v1/threads/{thread_id}/privacy", methods=["PUT"], body="chalicelib.api.schemas.privacy:PrivacyMarkIn",
       response="chalicelib.api.schemas.threads:ThreadPrivacyOut",
       errors=(403,), tags=TAGS,
       summary="Mark a whole conversation private (or not): each of its messages in the caller's read_write "
               "mailboxes")
def put_thread_privacy(thread_id: str, body: PrivacyMarkIn):
    principal = current_principal()
    reader = access.MessageReader(principal)
    readable = thread_views.readable_messages(principal.tenant_id, thread_id[:100], reader.can_read)
    if not readable:
        raise NotFound(f"No conversation with id {thread_id[:100]!r}.")
    levels = {m.mailbox_id: reader.mailbox_level(m.mailbox_id) or "read" for m in readable}
    writable = [m for m in readable if access.LEVELS[levels[m.mailbox_id]] >= access.LEVELS["read_write"]]
    if not writable:
        access.require_level(max(levels.values(), key=access.LEVELS.__getitem__), "read_write", "conversation")
    changed = message_privacy.set_private(writable, body.private, manual.actor_of(principal.user_id))
    return {"id": thread_id, "private": body.private, "changed": len(changed),
            "left_alone": len(readable) - len(writable)}
