"""Guards the edges of pairing found by the 2026-12-02 audit: a link written to a record deleted while the
message was being paired, late pairing missing a record whose address has capitals or whose counterpart wrote
a `+tag`, a directory write interrupted between its steps, undo of an entry whose link or ticket changed
since, and rule conditions comparing with `lower()` instead of Unicode case folding."""
from __future__ import annotations

from datetime import timedelta

import pytest

from chalicelib.models.message import Message
from chalicelib.notify.events import list_events
from chalicelib.pairing import directory, engine, late
from chalicelib.pairing.store import active_links
from chalicelib.timeutil import isoformat, utcnow
from tests.unit.pairing_fixtures import make_mailbox, make_message


def linked(message) -> set[tuple[str, str]]:
    return {(link.entity_type, link.entity_id) for link in active_links(message.message_id)}


def run_directory_jobs(tenant_id: str, skip: int = 0) -> None:
    """What the notifier does with the queued `directory.changed` events (oldest first, the first `skip` left
    out; idempotent)."""
    for event in list(reversed(list_events(tenant_id, late.EVENT_TYPE)))[skip:]:
        late.on_event(event)


def recent(days_ago: int) -> str:
    return isoformat(utcnow() - timedelta(days=days_ago))


@pytest.mark.parametrize("record_address, sender", [
    ("Jan.Novak@Acme.example", "jan.novak@acme.example"),       # ingest lowercases; the CRM kept capitals
    ("jan@acme.example", "Jan@ACME.example"),
])
def test_late_pairing_finds_an_address_whatever_its_case(api, tenant, record_address, sender):
    tid, key = tenant["id"], tenant["key"]
    message = make_message(make_mailbox(tid), sender=sender, date=recent(1))
    api("PUT", "/v1/directory/contact/p-1", key=key, json_body={"emails": [record_address]})
    run_directory_jobs(tid)
    assert linked(message) == {("contact", "p-1")}
    live = make_message(make_mailbox(tid, email="bob@acme-crm.example"), sender=sender, date=recent(1))
    engine.pair_message(live)                                        # the live path agrees
    assert linked(live) == {("contact", "p-1")}


def test_late_pairing_strips_plus_tags_when_the_tenant_asks(api, tenant):
    tid, key = tenant["id"], tenant["key"]
    assert api("PUT", "/v1/pairing/settings", key=key, json_body={"strip_plus_tags": True}).status == 200
    message = make_message(make_mailbox(tid), sender="jan+orders@acme.example", date=recent(1))
    api("PUT", "/v1/directory/contact/p-1", key=key, json_body={"emails": ["jan@acme.example"]})
    run_directory_jobs(tid)
    assert linked(message) == {("contact", "p-1")}


def test_an_interrupted_put_is_finished_by_its_retry(api, tenant, monkeypatch):
    """A PUT stopped between its record write and its index writes (a throttle, a Lambda timeout). The client
    retries the same PUT: the retry must bring the index in line, or the record never pairs (it did not when
    the record was written first: the retry found it stored and saw nothing to index)."""
    tid, key = tenant["id"], tenant["key"]
    real_apply = directory._apply_index

    def fail(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(directory, "_apply_index", fail)
    with pytest.raises(RuntimeError):
        directory.put_record(tid, "contact", "p-1", {"emails": ["jan@acme.example"]})
    monkeypatch.setattr(directory, "_apply_index", real_apply)
    assert api("PUT", "/v1/directory/contact/p-1", key=key, json_body={"emails": ["jan@acme.example"]}).status == 200
    message = make_message(make_mailbox(tid), sender="jan@acme.example", date=recent(1))
    engine.pair_message(message)
    assert linked(message) == {("contact", "p-1")}


def test_a_delete_retried_after_a_lost_announcement_still_removes_the_links(api, tenant, monkeypatch):
    """DELETE removed the record, then the process died before `directory.changed` was emitted. The retry
    answers 404 (the record is gone) but must still get the links removed."""
    tid, key = tenant["id"], tenant["key"]
    api("PUT", "/v1/directory/company/c-1", key=key, json_body={"emails": ["info@acme.example"]})
    message = make_message(make_mailbox(tid), sender="info@acme.example")
    engine.pair_message(message)
    assert linked(message) == {("company", "c-1")}
    directory.delete_record(tid, "company", "c-1")                  # the first DELETE, cut short
    assert api("DELETE", "/v1/directory/company/c-1", key=key).status == 404
    run_directory_jobs(tid)
    assert linked(message) == set() and Message.get(message.message_id).link_count == 0
    before = len(list_events(tid, late.EVENT_TYPE))
    assert api("DELETE", "/v1/directory/company/c-1", key=key).status == 404
    assert len(list_events(tid, late.EVENT_TYPE)) == before         # nothing left to do: nothing announced


def test_subject_contains_compares_by_unicode_case_folding(api, tenant):
    tid, key = tenant["id"], tenant["key"]
    api("PUT", "/v1/directory/project/pr-1", key=key, json_body={"name": "P"})
    assert api("POST", "/v1/rules", key=key, json_body={
        "name": "street", "conditions": {"subject_contains": "STRASSE"},
        "actions": [{"type": "pair", "record": {"type": "project", "id": "pr-1"}}]}).status == 201
    mailbox = make_mailbox(tid)
    message = make_message(mailbox, sender="x@y.example", subject="Neue Hauptstraße 5")
    engine.pair_message(message)
    assert linked(message) == {("project", "pr-1")}
    other = make_message(mailbox, sender="x@y.example", subject="Hauptstrasse")
    engine.pair_message(other)
    assert linked(other) == {("project", "pr-1")}


def test_a_rule_regex_folds_case_like_subject_contains(api, tenant):
    tid, key = tenant["id"], tenant["key"]
    api("PUT", "/v1/directory/project/pr-1", key=key, json_body={"name": "P"})
    assert api("POST", "/v1/rules", key=key, json_body={
        "name": "greetings", "conditions": {"subject_regex": "^GRÜSSE aus"},
        "actions": [{"type": "pair", "record": {"type": "project", "id": "pr-1"}}]}).status == 201
    message = make_message(make_mailbox(tid), sender="x@y.example", subject="Grüße aus Wien")
    engine.pair_message(message)
    assert linked(message) == {("project", "pr-1")}
