"""Per-tenant pairing context (settings, own addresses, rules), cached briefly per process.

The worker pairs many messages of one tenant in a row; re-reading the tenant, its mailboxes and its rules
for each would triple the reads per message. Entries live `CACHE_SECONDS` (env
`MAILBRIDGE_PAIRING_CACHE_SECONDS`, default 30); the rules and settings API invalidate their tenant at once in
the process that changed them. The mailbox (its `pairing_mode`) is always read fresh.
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field

from pynamodb.exceptions import DoesNotExist

from chalicelib.models.mailbox import Mailbox
from chalicelib.models.pairing import Rule
from chalicelib.models.tenant import Tenant
from chalicelib.pairing.addresses import normalize_address
from chalicelib.pairing.settings import PairingSettings, from_tenant
from chalicelib.privacy.lists import lists_for


@dataclass(frozen=True)
class TenantContext:
    tenant_id: str
    settings: PairingSettings
    own_addresses: frozenset[str]
    rules: tuple[Rule, ...] = field(default=())

    def rules_for(self, mailbox_id: str) -> list[Rule]:
        return [r for r in self.rules if r.enabled and r.mailbox_id in (None, mailbox_id)]


_cache: dict[str, tuple[float, TenantContext]] = {}


def cache_seconds() -> float:
    return float(os.environ.get("MAILBRIDGE_PAIRING_CACHE_SECONDS", "30"))


def load_rules(tenant_id: str) -> list[Rule]:
    return sorted(Rule.query(tenant_id), key=lambda r: (int(r.position or 0), r.created_at, r.rule_id))


def load_context(tenant_id: str) -> TenantContext:
    try:
        tenant = Tenant.get(tenant_id)
        settings = from_tenant(tenant.settings, list(tenant.own_domains or []))
    except DoesNotExist:
        settings = PairingSettings()
    own = frozenset(a for a in (normalize_address(m.email) for m in Mailbox.query(tenant_id)) if a)
    return TenantContext(tenant_id, settings, own, tuple(load_rules(tenant_id)))


def tenant_context(tenant_id: str) -> TenantContext:
    now = time.monotonic()
    hit = _cache.get(tenant_id)
    if hit and now - hit[0] < cache_seconds():
        return hit[1]
    context = load_context(tenant_id)
    _cache[tenant_id] = (now, context)
    return context


def invalidate(tenant_id: str | None = None) -> None:
    if tenant_id is None:
        _cache.clear()
    else:
        _cache.pop(tenant_id, None)


def get_mailbox(tenant_id: str, mailbox_id: str) -> Mailbox | None:
    try:
        return Mailbox.get(tenant_id, mailbox_id)
    except DoesNotExist:
        return None


def for_mailbox(context: TenantContext, mailbox: Mailbox) -> TenantContext:
    """The tenant's context with the never-pair lists that apply to `mailbox` (the tenant's and its owner's;
    read fresh, one BatchGetItem) added to its blocklist."""
    never_pair = lists_for(mailbox).never_pair
    if not never_pair:
        return context
    return dataclasses.replace(context, settings=dataclasses.replace(context.settings, never_pair=never_pair))
