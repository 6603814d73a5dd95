"""Scanner rules (per tenant or mailbox) and the tenant's pairing settings; tenant admin only."""
from __future__ import annotations

from typing import TYPE_CHECKING

from chalice import Blueprint
from pynamodb.exceptions import UpdateError

from chalicelib.api import access
from chalicelib.api.errors import Conflict, field_error
from chalicelib.api.guards import current_tenant, not_found, require_tenant_admin
from chalicelib.api.routing import route
from chalicelib.lazy import lazy_module

if TYPE_CHECKING:   # annotations only: the request/response models load on first use (chalicelib.api.routing),
                    # the table's model with the service that returns it (chalicelib.lazy)
    from chalicelib.api.schemas.rules import CreateRule, PairingSettingsIn, RuleListQuery, UpdateRule
    from chalicelib.models.pairing import Rule

# Imported when a route first uses them (chalicelib.lazy: the API's cold start).
schemas = lazy_module("chalicelib.api.schemas.rules")
rulebook = lazy_module("chalicelib.pairing.rulebook")
rules = lazy_module("chalicelib.pairing.rules")
limits = lazy_module("chalicelib.tenancy.limits")

bp = Blueprint(__name__)
TAGS = ("rules",)


def rule_out(rule: Rule) -> dict:
    return schemas.RuleOut(id=rule.rule_id, name=rule.name, mailbox_id=rule.mailbox_id,
                           position=int(rule.position or 0), enabled=bool(rule.enabled),
                           conditions=rule.conditions or {}, actions=list(rule.actions or []),
                           created_at=rule.created_at, updated_at=rule.updated_at).model_dump()


def _invalid(exc: rules.InvalidRule):
    field, _, message = str(exc).partition(": ")
    return field_error(field, message or str(exc))


def _rule(rule_id: str) -> Rule:
    rule = rulebook.get_rule(require_tenant_admin().tenant_id, rule_id)
    if rule is None:
        raise not_found("rule", rule_id)
    return rule


@route(bp, "/v1/rules", methods=["POST"], body="chalicelib.api.schemas.rules:CreateRule",
       response="chalicelib.api.schemas.rules:RuleOut", status=201, summary="Create a scanner rule", tags=TAGS,
       location="/v1/rules/{id}",
       errors=(404, 409))  # 404: mailbox_id names no visible mailbox; 409: lost the race for a slot (limits.py)
def create_rule(body: CreateRule):
    tenant_id = require_tenant_admin().tenant_id
    if body.mailbox_id:
        access.get_mailbox(body.mailbox_id, "read")
    try:
        rule = rulebook.create_rule(tenant_id, body.name, body.conditions.model_dump(by_alias=True, exclude_none=True),
                                    [a.model_dump(exclude_none=True) for a in body.actions],
                                    mailbox_id=body.mailbox_id, position=body.position, enabled=body.enabled)
    except rules.InvalidRule as exc:
        raise _invalid(exc) from None
    except limits.Contended as exc:
        raise Conflict(str(exc)) from None
    return rule_out(rule)


@route(bp, "/v1/rules", methods=["GET"], query="chalicelib.api.schemas.rules:RuleListQuery",
       response="chalicelib.api.schemas.rules:RuleList", summary="Scanner rules in the order they run", tags=TAGS)
def list_rules(query: RuleListQuery):
    tenant_id = require_tenant_admin().tenant_id
    return {"items": [rule_out(r) for r in rulebook.list_rules(tenant_id, query.mailbox_id)], "next_cursor": None}


@route(bp, "/v1/rules/{rule_id}", methods=["PATCH"], body="chalicelib.api.schemas.rules:UpdateRule",
       response="chalicelib.api.schemas.rules:RuleOut", summary="Change a scanner rule", tags=TAGS)
def update_rule(rule_id: str, body: UpdateRule):
    rule = _rule(rule_id)
    changes = body.model_dump(exclude_none=True, by_alias=True)
    if body.conditions is not None:
        changes["conditions"] = body.conditions.model_dump(by_alias=True, exclude_none=True)
    try:
        updated = rulebook.update_rule(rule, changes)
    except rules.InvalidRule as exc:
        raise _invalid(exc) from None
    if updated is None:
        raise not_found("rule", rule_id)          # deleted since `_rule` read it
    return rule_out(updated)


@route(bp, "/v1/rules/{rule_id}", methods=["DELETE"], status=204, summary="Delete a scanner rule", tags=TAGS)
def delete_rule(rule_id: str):
    rulebook.delete_rule(_rule(rule_id))
    return None


@route(bp, "/v1/pairing/settings", methods=["GET"], response="chalicelib.api.schemas.rules:PairingSettingsOut",
       summary="The tenant's pairing settings (blocklist, ticket tag, domain matching, ...)", tags=TAGS)
def get_settings():
    require_tenant_admin()
    return rulebook.get_settings(current_tenant())


@route(bp, "/v1/pairing/settings", methods=["PUT"], body="chalicelib.api.schemas.rules:PairingSettingsIn",
       response="chalicelib.api.schemas.rules:PairingSettingsOut", summary="Replace the tenant's pairing settings",
       tags=TAGS)
def put_settings(body: PairingSettingsIn):
    require_tenant_admin()
    try:
        return rulebook.put_settings(current_tenant(), body.model_dump())
    except UpdateError:
        raise Conflict("The tenant changed meanwhile; retry.") from None
