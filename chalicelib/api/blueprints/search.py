"""Message search (docs/api.md, "Search")."""
from __future__ import annotations

from typing import TYPE_CHECKING

from chalice import Blueprint

from chalicelib.api import access
from chalicelib.api.context import current_principal
from chalicelib.api.errors import field_error
from chalicelib.api.pagination import decode_cursor, encode_cursor
from chalicelib.api.routing import route
from chalicelib.lazy import lazy_module

if TYPE_CHECKING:   # annotations only: the models load on first use (chalicelib.api.routing)
    from chalicelib.api.schemas.threads import SearchQuery

# Imported when a route first uses them (chalicelib.lazy: the API's cold start).
views = lazy_module("chalicelib.messages.views")
service = lazy_module("chalicelib.search.service")
search_index = lazy_module("chalicelib.search.index")
search_tokens = lazy_module("chalicelib.search.tokens")
thread_views = lazy_module("chalicelib.threads.views")

bp = Blueprint(__name__)
TAGS = ("messages",)


@route(bp, "/v1/messages/search", methods=["GET"], query="chalicelib.api.schemas.threads:SearchQuery",
       response="chalicelib.api.schemas.messages:MessageList", errors=(400, 422),
       summary="Search the messages the caller may read (subject, participants, snippet, attachment names)", tags=TAGS)
def search_messages(query: SearchQuery):
    principal = current_principal()
    try:
        tokens = search_tokens.query_tokens(query.q)
    except search_tokens.QueryTooLong as exc:
        raise field_error("query.q", str(exc)) from None
    if not tokens:
        raise field_error("query.q", "needs a word of at least 2 letters or digits")
    if query.mailbox_id:
        mailboxes = frozenset({access.get_mailbox(query.mailbox_id, "read").mailbox_id})
    elif principal.user_id is None:
        mailboxes = None
    else:
        mailboxes = service.user_mailboxes(principal.tenant_id, principal.user_id)
    filters = search_index.SearchFilters(mailbox_ids=mailboxes, folder=query.folder, direction=query.direction,
                                         has_attachments=query.has_attachments, after=query.after,
                                         before=query.before)
    scope = "search:" + "|".join([query.q, str(query.mailbox_id), str(query.folder), str(query.after),
                                  str(query.before), str(query.has_attachments), str(query.paired),
                                  str(query.direction)])
    messages, last = service.search(principal.tenant_id, tokens, filters, paired=query.paired, limit=query.limit,
                                    start_key=decode_cursor(query.cursor, principal.tenant_id, scope))
    reader = access.MessageReader(principal)
    messages = [m for m in messages if reader.can_read(m)]
    snippets = thread_views.SnippetMailboxes(principal.tenant_id)
    links = views.page_links(messages)
    return {"items": [views.summary(m, show_snippet=snippets.shows(m), links=links[m.message_id]) for m in messages],
            "next_cursor": encode_cursor(principal.tenant_id, scope, last)}
