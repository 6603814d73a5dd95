"""Stored messages: list per mailbox, detail, attachment download, raw MIME, hide (CRM only).

Binary responses (raw MIME, attachments): Chalice returns them only when the request's `Accept` header
matches a binary type of the app (`*/*`, `message/rfc822`, `application/octet-stream`, ...); otherwise it
answers 400. Attachments are served with their own content type when it is one of the app's binary types,
else as `application/octet-stream`, always as `Content-Disposition: attachment` with `nosniff`.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import quote

from chalice import Blueprint, Response

from chalicelib.api import access
from chalicelib.api.errors import NotFound
from chalicelib.api.pagination import decode_cursor, encode_cursor
from chalicelib.api.routing import route
from chalicelib.lazy import lazy_module
from chalicelib.models.mailbox import Mailbox

if TYPE_CHECKING:   # annotations only: the models load on first use (chalicelib.api.routing)
    from chalicelib.api.schemas.messages import MessageListQuery

# Imported when a route first uses them (chalicelib.lazy: the API's cold start).
schemas = lazy_module("chalicelib.api.schemas.messages")
service = lazy_module("chalicelib.messages.service")
views = lazy_module("chalicelib.messages.views")
store = lazy_module("chalicelib.sync.store")

bp = Blueprint(__name__)
TAGS = ("messages",)
_UNSAFE_FILENAME = re.compile(r'[\x00-\x1f\x7f"\\/:*?<>|]+')


def _mailbox_or_none(tenant_id: str, mailbox_id: str) -> Mailbox | None:
    try:
        return Mailbox.get(tenant_id, mailbox_id)
    except Mailbox.DoesNotExist:
        return None


def content_disposition(filename: str | None, fallback: str) -> str:
    """RFC 6266: an ASCII `filename` plus the exact UTF-8 name in `filename*` (RFC 8187)."""
    name = _UNSAFE_FILENAME.sub("_", (filename or "").replace("\\", "/").rsplit("/", 1)[-1]).strip(" .")[:150]
    name = name or fallback
    ascii_name = name.encode("ascii", "replace").decode().replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


@route(bp, "/v1/mailboxes/{mailbox_id}/messages", methods=["GET"],
       query="chalicelib.api.schemas.messages:MessageListQuery", response="chalicelib.api.schemas.messages:MessageList",
       errors=(400, 422), summary="List a mailbox's messages, newest first", tags=TAGS)
def list_messages(mailbox_id: str, query: MessageListQuery):
    mailbox = access.get_mailbox(mailbox_id, "read")
    scope = f"messages:{mailbox_id}:{query.folder}:{query.paired}"
    start = decode_cursor(query.cursor, mailbox.tenant_id, scope)
    items, last = service.list_messages(mailbox, folder=query.folder, paired=query.paired, limit=query.limit,
                                        start_key=start)
    links = views.page_links(items)
    return schemas.MessageList(items=[views.summary(m, show_snippet=bool(mailbox.show_snippet),
                                                    links=links[m.message_id]) for m in items],
                               next_cursor=encode_cursor(mailbox.tenant_id, scope, last))


@route(bp, "/v1/messages/{message_id}", methods=["GET"], response="chalicelib.api.schemas.messages:MessageDetail",
       summary="A message: headers, text, sanitized HTML, attachments", tags=TAGS)
def get_message(message_id: str):
    message = access.get_message(message_id)
    mailbox = _mailbox_or_none(message.tenant_id, message.mailbox_id)
    return schemas.MessageDetail.model_validate(
        views.detail(message, show_snippet=bool(mailbox and mailbox.show_snippet)))


@route(bp, "/v1/messages/{message_id}/raw", methods=["GET"], content_type="message/rfc822",
       summary="The raw MIME message (send Accept: message/rfc822 or */*)", tags=TAGS, errors=(406,))
def get_raw(message_id: str):
    message = access.get_message(message_id)
    if not message.raw_s3_key:
        raise NotFound(f"Message {message_id!r} was recorded without its content ({message.skipped_reason}).")
    return Response(body=store.load_raw(message), status_code=200,
                    headers={"Content-Type": "message/rfc822", "X-Content-Type-Options": "nosniff",
                             "Content-Disposition": content_disposition(None, f"{message_id}.eml")})


@route(bp, "/v1/messages/{message_id}/attachments/{index}", methods=["GET"],
       content_type="application/octet-stream", summary="Download one attachment (send Accept: */*)",
       tags=TAGS, errors=(406,))
def get_attachment(message_id: str, index: str):
    message = access.get_message(message_id)
    found = service.get_attachment(message, int(index)) if index.isdigit() and len(index) <= 6 else None
    if found is None:
        raise NotFound(f"Message {message_id!r} has no attachment {index[:20]!r}.")
    binary_types = {t.lower() for t in bp.current_app.api.binary_types}
    content_type = found.content_type if found.content_type in binary_types else "application/octet-stream"
    return Response(body=found.data, status_code=200,
                    headers={"Content-Type": content_type, "X-Content-Type-Options": "nosniff",
                             "Content-Disposition": content_disposition(found.filename, f"attachment-{index}")})


@route(bp, "/v1/messages/{message_id}", methods=["DELETE"], status=204,
       summary="Hide a message in the CRM (never deleted at the provider)", tags=TAGS)
def delete_message(message_id: str):
    service.hide(access.get_message(message_id, "read_write"))
    return None
