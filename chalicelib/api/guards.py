"""Access guards shared by routes: tenant-admin only, plan features."""
from __future__ import annotations

from chalicelib.api.context import Principal, current_principal
from chalicelib.api.errors import FeatureNotInPlan, Forbidden, NotFound
from chalicelib.models.tenant import Tenant
from chalicelib.tenancy import service
from chalicelib.tenancy.plans import get_plan


def require_tenant_admin() -> Principal:
    principal = current_principal()
    if not principal.is_tenant_admin:
        raise Forbidden("This call acts for the tenant; send it without X-User-Id.")
    return principal


def current_tenant() -> Tenant:
    tenant = service.get_tenant(current_principal().tenant_id)
    if tenant is None or tenant.status != "active":
        raise Forbidden("This tenant is not active.")
    return tenant


def require_feature(feature: str) -> Tenant:
    tenant = current_tenant()
    if feature not in get_plan(tenant.plan).features:
        raise FeatureNotInPlan(f"The '{tenant.plan}' plan does not include {feature.replace('_', ' ')}.")
    return tenant


def not_found(kind: str, ident: str) -> NotFound:
    return NotFound(f"No {kind} with id {ident!r}.")


def not_configured(kind: str, put_path: str) -> NotFound:
    """404 for a tenant's single setting (its webhook, its relay) that was never PUT: it has no id to name."""
    return NotFound(f"No {kind} is configured: PUT {put_path} creates it.")
