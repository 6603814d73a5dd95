"""Guards the per-tenant count limits (the plan's `max_mailboxes`, 200 scanner rules) against check-then-write
races: a second create run between the first one's count and its write (`tests/interleave.py`, the way two API
processes interleave) must not leave one item more than the limit."""
from __future__ import annotations

import pytest

from chalicelib.mailboxes import service as mailbox_service, verify
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.pairing import Rule
from chalicelib.pairing import rulebook
from chalicelib.tenancy import limits, plans
from tests.interleave import before_first_write

RULE = {"name": "r", "conditions": {}, "actions": [{"type": "stop"}]}
IMAP_BODY = {"name": "Sales", "type": "imap", "email": "sales@acme-crm.example", "kind": "shared",
             "password": "app-password",
             "imap": {"host": "127.0.0.1", "port": 993, "security": "tls", "login_method": "plain"},
             "smtp": {"host": "127.0.0.1", "port": 587, "security": "starttls", "login_method": "plain"}}


def test_two_rule_creates_racing_for_the_last_slot_make_one_rule(api, tenant, monkeypatch):
    """The rule limit was a count (an eventually consistent Query of every rule) and a plain put after it: a
    second create between the two both counted 199 of 200 and both stored, leaving 201 rules."""
    monkeypatch.setattr(rulebook, "MAX_RULES", 1)
    key = tenant["key"]
    inner = before_first_write(monkeypatch, "pairing_rules",
                               lambda: api("POST", "/v1/rules", key=key, json_body={**RULE, "name": "inner"}))
    outer = api("POST", "/v1/rules", key=key, json_body=RULE)
    assert inner[0].status == 201, inner
    assert outer.status == 422 and outer.json["errors"][0]["field"] == "rules", outer
    assert Rule.count(tenant["id"]) == 1
    # a slot freed by a delete is usable again
    assert api("DELETE", f"/v1/rules/{inner[0].json['id']}", key=key).status == 204
    assert api("POST", "/v1/rules", key=key, json_body=RULE).status == 201
    assert Rule.count(tenant["id"]) == 1


def test_a_rule_create_that_keeps_losing_the_race_is_a_409_storing_nothing(api, tenant, monkeypatch):
    """Every lost round means another create committed; after `limits.ATTEMPTS` of them in a row the create
    gives up with 409 `conflict` (docs/api.md) and stores nothing — never a rule the count did not see."""
    key = tenant["key"]
    others = before_first_write(monkeypatch, "pairing_rules", lambda: api("POST", "/v1/rules", key=key,
                                json_body={**RULE, "name": "other"}), times=limits.ATTEMPTS)
    outer = api("POST", "/v1/rules", key=key, json_body=RULE)
    assert [r.status for r in others] == [201] * limits.ATTEMPTS
    assert outer.status == 409 and outer.json["type"].endswith("/conflict"), outer
    assert Rule.count(tenant["id"]) == limits.ATTEMPTS


@pytest.fixture
def one_mailbox_plan(monkeypatch):
    monkeypatch.setitem(plans.PLANS, "standard", plans.Plan("standard", frozenset({plans.MAILBOX_CONNECTION}),
                                                            import_window_days=7, max_mailboxes=1))
    monkeypatch.setattr(mailbox_service.verify, "check_connection",
                        lambda **kw: verify.Outcome(True, None, "ok", None))


def test_a_mailbox_create_between_the_count_and_the_write_is_refused(api, tenant, one_mailbox_plan, monkeypatch):
    """The narrowest window of `max_mailboxes`: the second create runs after the first one's last count, just
    before its write (the login-check window of tests/security/test_authz_audit.py closes with the count
    repeated at save time; this one only with the version in the transaction)."""
    key = tenant["key"]
    inner = before_first_write(monkeypatch, "mailboxes",
                               lambda: api("POST", "/v1/mailboxes", key=key, json_body={**IMAP_BODY, "name": "In"}))
    outer = api("POST", "/v1/mailboxes", key=key, json_body=IMAP_BODY)
    assert inner[0].status == 201, inner
    assert outer.status == 403 and outer.json["type"].endswith("/plan-limit"), outer
    assert Mailbox.count(tenant["id"]) == 1


def test_a_rule_update_racing_its_delete_leaves_no_phantom_rule_taking_a_slot(api, tenant, monkeypatch):
    """PATCH read the rule, then wrote an unconditional UpdateItem: a DELETE landing between the two left a stub
    item (UpdateItem creates what it does not find) — no name, no created_at — that the rule limit counted and
    the pairing context loaded. The update is now conditioned on the rule existing: the PATCH is a 404."""
    monkeypatch.setattr(rulebook, "MAX_RULES", 1)
    key = tenant["key"]
    rule_id = api("POST", "/v1/rules", key=key, json_body=RULE).json["id"]
    deleted = before_first_write(monkeypatch, "pairing_rules",
                                 lambda: api("DELETE", f"/v1/rules/{rule_id}", key=key))
    patched = api("PATCH", f"/v1/rules/{rule_id}", key=key, json_body={"enabled": False})
    assert deleted[0].status == 204
    assert patched.status == 404, patched
    assert Rule.count(tenant["id"]) == 0
    assert api("POST", "/v1/rules", key=key, json_body=RULE).status == 201      # the slot is free
