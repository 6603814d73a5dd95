"""Manual pairing (pair, unpair, create a record from a message) and the pairing audit with undo."""
from __future__ import annotations

from typing import TYPE_CHECKING

from chalice import Blueprint

from chalicelib.api import access
from chalicelib.api.context import current_principal
from chalicelib.api.errors import Conflict, NotFound, field_error
from chalicelib.api.guards import require_tenant_admin
from chalicelib.api.pagination import decode_cursor, encode_cursor
from chalicelib.api.routing import route
from chalicelib.api.blueprints.directory import record_out
from chalicelib.lazy import lazy_module
from chalicelib.models.message import Message

if TYPE_CHECKING:   # annotations only: the request/response models load on first use (chalicelib.api.routing),
                    # the table's model with the service that returns it (chalicelib.lazy)
    from chalicelib.api.schemas.links import AuditQuery, CreateRecordIn, LinkIn
    from chalicelib.models.pairing import AuditEntry

# Imported when a route first uses them (chalicelib.lazy: the API's cold start).
schemas = lazy_module("chalicelib.api.schemas.links")
manual = lazy_module("chalicelib.pairing.manual")

bp = Blueprint(__name__)
TAGS = ("pairing",)


def pairing_call(fn, *args):
    """Run a `manual` operation, turning its `PairingError` into 404/409/422 (naming the field)."""
    try:
        return fn(*args)
    except manual.PairingError as exc:
        if exc.kind == "invalid":
            raise field_error(exc.field or "body", exc.detail) from None
        raise (NotFound if exc.kind == "not_found" else Conflict)(exc.detail) from None


def pairable_message(message_id: str) -> Message:
    """The message, when the caller may change its pairing: the tenant, the mailbox's owner or a user with a
    `read_write` share (404 when invisible, 403 when only readable). A user who sees it only through a
    record's readers has "read": re-pairing it to a record read by "*" would show it to the whole tenant."""
    return access.get_message(message_id, "read_write")


def audit_out(entry: AuditEntry) -> dict:
    return schemas.AuditOut(id=entry.audit_id, action=entry.action, actor=entry.actor, reason=entry.reason,
                            message_id=entry.message_id, entity_type=entry.entity_type, entity_id=entry.entity_id,
                            signal_id=entry.signal_id, undo_of=entry.undo_of, undone_by=entry.undone_by,
                            details=entry.details or {}, created_at=entry.created_at).model_dump()


@route(bp, "/v1/messages/{message_id}/links", methods=["POST"], body="chalicelib.api.schemas.links:LinkIn",
       response="chalicelib.api.schemas.links:LinkOut", status=201,
       summary="Pair a message with a directory record by hand", tags=TAGS, errors=(409,))
def add_link(message_id: str, body: LinkIn):
    message = pairable_message(message_id)
    link = pairing_call(manual.link_manually, message, body.type, body.id, current_principal().user_id)
    return {"type": link.entity_type, "id": link.entity_id, "source": link.source, "reason": link.reason}


@route(bp, "/v1/messages/{message_id}/links/{record_type}/{entity_id}", methods=["DELETE"], status=204,
       summary="Unpair a message from a record (kept in the audit trail)", tags=TAGS)
def delete_link(message_id: str, record_type: str, entity_id: str):
    message = pairable_message(message_id)
    pairing_call(manual.unlink, message, record_type, entity_id, current_principal().user_id)
    return None


@route(bp, "/v1/messages/{message_id}/create-record", methods=["POST"],
       body="chalicelib.api.schemas.links:CreateRecordIn", response="chalicelib.api.schemas.links:CreatedRecordOut",
       status=201, summary="Create a directory record from a message and pair it", tags=TAGS, errors=(422,),
       location="/v1/directory/{record.type}/{record.id}")
def create_record(message_id: str, body: CreateRecordIn):
    message = pairable_message(message_id)
    made = pairing_call(manual.create_record, message, body.type, current_principal().user_id, body.name,
                        body.readers, body.company_id)
    return {"record": record_out(made.record), "created": made.created,
            "link": {"type": body.type, "id": made.record.record_id, "source": "created",
                     "reason": "record created from this message"}}


@route(bp, "/v1/audit", methods=["GET"], query="chalicelib.api.schemas.links:AuditQuery",
       response="chalicelib.api.schemas.links:AuditList", summary="The pairing audit trail, newest first", tags=TAGS)
def list_audit(query: AuditQuery):
    tenant_id = require_tenant_admin().tenant_id
    scope = f"audit:{query.message_id or ''}"
    items, last = manual.list_audit(tenant_id, query.limit, decode_cursor(query.cursor, tenant_id, scope),
                                    query.message_id)
    return {"items": [audit_out(e) for e in items], "next_cursor": encode_cursor(tenant_id, scope, last)}


@route(bp, "/v1/audit/{audit_id}/undo", methods=["POST"], response="chalicelib.api.schemas.links:AuditOut",
       summary="Undo an automatic pairing action (the undo is itself recorded)", tags=TAGS, errors=(409,))
def undo(audit_id: str):
    tenant_id = require_tenant_admin().tenant_id
    return audit_out(pairing_call(manual.undo, tenant_id, audit_id, None))
