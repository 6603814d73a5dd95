"""Privacy controls: never-import / never-pair lists, private marks, retention, erasure (docs/api.md,
"Privacy controls"). The mailbox purge is `DELETE /v1/mailboxes/{id}?purge=true` (blueprints/mailboxes.py).

Access: the tenant's lists, retention and erasure are the tenant admin's (a call without X-User-Id; else 403);
a user's own lists are that user's (X-User-Id equal to the path's user id) or the tenant admin's — another
user gets 404 (the list's existence is not revealed); marking a message private needs `read_write` on it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from chalice import Blueprint

from chalicelib.api import access
from chalicelib.api.context import current_principal
from chalicelib.api.errors import NotFound, field_error
from chalicelib.api.guards import require_tenant_admin
from chalicelib.api.routing import route
from chalicelib.lazy import lazy_module

if TYPE_CHECKING:   # annotations only: the models load on first use (chalicelib.api.routing)
    from chalicelib.api.schemas.privacy import ErasureIn, PrivacyListsIn, PrivacyMarkIn, PrivacySettingsIn

# Imported when a route first uses them (chalicelib.lazy: the API's cold start).
mailbox_schemas = lazy_module("chalicelib.api.schemas.mailboxes")
erase = lazy_module("chalicelib.erasure.erase")
message_privacy = lazy_module("chalicelib.messages.privacy")
privacy_models = lazy_module("chalicelib.models.privacy")
manual = lazy_module("chalicelib.pairing.manual")
lists = lazy_module("chalicelib.privacy.lists")

bp = Blueprint(__name__)
TAGS = ("privacy",)


def _list_out(item) -> dict:
    return {"scope": item.scope, "never_import": list(item.never_import or []),
            "never_pair": list(item.never_pair or []), "updated_at": item.updated_at or None}


def _put(tenant_id: str, scope: str, body: PrivacyListsIn) -> dict:
    for name in ("never_import", "never_pair"):
        try:
            lists.normalize_entries(getattr(body, name))
        except lists.InvalidEntry as exc:
            raise field_error(name, str(exc)) from None
    return _list_out(lists.put_list(tenant_id, scope, body.never_import, body.never_pair))


def _user_scope(user_id: str) -> str:
    principal = current_principal()
    try:
        mailbox_schemas.check_user_id(user_id)
    except ValueError:
        raise NotFound(f"No user {user_id[:130]!r}.") from None
    if principal.user_id is not None and principal.user_id != user_id:
        raise NotFound(f"No user {user_id!r}.")
    return privacy_models.user_scope(user_id)


@route(bp, "/v1/privacy/lists", methods=["GET"], response="chalicelib.api.schemas.privacy:PrivacyListsOut",
       errors=(403,), tags=TAGS, summary="The tenant's never-import / never-pair lists (tenant admin)")
def get_tenant_lists():
    principal = require_tenant_admin()
    return _list_out(lists.get_list(principal.tenant_id, privacy_models.TENANT_SCOPE))


@route(bp, "/v1/privacy/lists", methods=["PUT"], body="chalicelib.api.schemas.privacy:PrivacyListsIn",
       response="chalicelib.api.schemas.privacy:PrivacyListsOut", errors=(403,), tags=TAGS,
       summary="Replace the tenant's never-import / never-pair lists (addresses and @domains)")
def put_tenant_lists(body: PrivacyListsIn):
    principal = require_tenant_admin()
    return _put(principal.tenant_id, privacy_models.TENANT_SCOPE, body)


@route(bp, "/v1/users/{user_id}/privacy-lists", methods=["GET"],
       response="chalicelib.api.schemas.privacy:PrivacyListsOut", tags=TAGS,
       summary="A user's own never-import / never-pair lists (applied to the mailboxes the user owns)")
def get_user_lists(user_id: str):
    return _list_out(lists.get_list(current_principal().tenant_id, _user_scope(user_id)))


@route(bp, "/v1/users/{user_id}/privacy-lists", methods=["PUT"], body="chalicelib.api.schemas.privacy:PrivacyListsIn",
       response="chalicelib.api.schemas.privacy:PrivacyListsOut", tags=TAGS,
       summary="Replace a user's own never-import / never-pair lists")
def put_user_lists(user_id: str, body: PrivacyListsIn):
    return _put(current_principal().tenant_id, _user_scope(user_id), body)


@route(bp, "/v1/messages/{message_id}/privacy", methods=["PUT"], body="chalicelib.api.schemas.privacy:PrivacyMarkIn",
       response="chalicelib.api.schemas.privacy:PrivacyMarkOut",
       tags=TAGS, summary="Mark a message private (hidden from record tabs, record readers and pairing events) "
                          "or not; needs read_write")
def put_message_privacy(message_id: str, body: PrivacyMarkIn):
    message = access.get_message(message_id, "read_write")
    changed = message_privacy.set_private([message], body.private, manual.actor_of(current_principal().user_id))
    return {"id": message.message_id, "private": body.private, "changed": bool(changed)}


@route(bp, "/v1/privacy/settings", methods=["GET"], response="chalicelib.api.schemas.privacy:PrivacySettingsOut",
       errors=(403,), tags=TAGS, summary="The tenant's retention period (tenant admin)")
def get_privacy_settings():
    principal = require_tenant_admin()
    item = lists.get_list(principal.tenant_id, privacy_models.TENANT_SCOPE)
    return {"retention_days": int(item.retention_days) if item.retention_days else None}


@route(bp, "/v1/privacy/settings", methods=["PUT"], body="chalicelib.api.schemas.privacy:PrivacySettingsIn",
       response="chalicelib.api.schemas.privacy:PrivacySettingsOut", errors=(403,), tags=TAGS,
       summary="Set the tenant's retention period: stored mail older than it is deleted (never at the provider)")
def put_privacy_settings(body: PrivacySettingsIn):
    principal = require_tenant_admin()
    try:
        item = lists.set_retention(principal.tenant_id, body.retention_days)
    except lists.InvalidEntry as exc:
        raise field_error("retention_days", str(exc)) from None
    return {"retention_days": int(item.retention_days) if item.retention_days else None}


@route(bp, "/v1/erasure", methods=["POST"], body="chalicelib.api.schemas.privacy:ErasureIn",
       response="chalicelib.api.schemas.privacy:ErasureOut", status=202, errors=(403,),
       tags=TAGS, summary="Erase every stored message a person takes part in, tenant-wide (tenant admin); "
                          "finishes in the background: see GET /v1/erasure/{job_id}")
def post_erasure(body: ErasureIn):
    principal = require_tenant_admin()
    try:
        job = erase.create(principal.tenant_id, body.email)
    except ValueError as exc:
        raise field_error("email", str(exc)) from None
    return erase.job_out(erase.run_for_request(job))


@route(bp, "/v1/erasure/{job_id}", methods=["GET"], response="chalicelib.api.schemas.privacy:ErasureOut", errors=(403,),
       tags=TAGS, summary="An erasure: status (running | done), counts, erased message ids (tenant admin)")
def get_erasure(job_id: str):
    principal = require_tenant_admin()
    try:
        return erase.job_out(privacy_models.ErasureJob.get(principal.tenant_id, job_id))
    except privacy_models.ErasureJob.DoesNotExist:
        raise NotFound(f"No erasure with id {job_id!r}.") from None
