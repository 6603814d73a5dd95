"""Tenant API keys ("web service applications"): create (shown once), list, restrict, deactivate, revoke."""
from __future__ import annotations

from typing import TYPE_CHECKING

from chalice import Blueprint

from chalicelib.api import auth_cache
from chalicelib.api.guards import not_found, require_tenant_admin
from chalicelib.api.pagination import decode_cursor, encode_cursor
from chalicelib.api.routing import route
from chalicelib.lazy import lazy_module
from chalicelib.models.tenant import ApiKey
from chalicelib.security.apikeys import normalize_allowed_ips
from chalicelib.tenancy import service

if TYPE_CHECKING:   # annotations only: the models load on first use (chalicelib.api.routing)
    from chalicelib.api.schemas.common import ListQuery
    from chalicelib.api.schemas.tenancy import CreateKey, UpdateKey

# Imported when a route first uses them (chalicelib.lazy: the API's cold start).
schemas = lazy_module("chalicelib.api.schemas.tenancy")

bp = Blueprint(__name__)
TAGS = ("keys",)


def key_out(record: ApiKey) -> dict:
    return schemas.KeyOut(id=record.key_id, name=record.name, prefix=f"mbk_{record.key_id}_", status=record.status,
                          allowed_ips=list(record.allowed_ips or []), require_user=bool(record.require_user),
                          created_at=record.created_at, last_used_at=record.last_used_at).model_dump()


def _owned_key(key_id: str) -> ApiKey:
    principal = require_tenant_admin()
    record = service.get_key(principal.tenant_id, key_id)
    if record is None:
        raise not_found("API key", key_id)
    return record


@route(bp, "/v1/keys", methods=["POST"], body="chalicelib.api.schemas.tenancy:CreateKey",
       response="chalicelib.api.schemas.tenancy:KeyCreated", status=201, location="/v1/keys/{id}",
       summary="Create an API key (the key is shown once)", tags=TAGS)
def create_key(body: CreateKey):
    principal = require_tenant_admin()
    created = service.create_key(principal.tenant_id, body.name, allowed_ips=body.allowed_ips,
                                 require_user=body.require_user)
    return {**key_out(created.record), "key": created.plaintext}


@route(bp, "/v1/keys", methods=["GET"], query="chalicelib.api.schemas.common:ListQuery",
       response="chalicelib.api.schemas.tenancy:KeyList", summary="List API keys", tags=TAGS)
def list_keys(query: ListQuery):
    principal = require_tenant_admin()
    items, last = service.list_keys(principal.tenant_id, query.limit,
                                    decode_cursor(query.cursor, principal.tenant_id, "keys"))
    return {"items": [key_out(k) for k in items], "next_cursor": encode_cursor(principal.tenant_id, "keys", last)}


@route(bp, "/v1/keys/{key_id}", methods=["PATCH"], body="chalicelib.api.schemas.tenancy:UpdateKey",
       response="chalicelib.api.schemas.tenancy:KeyOut", summary="Rename, activate/deactivate or restrict an API key",
       tags=TAGS)
def update_key(key_id: str, body: UpdateKey):
    record = _owned_key(key_id)
    actions = []
    if body.name is not None:
        actions.append(ApiKey.name.set(body.name))
    if body.status is not None:
        actions.append(ApiKey.status.set(body.status))
    if body.allowed_ips is not None:
        actions.append(ApiKey.allowed_ips.set(normalize_allowed_ips(body.allowed_ips)))
    if body.require_user is not None:
        actions.append(ApiKey.require_user.set(body.require_user))
    if actions:
        record.update(actions=actions)
        auth_cache.forget_all()
    return key_out(record)


@route(bp, "/v1/keys/{key_id}", methods=["DELETE"], status=204, summary="Revoke (delete) an API key", tags=TAGS)
def delete_key(key_id: str):
    _owned_key(key_id).delete()
    auth_cache.forget_all()
    return None
