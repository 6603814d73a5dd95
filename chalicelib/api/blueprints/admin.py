"""Operator API: tenants and their plans (operator key)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from chalice import Blueprint

from chalicelib.api import auth_cache
from chalicelib.api.errors import NotFound
from chalicelib.api.pagination import decode_cursor, encode_cursor
from chalicelib.api.routing import route
from chalicelib.lazy import lazy_module
from chalicelib.tenancy import service

if TYPE_CHECKING:   # annotations only: the models load on first use (chalicelib.api.routing)
    from chalicelib.api.schemas.common import ListQuery
    from chalicelib.api.schemas.tenancy import CreateTenant, UpdateTenant

# Imported when a route first uses them (chalicelib.lazy: the API's cold start).
schemas = lazy_module("chalicelib.api.schemas.tenancy")

bp = Blueprint(__name__)
TAGS = ("operator",)


def tenant_out(tenant) -> dict:
    return schemas.TenantOut(id=tenant.tenant_id, name=tenant.name, plan=tenant.plan, status=tenant.status,
                             own_domains=list(tenant.own_domains or []), settings=tenant.settings or {},
                             created_at=tenant.created_at, updated_at=tenant.updated_at).model_dump()


@route(bp, "/v1/admin/tenants", methods=["POST"], auth="operator", body="chalicelib.api.schemas.tenancy:CreateTenant",
       response="chalicelib.api.schemas.tenancy:TenantCreated", status=201, location="/v1/admin/tenants/{id}",
       summary="Create a tenant (and its first API key)", tags=TAGS)
def create_tenant(body: CreateTenant):
    tenant = service.create_tenant(body.name, body.plan, own_domains=body.own_domains,
                                   settings=body.settings.model_dump(exclude_none=True))
    out = tenant_out(tenant)
    out["api_key"] = service.create_key(tenant.tenant_id, "initial").plaintext if body.issue_key else None
    return out


@route(bp, "/v1/admin/tenants", methods=["GET"], auth="operator", query="chalicelib.api.schemas.common:ListQuery",
       response="chalicelib.api.schemas.tenancy:TenantList", summary="List tenants", tags=TAGS)
def list_tenants(query: ListQuery):
    items, last = service.list_tenants(query.limit, decode_cursor(query.cursor, None, "tenants"))
    return {"items": [tenant_out(t) for t in items], "next_cursor": encode_cursor(None, "tenants", last)}


@route(bp, "/v1/admin/tenants/{tenant_id}", methods=["PATCH"], auth="operator",
       body="chalicelib.api.schemas.tenancy:UpdateTenant", response="chalicelib.api.schemas.tenancy:TenantOut",
       summary="Update a tenant (name, plan, status, settings)", tags=TAGS)
def update_tenant(tenant_id: str, body: UpdateTenant):
    tenant = service.get_tenant(tenant_id)
    if tenant is None:
        raise NotFound(f"No tenant with id {tenant_id!r}.")
    changes = body.model_dump(exclude_unset=True, exclude_none=True)  # an explicit null leaves the field as is
    if "settings" in changes:
        changes["settings"] = {**(tenant.settings or {}), **body.settings.model_dump(exclude_none=True)}
    if "own_domains" in changes:
        changes["own_domains"] = [d.lower() for d in changes["own_domains"]]
    updated = service.update_tenant(tenant, **changes)
    auth_cache.forget_all()          # a suspended tenant's keys stop at once in this process
    return tenant_out(updated)
