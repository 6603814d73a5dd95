"""Guards scanner rules: each action does what it says exactly once, auto-replies and bulk mail never create
leads or tickets (no mail loops), order/stop/skip are honoured, and unsafe regexes are refused."""
from __future__ import annotations

import pytest

from chalicelib.models.directory import DirectoryRecord
from chalicelib.notify.events import list_events
from chalicelib.pairing import directory, engine, manual
from chalicelib.pairing.rules import InvalidRule, validate_regex
from chalicelib.pairing.store import active_links
from tests.unit.pairing_fixtures import make_mailbox, make_message


def add_rule(api, tenant, actions, conditions=None, **extra):
    body = {"name": extra.pop("name", "r"), "conditions": conditions or {}, "actions": actions, **extra}
    result = api("POST", "/v1/rules", key=tenant["key"], json_body=body)
    assert result.status == 201, result
    return result.json


def linked(message):
    return {(link.entity_type, link.entity_id): link for link in active_links(message.message_id)}


AUTO_HEADERS = [{"auto-submitted": "auto-replied"}, {"precedence": "bulk"}, {"x-autoreply": "yes"},
                {"X-Autorespond": "yes"}]


def test_create_lead_for_unknown_sender_once_and_never_for_auto_replies(api, tenant):
    add_rule(api, tenant, [{"type": "create_lead"}], {"direction": "inbound"})
    mailbox = make_mailbox(tenant["id"])
    first = make_message(mailbox, sender="new@prospect.example")
    result = engine.pair_message(first)
    assert len(result.records) == 1 and result.records[0]["type"] == "lead"
    lead_id = result.records[0]["id"]
    assert linked(first)[("lead", lead_id)].actor.startswith("rule:")
    record = directory.get_record(tenant["id"], "lead", lead_id)
    assert record.emails == ["new@prospect.example"] and record.name == "Jan Novák"
    second = make_message(mailbox, sender="new@prospect.example")
    assert engine.pair_message(second).records == []                    # the lead now matches by address
    assert ("lead", lead_id) in linked(second)
    assert len(list_events(tenant["id"], "record.created")) == 1
    for headers in AUTO_HEADERS:
        auto = make_message(mailbox, sender="robot@else.example", headers=headers)
        outcome = engine.pair_message(auto)
        assert outcome.records == [] and outcome.suppressed and linked(auto) == {}


def test_create_ticket_skips_auto_replies_and_existing_tickets(api, tenant):
    add_rule(api, tenant, [{"type": "create_ticket"}], {"to": ["support@acme-crm.example"]})
    mailbox = make_mailbox(tenant["id"], email="support@acme-crm.example")
    message = make_message(mailbox, sender="c@customer.example", to=["support@acme-crm.example"],
                           subject="Printer broken")
    result = engine.pair_message(message)
    ticket = directory.get_record(tenant["id"], "ticket", result.records[0]["id"])
    assert ticket.name == "Printer broken" and ticket.number.startswith("M") and ticket.status == "open"
    assert engine.pair_message(message).records == []                   # idempotent
    follow = make_message(mailbox, sender="c@customer.example", to=["support@acme-crm.example"],
                          subject=f"Re: Printer broken [T-{ticket.number}]")
    assert engine.pair_message(follow).records == [] and ("ticket", ticket.record_id) in linked(follow)
    vacation = make_message(mailbox, sender="c@customer.example", to=["support@acme-crm.example"],
                            headers={"Auto-Submitted": "auto-replied"})
    assert engine.pair_message(vacation).records == []
    elsewhere = make_message(mailbox, sender="c@customer.example", to=["sales@acme-crm.example"])
    assert engine.pair_message(elsewhere).records == []                 # condition not met


