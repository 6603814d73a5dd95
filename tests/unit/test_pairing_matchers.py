"""Guards every matcher against pairing with the wrong record: free-mail and own domains, unknown tags,
display names, +tags, internal and blocklisted mail, and auto-reply detection (RFC 3834)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from chalicelib.models.directory import domain_key, email_key, number_key
from chalicelib.pairing.addresses import normalize_address
from chalicelib.pairing.facts import auto_reason, find_subject_tags, message_facts
from chalicelib.pairing.matchers import Rec, Snapshot, index_keys, run_matchers
from chalicelib.pairing.settings import from_tenant

T = "tnt_1"


def msg(sender="jan@acme.example", to=("alice@crm.example",), cc=(), direction="inbound", subject="Hi",
        headers=None, **extra):
    data = dict(tenant_id=T, message_id="msg_1", mailbox_id="mbx_1", folder="inbox" if direction == "inbound"
                else "sent", direction=direction, subject=subject, from_addr={"name": "Jan", "email": sender},
                to=[{"name": "", "email": a} for a in to], cc=[{"name": "", "email": a} for a in cc], bcc=[],
                headers=headers or {}, has_attachments=False, in_reply_to=None, references=[], thread_id=None)
    data.update(extra)
    return SimpleNamespace(**data)


def settings(**pairing):
    return from_tenant({"pairing": pairing}, ["crm.example"])


def snapshot(*records: Rec) -> Snapshot:
    snap = Snapshot(T)
    for rec in records:
        snap.records[rec.key] = rec
        keys = [email_key(T, e) for e in rec.emails] + [domain_key(T, d) for d in rec.domains]
        if rec.number:
            keys.append(number_key(T, rec.type, rec.number))
        for key in keys:
            snap.index.setdefault(key, set()).add(rec.key)
    return snap


ACME = Rec("company", "c-1", emails=("info@acme.example",), domains=("acme.example",))
JAN = Rec("contact", "p-1", emails=("jan@acme.example",), company_id="c-1")
GMAIL_CO = Rec("company", "c-2", domains=("gmail.com",))
LEAD = Rec("lead", "l-1", emails=("eva@gmail.com",))
PROJECT = Rec("project", "pr-7", number="1234")
TASK = Rec("task", "t-9", number="77")
TICKET = Rec("ticket", "tk-1", number="555")


def matched(message, snap, cfg=None, body_tags=()):
    cfg = cfg or settings()
    facts = message_facts(message, cfg, frozenset({"alice@crm.example"}))
    return {(m.type, m.id): m for m in run_matchers(facts, snap, cfg, body_tags)}


def test_company_by_its_own_address_and_by_a_contacts_address():
    assert matched(msg(sender="info@acme.example"), snapshot(ACME))[("company", "c-1")].reason == \
        "company address info@acme.example"
    result = matched(msg(sender="jan@acme.example"), snapshot(ACME, JAN))
    assert set(result) == {("company", "c-1"), ("contact", "p-1")}
    assert "contact p-1" in result[("company", "c-1")].reason


def test_outbound_mail_matches_each_recipient_not_the_sender():
    out = msg(sender="alice@crm.example", to=("info@acme.example", "eva@gmail.com"), direction="outbound")
    assert set(matched(out, snapshot(ACME, LEAD))) == {("company", "c-1"), ("lead", "l-1")}
    inbound_from_us = msg(sender="alice@crm.example", to=("info@acme.example",), direction="inbound")
    assert matched(inbound_from_us, snapshot(ACME)) == {}


def test_domain_match_never_fires_on_free_mail_or_own_domains():
    by_domain = matched(msg(sender="someone@acme.example"), snapshot(ACME))
    assert by_domain[("company", "c-1")].matcher == "company_domain"
    assert by_domain[("company", "c-1")].confidence < 0.9
    assert matched(msg(sender="someone@gmail.com"), snapshot(GMAIL_CO)) == {}
    own = Rec("company", "c-3", domains=("crm.example",))
    out = msg(sender="alice@crm.example", to=("bob@crm.example", "x@other.example"), direction="outbound")
    assert matched(out, snapshot(own)) == {}
    assert matched(msg(sender="someone@acme.example"), snapshot(ACME), settings(domain_match=False)) == {}
    extra_free = settings(free_mail_domains=["acme.example"])
    assert matched(msg(sender="someone@acme.example"), snapshot(ACME), extra_free) == {}


def test_contact_and_lead_by_address_tolerating_display_names_and_domain_case():
    assert set(matched(msg(sender="Jan Novák <jan@ACME.Example>"), snapshot(JAN))) == {("contact", "p-1")}
    assert set(matched(msg(sender="eva@gmail.com"), snapshot(LEAD))) == {("lead", "l-1")}
    assert normalize_address("Jan <Jan@ACME.example>") == "Jan@acme.example"


def test_plus_tags_are_kept_unless_configured():
    tagged = msg(sender="eva+crm@gmail.com")
    assert matched(tagged, snapshot(LEAD)) == {}
    assert set(matched(tagged, snapshot(LEAD), settings(strip_plus_tags=True))) == {("lead", "l-1")}


def test_project_and_task_by_subject_tags_several_tags_several_links():
    result = matched(msg(sender="x@y.example", subject="Re: #1234# and #77# and #999#"), snapshot(PROJECT, TASK))
    assert set(result) == {("project", "pr-7"), ("task", "t-9")}
    assert result[("project", "pr-7")].reason == "subject tag #1234#"
    assert matched(msg(sender="x@y.example", subject="price 1234 #12 34#"), snapshot(PROJECT)) == {}
    assert find_subject_tags("#12#34#") == ("12", "34")


def test_ticket_by_configurable_tag_in_subject_or_body():
    assert set(matched(msg(sender="x@y.example", subject="Help [T-555]"), snapshot(TICKET))) == {("ticket", "tk-1")}
    assert matched(msg(sender="x@y.example", subject="Help [T-556]"), snapshot(TICKET)) == {}
    custom = settings(ticket_tag_prefix="Ticket#")
    assert set(matched(msg(sender="x@y.example", subject="[Ticket#555] down"), snapshot(TICKET), custom)) == \
        {("ticket", "tk-1")}
    body = matched(msg(sender="x@y.example", subject="no tag"), snapshot(TICKET), body_tags=("555",))
    assert body[("ticket", "tk-1")].reason.endswith("in body")


def test_internal_and_blocklisted_mail_pairs_with_nothing():
    internal = msg(sender="bob@crm.example", to=("alice@crm.example",), subject="#1234#")
    assert matched(internal, snapshot(PROJECT)) == {}
    blocked = settings(blocklist={"addresses": ["jan@acme.example"]})
    assert matched(msg(sender="jan@acme.example", subject="#1234#"), snapshot(JAN, PROJECT), blocked) == {}
    blocked_domain = settings(blocklist={"domains": ["acme.example"]})
    assert matched(msg(sender="info@acme.example"), snapshot(ACME), blocked_domain) == {}


def test_index_keys_cover_addresses_domains_and_tags_in_one_batch():
    cfg = settings()
    facts = message_facts(msg(sender="jan@acme.example", subject="#1234# [T-5]"), cfg)
    assert set(index_keys(facts, cfg)) == {email_key(T, "jan@acme.example"), domain_key(T, "acme.example"),
                                           number_key(T, "project", "1234"), number_key(T, "task", "1234"),
                                           number_key(T, "ticket", "5")}


@pytest.mark.parametrize("headers, auto", [
    ({"auto-submitted": "auto-replied"}, True), ({"Auto-Submitted": "auto-generated; foo"}, True),
    ({"auto-submitted": "no"}, False), ({"precedence": "bulk"}, True), ({"Precedence": "list"}, True),
    ({"precedence": "junk"}, True), ({"precedence": "first-class"}, False), ({"x-autoreply": "yes"}, True),
    ({"X-Autorespond": "on vacation"}, True), ({"list-id": "<news.example.com>"}, True), ({}, False),
    ({"auto-submitted": ["auto-replied"]}, True),
])
def test_auto_reply_and_bulk_detection(headers, auto):
    assert (auto_reason(headers) is not None) is auto


def test_thread_inheritance_prefers_the_nearest_parent_and_skips_deleted_records():
    from chalicelib.models.directory import rfc_key, thread_key
    snap = snapshot(PROJECT, TASK)
    snap.index[rfc_key(T, "root@x")] = {"task#t-9"}
    snap.index[rfc_key(T, "parent@x")] = {"project#pr-7", "company#gone"}
    reply = msg(sender="x@y.example", subject="Re: no tag", in_reply_to="<Parent@X>",
                references=["<root@x>", "<parent@x>"])
    result = matched(reply, snap)
    assert set(result) == {("project", "pr-7")} and result[("project", "pr-7")].reason == "reply to <parent@x>"
    assert matched(reply, snap, settings(thread_inheritance=False)) == {}
    snap.index[thread_key(T, "mbx_1", "T1")] = {"task#t-9"}
    assert set(matched(msg(sender="x@y.example", thread_id="T1"), snap)) == {("task", "t-9")}
    assert len(rfc_key(T, "a" * 1000)) < 500
