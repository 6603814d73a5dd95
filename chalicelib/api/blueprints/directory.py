"""The CRM directory: records messages pair with, their batch upsert, and a record's e-mails tab."""
from __future__ import annotations

from typing import TYPE_CHECKING

from chalice import Blueprint
from pydantic import ValidationError

from chalicelib.api import access
from chalicelib.api.context import current_principal
from chalicelib.api.errors import field_error
from chalicelib.api.guards import not_found, require_tenant_admin
from chalicelib.api.pagination import decode_cursor, encode_cursor
from chalicelib.api.routing import route, validation_errors
from chalicelib.lazy import lazy_module
from chalicelib.models.directory import RECORD_TYPES, DirectoryRecord

if TYPE_CHECKING:   # annotations only: the models load on first use (chalicelib.api.routing)
    from chalicelib.api.schemas.common import ListQuery
    from chalicelib.api.schemas.directory import RecordBatch, RecordIn

# Imported when a route first uses them (chalicelib.lazy: the API's cold start).
schemas = lazy_module("chalicelib.api.schemas.directory")
views = lazy_module("chalicelib.messages.views")
directory = lazy_module("chalicelib.pairing.directory")
late = lazy_module("chalicelib.pairing.late")
visibility = lazy_module("chalicelib.pairing.visibility")

bp = Blueprint(__name__)
TAGS = ("directory",)


def record_out(item: DirectoryRecord) -> dict:
    return schemas.RecordOut(type=item.type, id=item.record_id, name=item.name, emails=list(item.emails or []),
                             domains=list(item.domains or []), number=item.number, company_id=item.company_id,
                             status=item.status, readers=list(item.readers or []), created_by=item.created_by,
                             created_at=item.created_at, updated_at=item.updated_at).model_dump()


def _type(record_type: str) -> str:
    if record_type not in RECORD_TYPES:
        raise field_error("type", f"must be one of {', '.join(RECORD_TYPES)}")
    return record_type


def _record(record_type: str, record_id: str) -> DirectoryRecord:
    item = directory.get_record(current_principal().tenant_id, _type(record_type), record_id)
    if item is None:
        raise not_found(record_type, record_id)
    return item


@route(bp, "/v1/directory/{record_type}/{record_id}", methods=["PUT"], body="chalicelib.api.schemas.directory:RecordIn",
       response="chalicelib.api.schemas.directory:RecordOut", summary="Create or replace a directory record", tags=TAGS)
def put_record(record_type: str, record_id: str, body: RecordIn):
    tenant_id = require_tenant_admin().tenant_id
    try:
        outcome = directory.put_record(tenant_id, _type(record_type), record_id, body.model_dump())
    except directory.InvalidRecord as exc:
        field, _, message = str(exc).partition(": ")
        raise field_error(field, message) from None
    late.announce_outcomes(tenant_id, [outcome])
    return record_out(outcome.record)


@route(bp, "/v1/directory/{record_type}/{record_id}", methods=["GET"],
       response="chalicelib.api.schemas.directory:RecordOut", summary="A directory record", tags=TAGS,
       errors=(422,))  # 422: unknown record_type
def get_record(record_type: str, record_id: str):
    return record_out(_record(record_type, record_id))


@route(bp, "/v1/directory/{record_type}/{record_id}", methods=["DELETE"], status=204,
       summary="Delete a directory record (its message links are removed shortly after; the audit trail keeps "
               "them)", tags=TAGS, errors=(422,))  # 422: unknown record_type
def delete_record(record_type: str, record_id: str):
    tenant_id = require_tenant_admin().tenant_id
    dropped = directory.delete_record(tenant_id, _type(record_type), record_id)
    if dropped is None:
        late.announce_leftovers(tenant_id, record_type, record_id)
        raise not_found(record_type, record_id)
    late.announce_deleted(tenant_id, dropped)
    return None


def _validated(raw: dict) -> dict:
    try:
        return schemas.BatchRecord.model_validate(raw).model_dump()
    except ValidationError as exc:
        errors = validation_errors(exc)
        raise directory.InvalidRecord("; ".join(f"{e['field']}: {e['message']}" for e in errors[:3])) from None


@route(bp, "/v1/directory/batch", methods=["POST"], body="chalicelib.api.schemas.directory:RecordBatch",
       response="chalicelib.api.schemas.directory:BatchResult",
       summary="Upsert up to 1,000 records; failures are reported per record", tags=TAGS)
def batch(body: RecordBatch):
    tenant_id = require_tenant_admin().tenant_id
    checked, results = [], []
    for raw in body.records:
        try:
            checked.append((len(results), _validated(raw if isinstance(raw, dict) else {})))
            results.append(None)
        except directory.InvalidRecord as exc:
            raw = raw if isinstance(raw, dict) else {}
            results.append({"type": raw.get("type"), "id": raw.get("id"), "status": "error", "error": str(exc)})
    stored, outcomes = directory.put_batch(tenant_id, [record for _, record in checked])
    for (position, _), result in zip(checked, stored):
        results[position] = result
    return {"results": results, "pairing_queued": late.announce_outcomes(tenant_id, outcomes)}


@route(bp, "/v1/directory/{record_type}/{record_id}/messages", methods=["GET"],
       query="chalicelib.api.schemas.common:ListQuery", response="chalicelib.api.schemas.messages:MessageList",
       summary="The record's e-mails tab: paired messages the caller may see", tags=TAGS)
def record_messages(record_type: str, record_id: str, query: ListQuery):
    principal = current_principal()
    item = _record(record_type, record_id)
    scope = f"directory-messages:{item.record_key}"
    messages, last = visibility.record_message_page(principal.tenant_id, item.type, item.record_id, query.limit,
                                                    decode_cursor(query.cursor, principal.tenant_id, scope))
    if principal.user_id is not None and not visibility.record_lets_read(item.readers, principal.user_id):
        messages = [m for m in messages if access.can_read_message(m, principal)]
    snippets = visibility.snippet_mailboxes(principal.tenant_id, {m.mailbox_id for m in messages})
    links = views.page_links(messages)
    return {"items": [views.summary(m, show_snippet=m.mailbox_id in snippets, links=links[m.message_id])
                      for m in messages],
            "next_cursor": encode_cursor(principal.tenant_id, scope, last)}
