"""Tenant and API key lifecycle, shared by the operator API, the tenant API and the operator CLI."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable

from pynamodb.exceptions import DoesNotExist

from chalicelib.ids import new_id
from chalicelib.models.tenant import ApiKey, Tenant
from chalicelib.security import apikeys
from chalicelib.tenancy.plans import MAILBOX_CONNECTION, get_plan
from chalicelib.timeutil import now_iso


@dataclass(frozen=True)
class CreatedKey:
    """A key just created: its stored record and its plaintext, which only this answer shows."""
    record: ApiKey
    plaintext: str


def create_tenant(name: str, plan: str, *, tenant_id: str | None = None,
                  settings: dict | None = None, own_domains: list[str] | None = None) -> Tenant:
    get_plan(plan)
    now = now_iso()
    tenant = Tenant(tenant_id or new_id("tnt"), name=name, plan=plan, settings=settings or {},
                    own_domains=[d.lower() for d in own_domains or []], created_at=now, updated_at=now)
    tenant.save(condition=Tenant.tenant_id.does_not_exist())
    return tenant


def get_tenant(tenant_id: str) -> Tenant | None:
    try:
        return Tenant.get(tenant_id)
    except DoesNotExist:
        return None


def may_sync(tenant: Tenant) -> bool:
    """An active tenant whose plan includes mailbox connection; others' mailboxes are neither scheduled nor
    synced (and resume when the tenant is active on such a plan again)."""
    try:
        plan = get_plan(tenant.plan)
    except ValueError:
        return False
    return tenant.status == "active" and MAILBOX_CONNECTION in plan.features


class SyncPermission:
    """`may_sync` per tenant id, cached for `ttl` seconds (a warm worker or one scheduler tick reads each
    tenant once)."""

    def __init__(self, ttl: float = 60.0, clock=time.monotonic):
        self.ttl, self.clock = ttl, clock
        self._cache: dict[str, tuple[float, bool]] = {}

    def clear(self) -> None:
        self._cache.clear()

    def __call__(self, tenant_id: str) -> bool:
        cached = self._cache.get(tenant_id)
        if cached is not None and cached[0] > self.clock():
            return cached[1]
        tenant = get_tenant(tenant_id)
        allowed = tenant is not None and may_sync(tenant)
        self._cache[tenant_id] = (self.clock() + self.ttl, allowed)
        return allowed

    def prefetch(self, tenant_ids: Iterable[str]) -> None:
        """Read the tenants not cached yet with BatchGetItem (PynamoDB sends ≤100 keys a call and retries
        unprocessed keys), so a scheduler page of 100 mailboxes costs one read, not one per tenant."""
        now = self.clock()
        missing = {t for t in tenant_ids if not (t in self._cache and self._cache[t][0] > now)}
        if not missing:
            return
        found = {tenant.tenant_id: tenant for tenant in Tenant.batch_get(list(missing))}
        expires = self.clock() + self.ttl
        for tenant_id in missing:
            tenant = found.get(tenant_id)
            self._cache[tenant_id] = (expires, tenant is not None and may_sync(tenant))


def list_tenants(limit: int, last_key: dict | None) -> tuple[list[Tenant], dict | None]:
    result = Tenant.by_created.query("tenant", limit=limit, last_evaluated_key=last_key)
    items = list(result)
    return items, result.last_evaluated_key


def update_tenant(tenant: Tenant, **changes) -> Tenant:
    if "plan" in changes and changes["plan"] is not None:
        get_plan(changes["plan"])
    actions = [getattr(Tenant, name).set(value) for name, value in changes.items() if value is not None]
    actions.append(Tenant.updated_at.set(now_iso()))
    tenant.update(actions=actions)
    return tenant


def create_key(tenant_id: str, name: str, *, allowed_ips: list[str] | None = None,
               require_user: bool = False, status: str = "active") -> CreatedKey:
    issued = apikeys.issue_key()
    record = ApiKey(issued.key_id, tenant_id=tenant_id, name=name, key_sha256=issued.sha256, status=status,
                    allowed_ips=apikeys.normalize_allowed_ips(allowed_ips or []), require_user=require_user,
                    created_at=now_iso())
    record.save(condition=ApiKey.key_id.does_not_exist())
    return CreatedKey(record=record, plaintext=issued.plaintext)


def get_key(tenant_id: str, key_id: str) -> ApiKey | None:
    """The key when it belongs to `tenant_id`; another tenant's key is indistinguishable from none."""
    try:
        record = ApiKey.get(key_id)
    except DoesNotExist:
        return None
    return record if record.tenant_id == tenant_id else None


def list_keys(tenant_id: str, limit: int, last_key: dict | None) -> tuple[list[ApiKey], dict | None]:
    result = ApiKey.by_tenant.query(tenant_id, limit=limit, last_evaluated_key=last_key)
    items = list(result)
    return items, result.last_evaluated_key
