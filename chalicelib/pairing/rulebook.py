"""Scanner rules and pairing settings as stored per tenant (create, list, change, delete).

Every change invalidates the tenant's cached pairing context in this process (`context.invalidate`);
other processes pick it up within `context.CACHE_SECONDS`.

At most `MAX_RULES` rules per tenant, exactly also when creates race: the count (strongly consistent) and the
put go through `tenancy.limits.create_counted` with the tenant's `rule_version`.
"""
from __future__ import annotations

from typing import Any

from pynamodb.exceptions import DoesNotExist, UpdateError

from chalicelib.ids import new_id
from chalicelib.models.tenant import Tenant
from chalicelib.models.pairing import Rule
from chalicelib.pairing import context
from chalicelib.pairing.rules import InvalidRule, validate
from chalicelib.pairing.settings import from_tenant
from chalicelib.tenancy import limits
from chalicelib.timeutil import now_iso

MAX_RULES = 200


def list_rules(tenant_id: str, mailbox_id: str | None = None) -> list[Rule]:
    rules = context.load_rules(tenant_id)
    return [r for r in rules if mailbox_id is None or r.mailbox_id == mailbox_id]


def get_rule(tenant_id: str, rule_id: str) -> Rule | None:
    try:
        return Rule.get(tenant_id, rule_id)
    except DoesNotExist:
        return None


def _check_rule_limit(tenant_id: str) -> None:
    """`MAX_RULES` per tenant: a strongly consistent COUNT query (no rule is read); InvalidRule naming `rules`."""
    if Rule.count(tenant_id, consistent_read=True) >= MAX_RULES:
        raise InvalidRule(f"rules: at most {MAX_RULES} per tenant")


def create_rule(tenant_id: str, name: str, conditions: dict, actions: list[dict], *, mailbox_id: str | None,
                position: int, enabled: bool) -> Rule:
    """Raises InvalidRule (a field, or `rules` when the tenant has `MAX_RULES`), `limits.Contended` (409)."""
    _check_rule_limit(tenant_id)
    conditions, actions = validate(conditions, actions)
    now = now_iso()
    rule = Rule(tenant_id, new_id("rul"), name=name, mailbox_id=mailbox_id, position=position, enabled=enabled,
                conditions=conditions, actions=actions, created_at=now, updated_at=now)
    limits.create_counted(tenant_id, rule, Rule.rule_id.does_not_exist(), version=Tenant.rule_version,
                          check=lambda: _check_rule_limit(tenant_id), what="rules")
    context.invalidate(tenant_id)
    return rule


def update_rule(rule: Rule, changes: dict[str, Any]) -> Rule | None:
    """The updated rule; None when it was deleted since it was read (UpdateItem creates a missing item, so the
    update is conditioned on the rule existing: a stub left behind would count toward `MAX_RULES`)."""
    conditions = changes.get("conditions", rule.conditions)
    actions = changes.get("actions", rule.actions)
    conditions, actions = validate(conditions or {}, actions or [])
    updates = [Rule.conditions.set(conditions), Rule.actions.set(actions), Rule.updated_at.set(now_iso())]
    for name in ("name", "position", "enabled"):
        if changes.get(name) is not None:
            updates.append(getattr(Rule, name).set(changes[name]))
    try:
        rule.update(actions=updates, condition=Rule.rule_id.exists())
    except UpdateError as exc:
        if getattr(exc, "cause_response_code", None) != "ConditionalCheckFailedException":
            raise
        return None
    finally:
        context.invalidate(rule.tenant_id)
    return rule


def delete_rule(rule: Rule) -> None:
    rule.delete()
    context.invalidate(rule.tenant_id)


def get_settings(tenant: Tenant) -> dict:
    return from_tenant(tenant.settings, list(tenant.own_domains or [])).to_dict()


def put_settings(tenant: Tenant, pairing: dict) -> dict:
    """Replace `settings["pairing"]`, conditional on `updated_at` so a concurrent tenant change is not lost
    (the caller retries on `UpdateError`)."""
    settings = {**(tenant.settings or {}), "pairing": pairing}
    tenant.update(actions=[Tenant.settings.set(settings), Tenant.updated_at.set(now_iso())],
                  condition=Tenant.updated_at == tenant.updated_at)
    context.invalidate(tenant.tenant_id)
    return get_settings(tenant)