def test_reopen_closed_ticket_on_reply_and_undo(api, tenant):
    directory.put_record(tenant["id"], "ticket", "tk-1", {"number": "555", "status": "closed"})
    add_rule(api, tenant, [{"type": "reopen_ticket"}])
    mailbox = make_mailbox(tenant["id"])
    bulk = make_message(mailbox, sender="c@x.example", subject="Re: [T-555]", headers={"precedence": "list"})
    engine.pair_message(bulk)
    assert directory.get_record(tenant["id"], "ticket", "tk-1").status == "closed"
    reply = make_message(mailbox, sender="c@x.example", subject="Re: [T-555] still broken")
    assert engine.pair_message(reply).reopened == ["tk-1"]
    assert directory.get_record(tenant["id"], "ticket", "tk-1").status == "open"
    audit = api("GET", f"/v1/audit?message_id={reply.message_id}", key=tenant["key"]).json["items"]
    reopened = next(e for e in audit if e["action"] == "ticket.reopened")
    assert reopened["actor"].startswith("rule:")
    assert api("POST", f"/v1/audit/{reopened['id']}/undo", key=tenant["key"]).status == 200
    assert directory.get_record(tenant["id"], "ticket", "tk-1").status == "closed"


def test_pair_and_bind_actions_link_even_in_signal_mode(api, tenant):
    directory.put_record(tenant["id"], "project", "pr-1", {"name": "Big deal"})
    directory.put_record(tenant["id"], "contact", "p-1", {"emails": ["jan@acme.example"]})
    directory.put_record(tenant["id"], "project", "pr-2", {"number": "42"})
    add_rule(api, tenant, [{"type": "pair", "record": {"type": "project", "id": "pr-1"}}],
             {"subject_contains": "DEAL"}, position=1)
    add_rule(api, tenant, [{"type": "bind", "types": ["contact"]}], {"from": ["acme.example"]}, position=2)
    mailbox = make_mailbox(tenant["id"], "signal")
    message = make_message(mailbox, sender="jan@acme.example", subject="The deal #42#")
    result = engine.pair_message(message)
    assert set(linked(message)) == {("project", "pr-1"), ("contact", "p-1")}
    assert len(result.signals) == 1                                     # the tagged project stays a suggestion
    assert linked(message)[("project", "pr-1")].source == "rule"


def test_rule_order_stop_skip_and_mailbox_scope(api, tenant):
    directory.put_record(tenant["id"], "project", "pr-1", {"name": "A"})
    directory.put_record(tenant["id"], "project", "pr-2", {"name": "B"})
    directory.put_record(tenant["id"], "company", "c-1", {"emails": ["info@acme.example"]})
    mailbox = make_mailbox(tenant["id"])
    other_box = make_mailbox(tenant["id"], email="x@acme-crm.example")
    add_rule(api, tenant, [{"type": "pair", "record": {"type": "project", "id": "pr-1"}}, {"type": "stop"}],
             {"subject_regex": r"^order \d+$"}, position=1)
    add_rule(api, tenant, [{"type": "pair", "record": {"type": "project", "id": "pr-2"}}], position=2,
             mailbox_id=other_box.mailbox_id)
    add_rule(api, tenant, [{"type": "skip"}], {"from": ["newsletter@acme.example"]}, position=3)
    stopped = make_message(mailbox, sender="a@b.example", subject="Order 17")
    engine.pair_message(stopped)
    assert set(linked(stopped)) == {("project", "pr-1")}
    scoped = make_message(other_box, sender="a@b.example", subject="hello")
    engine.pair_message(scoped)
    assert set(linked(scoped)) == {("project", "pr-2")}
    skipped = make_message(mailbox, sender="newsletter@acme.example")
    assert engine.pair_message(skipped).skipped.endswith("skip") and linked(skipped) == {}


def test_conditions_folder_attachment_and_auto_reply(api, tenant):
    directory.put_record(tenant["id"], "project", "pr-1", {"name": "A"})
    add_rule(api, tenant, [{"type": "pair", "record": {"type": "project", "id": "pr-1"}}],
             {"folder": "sent", "has_attachment": True, "auto_reply": False})
    mailbox = make_mailbox(tenant["id"])
    hit = make_message(mailbox, sender="alice@acme-crm.example", to=["c@x.example"], direction="outbound",
                       has_attachments=True)
    miss = make_message(mailbox, sender="alice@acme-crm.example", to=["c@x.example"], direction="outbound")
    for message in (hit, miss):
        engine.pair_message(message)
    assert set(linked(hit)) == {("project", "pr-1")} and linked(miss) == {}


