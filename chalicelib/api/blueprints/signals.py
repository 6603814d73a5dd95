"""Suggested pairings (mailboxes in `signal` mode): list, accept (becomes a link), dismiss."""
from __future__ import annotations

from typing import TYPE_CHECKING

from chalice import Blueprint

from chalicelib.api import access
from chalicelib.api.context import current_principal
from chalicelib.api.blueprints.links import pairing_call
from chalicelib.api.guards import not_found
from chalicelib.api.pagination import decode_cursor, encode_cursor
from chalicelib.api.routing import route
from chalicelib.lazy import lazy_module
from chalicelib.models.mailbox import Mailbox

if TYPE_CHECKING:   # annotations only: the request/response models load on first use (chalicelib.api.routing),
                    # the table's model with the service that returns it (chalicelib.lazy)
    from chalicelib.api.schemas.signals import SignalQuery
    from chalicelib.models.pairing import Signal

# Imported when a route first uses them (chalicelib.lazy: the API's cold start).
schemas = lazy_module("chalicelib.api.schemas.signals")
pairing_models = lazy_module("chalicelib.models.pairing")
manual = lazy_module("chalicelib.pairing.manual")
pairing_context = lazy_module("chalicelib.pairing.context")
pairing_store = lazy_module("chalicelib.pairing.store")

bp = Blueprint(__name__)
TAGS = ("pairing",)


def signal_out(signal: Signal) -> dict:
    return schemas.SignalOut(id=signal.signal_id, message_id=signal.message_id, mailbox_id=signal.mailbox_id,
                             record={"type": signal.entity_type, "id": signal.entity_id}, reason=signal.reason,
                             matcher=signal.matcher, confidence=float(signal.confidence), status=signal.status,
                             created_at=signal.created_at, resolved_at=signal.resolved_at,
                             resolved_by=signal.resolved_by).model_dump()


def _readable_mailboxes(tenant_id: str, mailbox_ids: set[str]) -> set[str]:
    principal = current_principal()
    found = Mailbox.batch_get([(tenant_id, m) for m in sorted(mailbox_ids)]) if mailbox_ids else []
    return {m.mailbox_id for m in found if access.mailbox_access(m, principal) is not None}


@route(bp, "/v1/signals", methods=["GET"], query="chalicelib.api.schemas.signals:SignalQuery",
       response="chalicelib.api.schemas.signals:SignalList",
       summary="Suggested pairings, newest first (filter by status and mailbox)", tags=TAGS,
       errors=(404,))  # 404: mailbox_id names no visible mailbox
def list_signals(query: SignalQuery):
    principal = current_principal()
    tenant_id = principal.tenant_id
    scope = f"signals:{query.status}:{query.mailbox_id or ''}"
    start = decode_cursor(query.cursor, tenant_id, scope)
    Signal = pairing_models.Signal
    if query.mailbox_id:
        mailbox = access.get_mailbox(query.mailbox_id, "read")
        page = Signal.by_mailbox_status.query(f"{mailbox.mailbox_id}#{query.status}", scan_index_forward=False,
                                              limit=query.limit, last_evaluated_key=start)
    else:
        page = Signal.by_tenant_status.query(f"{tenant_id}#{query.status}", scan_index_forward=False,
                                             limit=query.limit, last_evaluated_key=start)
    items = [s for s in page if s.tenant_id == tenant_id]
    if principal.user_id is not None and not query.mailbox_id:
        readable = _readable_mailboxes(tenant_id, {s.mailbox_id for s in items})
        items = [s for s in items if s.mailbox_id in readable]
    return {"items": [signal_out(s) for s in items],
            "next_cursor": encode_cursor(tenant_id, scope, page.last_evaluated_key)}


def _resolvable_signal(signal_id: str) -> Signal:
    """The signal, when the caller may accept or dismiss it: 404 unless its mailbox is visible to the caller,
    403 `insufficient-access` below `read_write` (resolving it pairs or un-suggests the message)."""
    principal = current_principal()
    signal = pairing_store.get_signal(principal.tenant_id, signal_id)
    mailbox = pairing_context.get_mailbox(principal.tenant_id, signal.mailbox_id) if signal is not None else None
    level = access.mailbox_access(mailbox, principal) if mailbox is not None else None
    if level is None:
        raise not_found("signal", signal_id)
    access.require_level(level, "read_write", "signal's mailbox")
    return signal


@route(bp, "/v1/signals/{signal_id}/accept", methods=["POST"], response="chalicelib.api.schemas.signals:SignalOut",
       summary="Accept a suggestion: the message is paired with the record", tags=TAGS, errors=(409,))
def accept(signal_id: str):
    signal = _resolvable_signal(signal_id)
    pairing_call(manual.accept_signal, signal.tenant_id, signal.signal_id, current_principal().user_id)
    return signal_out(pairing_store.get_signal(signal.tenant_id, signal.signal_id))


@route(bp, "/v1/signals/{signal_id}/dismiss", methods=["POST"], response="chalicelib.api.schemas.signals:SignalOut",
       summary="Dismiss a suggestion (it is not suggested again for this message)", tags=TAGS,
       errors=(409,))
def dismiss(signal_id: str):
    signal = _resolvable_signal(signal_id)
    pairing_call(manual.dismiss_signal, signal.tenant_id, signal.signal_id, current_principal().user_id)
    return signal_out(pairing_store.get_signal(signal.tenant_id, signal.signal_id))
