"""Sending mail and the outbox: `POST /v1/mailboxes/{id}/send`, `GET /v1/outbox/{id}`, cancel.

Who may send: `read_write` or owner/admin on the mailbox. A caller with only `read` access gets 404 on send —
like a caller who cannot see the mailbox — so sending is not offered to read-only users at all (docs/api.md,
"Sending mail"). Outbox items are visible to whoever can read their mailbox; cancelling needs read_write.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from chalice import Blueprint

from chalicelib.api import access
from chalicelib.api.context import current_principal
from chalicelib.api.errors import ApiError, Conflict, NotFound, PayloadTooLarge, field_error, invalid
from chalicelib.api.routing import route
from chalicelib.lazy import lazy_module
from chalicelib.models.mailbox import Mailbox
from chalicelib.outbox.errors import InvalidField, KeyReused, NotCancellable, TooLarge
from chalicelib.outbox.limits import MAX_SEND_BODY_BYTES

if TYPE_CHECKING:   # annotations only: the request/response models load on first use (chalicelib.api.routing),
                    # the table's model with the service that returns it (chalicelib.lazy)
    from chalicelib.api.schemas.outbox import OutboxOut, SendRequest
    from chalicelib.models.outbox import OutboxItem

# Imported when a route first uses them (chalicelib.lazy: the API's cold start).
schemas = lazy_module("chalicelib.api.schemas.outbox")
service = lazy_module("chalicelib.outbox.service")

bp = Blueprint(__name__)
TAGS = ("outbox",)
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


class IdempotencyKeyReused(ApiError):
    status, slug, title = 422, "idempotency-key-reused", "Idempotency-Key reused"


def _sending_mailbox(mailbox_id: str) -> tuple[Mailbox, str]:
    """The mailbox and the caller's access level when the caller may send from it; 404 otherwise (also for
    `read` access)."""
    mailbox = access.get_mailbox(mailbox_id, "read")
    level = access.mailbox_access(mailbox, current_principal())
    if level is None or access.LEVELS[level] < access.LEVELS["read_write"]:
        raise NotFound(f"No mailbox with id {mailbox_id!r}.")
    return mailbox, level


def _original(body: SendRequest):
    if not body.in_reply_to:
        return None
    try:
        return access.get_message(body.in_reply_to, "read")
    except NotFound:
        raise field_error("in_reply_to", "no message with this id") from None


def _item(outbox_id: str, need: str = "read") -> OutboxItem:
    principal = current_principal()
    item = service.get_item(principal.tenant_id, outbox_id)
    if item is None:
        raise NotFound(f"No outbox item with id {outbox_id!r}.")
    try:
        access.get_mailbox(item.mailbox_id, need)
    except NotFound:
        raise NotFound(f"No outbox item with id {outbox_id!r}.") from None
    return item


def outbox_out(item: OutboxItem) -> OutboxOut:
    return schemas.OutboxOut(id=item.outbox_id, mailbox_id=item.mailbox_id, status=item.status, mode=item.mode,
                             in_reply_to=item.in_reply_to, subject=item.subject,
                             recipients=len(item.recipients or []), send_at=item.send_at,
                             attempts=int(item.attempts or 0), last_error=item.last_error,
                             rfc_message_id=item.rfc_message_id, provider_message_id=item.provider_message_id,
                             provider_thread_id=item.provider_thread_id, message_id=item.message_id,
                             sent_at=item.sent_at, created_at=item.created_at, updated_at=item.updated_at)


@route(bp, "/v1/mailboxes/{mailbox_id}/send", methods=["POST"], body="chalicelib.api.schemas.outbox:SendRequest",
       response="chalicelib.api.schemas.outbox:OutboxOut", status=202,
       errors=(404, 413, 422), max_body=MAX_SEND_BODY_BYTES, tags=TAGS,
       summary="Send, reply or forward from a mailbox (accepted into the outbox; Idempotency-Key header; "
               "read_write or owner: a read-only user gets 404)")
def send(mailbox_id: str, body: SendRequest):
    mailbox, level = _sending_mailbox(mailbox_id)
    problems = body.problems()
    if problems:
        raise invalid(problems)
    key = bp.current_request.headers.get("idempotency-key")
    if key is not None and not _IDEMPOTENCY_KEY.match(key):
        raise field_error("Idempotency-Key", "1-255 visible ASCII characters")
    original = _original(body)
    try:
        item, _created = service.accept(mailbox, current_principal().user_id, body, original, key,
                                        via_share=level != "owner")
    except TooLarge as exc:
        raise PayloadTooLarge(str(exc), errors=[{"field": exc.field, "message": exc.message}]) from None
    except InvalidField as exc:
        raise field_error(exc.field, exc.message) from None
    except KeyReused as exc:
        raise IdempotencyKeyReused(str(exc)) from None
    return outbox_out(item)


@route(bp, "/v1/outbox/{outbox_id}", methods=["GET"], response="chalicelib.api.schemas.outbox:OutboxOut", tags=TAGS,
       summary="An outbox item: status, attempts, last error, provider ids, the stored sent copy")
def get_outbox_item(outbox_id: str):
    return outbox_out(_item(outbox_id))


@route(bp, "/v1/outbox/{outbox_id}/cancel", methods=["POST"], response="chalicelib.api.schemas.outbox:OutboxOut",
       errors=(409,), tags=TAGS, summary="Cancel a queued or scheduled outbox item (409 once it is sending or done)")
def cancel_outbox_item(outbox_id: str):
    item = _item(outbox_id, "read_write")
    try:
        return outbox_out(service.cancel(item))
    except NotCancellable as exc:
        raise Conflict(str(exc), extra={"status_now": service.get_item(item.tenant_id, item.outbox_id).status}) \
            from None