def test_rules_api_crud_and_validation(api, tenant, other_tenant):
    rule = add_rule(api, tenant, [{"type": "create_lead"}], {"from": ["Jan <JAN@Acme.Example>"]}, name="leads")
    assert rule["conditions"] == {"from": ["JAN@acme.example"]}
    assert api("POST", "/v1/rules", key=tenant["key"], user="u-1",
               json_body={"name": "x", "actions": [{"type": "stop"}]}).status == 403
    bad = [({"subject_regex": "(a+)+$"}, [{"type": "stop"}]), ({"subject_regex": "(x)\\1"}, [{"type": "stop"}]),
           ({"subject_regex": "[unclosed"}, [{"type": "stop"}]), ({"from": ["not a thing"]}, [{"type": "stop"}]),
           ({}, []), ({}, [{"type": "explode"}]), ({}, [{"type": "pair"}]), ({"colour": "red"}, [{"type": "stop"}])]
    for conditions, actions in bad:
        result = api("POST", "/v1/rules", key=tenant["key"],
                     json_body={"name": "bad", "conditions": conditions, "actions": actions})
        assert result.status == 422, (conditions, actions, result)
    patched = api("PATCH", f"/v1/rules/{rule['id']}", key=tenant["key"], json_body={"enabled": False, "position": 5})
    assert patched.status == 200 and patched.json["enabled"] is False and patched.json["position"] == 5
    assert [r["id"] for r in api("GET", "/v1/rules", key=tenant["key"]).json["items"]] == [rule["id"]]
    assert api("GET", "/v1/rules", key=other_tenant["key"]).json["items"] == []
    assert api("DELETE", f"/v1/rules/{rule['id']}", key=other_tenant["key"]).status == 404
    assert api("DELETE", f"/v1/rules/{rule['id']}", key=tenant["key"]).status == 204
    assert api("GET", "/v1/rules", key=tenant["key"]).json["items"] == []


def test_regex_validation_is_bounded():
    assert validate_regex(r"^invoice \d{4}$").search("Invoice 2026")
    for pattern in ["x" * 201, "(a*)*", "(?P<x>a)(?P=x)"]:
        with pytest.raises(InvalidRule):
            validate_regex(pattern)



def test_catastrophic_regex_that_passes_validation_cannot_stall_pairing(api, tenant):
    """A subject_regex with exponential backtracking the static check misses ((a|a)+$) hung the worker."""
    import time
    directory.put_record(tenant["id"], "project", "pr-1", {"name": "A"})
    mailbox = make_mailbox(tenant["id"])
    for pattern in (r"(a|a)+$", r"((a+))+$"):
        add_rule(api, tenant, [{"type": "pair", "record": {"type": "project", "id": "pr-1"}}],
                 {"subject_regex": pattern}, name=pattern)
    message = make_message(mailbox, subject="a" * 900 + "!")
    started = time.monotonic()
    engine.pair_message(message)
    assert time.monotonic() - started < 3
    assert ("project", "pr-1") not in linked(message)
    matching = make_message(mailbox, subject="aaaa")
    engine.pair_message(matching)
    assert ("project", "pr-1") in linked(matching)


def test_created_record_undo_deletes_it(api, tenant):
    add_rule(api, tenant, [{"type": "create_lead"}])
    mailbox = make_mailbox(tenant["id"])
    message = make_message(mailbox, sender="who@new.example")
    lead_id = engine.pair_message(message).records[0]["id"]
    entry = next(e for e in manual.list_audit(tenant["id"], 50, None, message.message_id)[0]
                 if e.action == "record.created")
    manual.undo(tenant["id"], entry.audit_id, None)
    assert directory.get_record(tenant["id"], "lead", lead_id) is None and linked(message) == {}
    assert DirectoryRecord.count(tenant["id"]) == 0
