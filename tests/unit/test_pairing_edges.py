"""Guards the edges of pairing found by the 2026-12-02 audit: a link written to a record deleted while the
message was being paired, late pairing missing a record whose address has capitals or whose counterpart wrote
a `+tag`, a directory write interrupted between its steps, undo of an entry whose link or ticket changed
since, and rule conditions comparing with `lower()` instead of Unicode case folding."""
from __future__ import annotations

from datetime import timedelta

import pytest

from chalicelib.models.directory import DirectoryIndex
from chalicelib.models.message import Message
from chalicelib.models.pairing import AuditEntry
from chalicelib.notify.events import list_events
from chalicelib.pairing import directory, engine, late, manual, rulebook, store
from chalicelib.pairing.store import active_links
from chalicelib.providers.base import FetchedMessage, MessageRef
from chalicelib.sync.store import save_fetched
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


def rule_creating_leads(api, key: str) -> None:
    """A rule that creates a lead from every message."""
    assert api("POST", "/v1/rules", key=key, json_body={"name": "r", "conditions": {},
                                                         "actions": [{"type": "create_lead"}]}).status == 201


def rule_pairing_with_a_project(api, key: str, name: str, conditions: dict) -> None:
    """A project `pr-1` and a rule pairing mail that meets `conditions` with it."""
    api("PUT", "/v1/directory/project/pr-1", key=key, json_body={"name": "P"})
    assert api("POST", "/v1/rules", key=key, json_body={
        "name": name, "conditions": conditions,
        "actions": [{"type": "pair", "record": {"type": "project", "id": "pr-1"}}]}).status == 201


def test_a_record_deleted_while_its_message_is_paired_gets_no_link(api, tenant, monkeypatch):
    """The engine read the directory (the company existed), then the company was deleted and its
    `directory.changed` job ran — all before the engine wrote its link. The job found no link to remove, so a
    link written afterwards would point at a deleted record for ever."""
    tid, key = tenant["id"], tenant["key"]
    api("PUT", "/v1/directory/company/c-1", key=key, json_body={"emails": ["info@acme.example"]})
    api("PUT", "/v1/directory/project/pr-1", key=key, json_body={"number": "77"})
    mailbox = make_mailbox(tid)
    message = make_message(mailbox, sender="info@acme.example", subject="Plan #77#")
    real_read = directory.read_records
    raced = []
    announced = len(list_events(tid, late.EVENT_TYPE))

    def read_then_delete(tenant_id, keys):
        found = real_read(tenant_id, keys)
        if not raced:
            raced.append(True)
            assert api("DELETE", "/v1/directory/company/c-1", key=key).status == 204
            run_directory_jobs(tid, skip=announced)                  # only the delete's job
        return found

    monkeypatch.setattr(directory, "read_records", read_then_delete)
    result = engine.pair_message(message)
    monkeypatch.setattr(directory, "read_records", real_read)
    assert raced
    assert linked(message) == {("project", "pr-1")}                 # the live record is still linked
    assert [link["id"] for link in result.links] == ["pr-1"]
    assert Message.get(message.message_id).link_count == 1
    paired = list_events(tid, "message.paired")
    assert [[link["id"] for link in e.payload["links"]] for e in paired] == [["pr-1"]]
    trail = api("GET", f"/v1/audit?message_id={message.message_id}", key=key).json["items"]
    assert [(e["action"], e["entity_id"]) for e in trail] == [("link.created", "pr-1")]
    run_directory_jobs(tid)                                          # a redelivered job changes nothing
    assert linked(message) == {("project", "pr-1")} and Message.get(message.message_id).link_count == 1


def delete_after_the_existence_check(monkeypatch, tenant_id, record_type, record_id):
    """Make the next `directory.get_record` answer as before and then delete the record (a delete landing
    between the existence check and the link write); returns the real `get_record`."""
    real_get = directory.get_record
    calls = []

    def get_then_delete(*args, **kwargs):
        found = real_get(*args, **kwargs)
        if not calls:
            calls.append(True)
            directory.delete_record(tenant_id, record_type, record_id)
        return found

    monkeypatch.setattr(directory, "get_record", get_then_delete)
    return real_get


def test_a_signal_accepted_while_its_record_is_deleted_makes_no_link(api, tenant, monkeypatch):
    tid, key = tenant["id"], tenant["key"]
    api("PUT", "/v1/directory/company/c-1", key=key, json_body={"emails": ["info@acme.example"]})
    mailbox = make_mailbox(tid, mode="signal")
    message = make_message(mailbox, sender="info@acme.example")
    [signal_id] = engine.pair_message(message).signals
    real_get = delete_after_the_existence_check(monkeypatch, tid, "company", "c-1")
    answer = api("POST", f"/v1/signals/{signal_id}/accept", key=key)
    monkeypatch.setattr(directory, "get_record", real_get)
    assert answer.status == 409 and "no longer exists" in answer.json["detail"]
    assert linked(message) == set() and Message.get(message.message_id).link_count == 0


def test_a_manual_link_to_a_record_deleted_meanwhile_is_404_not_a_link(api, tenant, monkeypatch):
    tid, key = tenant["id"], tenant["key"]
    api("PUT", "/v1/directory/project/pr-1", key=key, json_body={"name": "P"})
    message = make_message(make_mailbox(tid), sender="x@y.example")
    real_get = delete_after_the_existence_check(monkeypatch, tid, "project", "pr-1")
    answer = api("POST", f"/v1/messages/{message.message_id}/links", key=key,
                 json_body={"type": "project", "id": "pr-1"})
    monkeypatch.setattr(directory, "get_record", real_get)
    assert answer.status == 404, answer.json
    assert linked(message) == set() and Message.get(message.message_id).link_count == 0


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


def test_undo_of_an_automatic_link_does_not_remove_the_link_a_person_made_since(api, tenant):
    tid, key = tenant["id"], tenant["key"]
    api("PUT", "/v1/directory/company/c-1", key=key, json_body={"emails": ["info@acme.example"]})
    message = make_message(make_mailbox(tid), sender="info@acme.example")
    engine.pair_message(message)
    auto_entry = next(e for e in api("GET", f"/v1/audit?message_id={message.message_id}", key=key).json["items"]
                      if e["action"] == "link.created")
    assert api("DELETE", f"/v1/messages/{message.message_id}/links/company/c-1", key=key).status == 204
    assert api("POST", f"/v1/messages/{message.message_id}/links", key=key,
               json_body={"type": "company", "id": "c-1"}).status == 201
    answer = api("POST", f"/v1/audit/{auto_entry['id']}/undo", key=key)
    assert answer.status == 409, answer.json
    assert linked(message) == {("company", "c-1")} and Message.get(message.message_id).link_count == 1


def test_undo_of_a_reopen_after_the_ticket_changed_again_is_a_conflict(api, tenant):
    tid, key = tenant["id"], tenant["key"]
    directory.put_record(tid, "ticket", "tk-1", {"number": "555", "status": "closed"})
    assert api("POST", "/v1/rules", key=key, json_body={"name": "r", "conditions": {},
                                                         "actions": [{"type": "reopen_ticket"}]}).status == 201
    reply = make_message(make_mailbox(tid), sender="c@x.example", subject="Re: [T-555] still broken")
    assert engine.pair_message(reply).reopened == ["tk-1"]
    entry = next(e for e in api("GET", f"/v1/audit?message_id={reply.message_id}", key=key).json["items"]
                 if e["action"] == "ticket.reopened")
    api("PUT", "/v1/directory/ticket/tk-1", key=key, json_body={"number": "555", "status": "waiting"})
    answer = api("POST", f"/v1/audit/{entry['id']}/undo", key=key)
    assert answer.status == 409, answer.json
    assert directory.get_record(tid, "ticket", "tk-1").status == "waiting"


def test_undo_of_a_created_record_the_crm_has_taken_over_is_a_conflict(api, tenant):
    tid, key = tenant["id"], tenant["key"]
    rule_creating_leads(api, key)
    message = make_message(make_mailbox(tid), sender="who@new.example")
    lead_id = engine.pair_message(message).records[0]["id"]
    entry = next(e for e in manual.list_audit(tid, 50, None, message.message_id)[0] if e.action == "record.created")
    api("PUT", f"/v1/directory/lead/{lead_id}", key=key, json_body={"name": "Who, qualified",
                                                                    "emails": ["who@new.example"]})
    answer = api("POST", f"/v1/audit/{entry.audit_id}/undo", key=key)
    assert answer.status == 409, answer.json
    assert directory.get_record(tid, "lead", lead_id) is not None and linked(message) == {("lead", lead_id)}


def test_subject_contains_compares_by_unicode_case_folding(api, tenant):
    tid, key = tenant["id"], tenant["key"]
    rule_pairing_with_a_project(api, key, "street", {"subject_contains": "STRASSE"})
    mailbox = make_mailbox(tid)
    message = make_message(mailbox, sender="x@y.example", subject="Neue Hauptstraße 5")
    engine.pair_message(message)
    assert linked(message) == {("project", "pr-1")}
    other = make_message(mailbox, sender="x@y.example", subject="Hauptstrasse")
    engine.pair_message(other)
    assert linked(other) == {("project", "pr-1")}


def test_a_rule_regex_folds_case_like_subject_contains(api, tenant):
    tid, key = tenant["id"], tenant["key"]
    rule_pairing_with_a_project(api, key, "greetings", {"subject_regex": "^GRÜSSE aus"})
    message = make_message(make_mailbox(tid), sender="x@y.example", subject="Grüße aus Wien")
    engine.pair_message(message)
    assert linked(message) == {("project", "pr-1")}


def test_two_undos_racing_record_one_undo(api, tenant, monkeypatch):
    """Both requests read the entry before either marked it undone."""
    tid, key = tenant["id"], tenant["key"]
    rule_creating_leads(api, key)
    message = make_message(make_mailbox(tid), sender="who@new.example")
    engine.pair_message(message)
    entry = next(e for e in manual.list_audit(tid, 50, None, message.message_id)[0] if e.action == "record.created")
    stale = manual.get_audit(tid, entry.audit_id)
    assert api("POST", f"/v1/audit/{entry.audit_id}/undo", key=key).status == 200
    monkeypatch.setattr(manual, "get_audit", lambda tenant_id, audit_id: stale)   # the racing request's read
    assert api("POST", f"/v1/audit/{entry.audit_id}/undo", key=key).status == 409
    monkeypatch.undo()
    undos = [e for e in manual.list_audit(tid, 50, None, message.message_id)[0] if e.action == "undo"]
    assert len(undos) == 1
    assert manual.get_audit(tid, entry.audit_id).undone_by == undos[0].audit_id


def test_an_undo_of_a_created_record_retried_after_a_crash_finishes_it(api, tenant, monkeypatch):
    """The first undo deleted the record and died before announcing it: the lead's other links stayed."""
    tid, key = tenant["id"], tenant["key"]
    rule_creating_leads(api, key)
    mailbox = make_mailbox(tid)
    first = make_message(mailbox, sender="who@new.example")
    lead_id = engine.pair_message(first).records[0]["id"]
    second = make_message(mailbox, sender="who@new.example")
    engine.pair_message(second)
    assert linked(second) == {("lead", lead_id)}
    entry = next(e for e in manual.list_audit(tid, 50, None, first.message_id)[0] if e.action == "record.created")

    def crash(*args):
        raise RuntimeError("the Lambda timed out")

    monkeypatch.setattr(late, "announce_deleted", crash)
    with pytest.raises(RuntimeError):
        manual.undo(tid, entry.audit_id, None)
    monkeypatch.undo()
    assert directory.get_record(tid, "lead", lead_id) is None
    assert api("POST", f"/v1/audit/{entry.audit_id}/undo", key=key).status == 200
    run_directory_jobs(tid)
    assert linked(first) == set() and linked(second) == set()
    assert Message.get(second.message_id).link_count == 0


@pytest.mark.parametrize("record_domain, sender", [
    ("xn--bcher-kva.example", "jan@bücher.example"),        # the CRM wrote A-labels, the mail U-labels
    ("bücher.example", "jan@xn--bcher-kva.example"),
    ("BÜCHER.example", "jan@bücher.example"),
])
def test_an_international_domain_pairs_whichever_form_each_side_wrote(api, tenant, record_domain, sender):
    tid, key = tenant["id"], tenant["key"]
    message = make_message(make_mailbox(tid), sender=sender, date=recent(1))
    api("PUT", "/v1/directory/contact/p-1", key=key, json_body={"emails": [f"jan@{record_domain}"]})
    api("PUT", "/v1/directory/company/c-1", key=key, json_body={"domains": [record_domain]})
    run_directory_jobs(tid)                                          # late pairing
    assert linked(message) == {("contact", "p-1"), ("company", "c-1")}
    live = make_message(make_mailbox(tid, email="bob@acme-crm.example"), sender=sender, date=recent(1))
    engine.pair_message(live)
    assert linked(live) == {("contact", "p-1"), ("company", "c-1")}
    # the address leaves the record: the links it made go, whichever form the index holds
    api("PUT", "/v1/directory/contact/p-1", key=key, json_body={"emails": []})
    run_directory_jobs(tid)
    assert ("contact", "p-1") not in linked(live)


def test_an_international_address_indexed_before_a_labels_still_pairs(api, tenant):
    """Index entries written before keys took A-labels hold the U-label form; lookups read both."""
    tid = tenant["id"]
    record = directory.put_record(tid, "contact", "p-1", {"emails": ["jan@bücher.example"]}).record
    legacy = f"{tid}#email#jan@bücher.example"
    directory._apply_index(tid, record.record_key, set(), directory._keys_of(record))   # as the old code wrote it
    DirectoryIndex(legacy).update(actions=[DirectoryIndex.record_keys.add({record.record_key}),
                                           DirectoryIndex.tenant_id.set(tid)])
    for sender in ("jan@bücher.example", "jan@xn--bcher-kva.example"):
        message = make_message(make_mailbox(tid), sender=sender, date=recent(1))
        engine.pair_message(message)
        assert linked(message) == {("contact", "p-1")}
    directory.put_record(tid, "contact", "p-1", {"emails": []})    # leaving the record clears the old entry too
    assert not DirectoryIndex.get(legacy).record_keys


def test_a_record_created_by_a_rule_keeps_its_audit_and_event_across_a_crash(api, tenant, monkeypatch):
    """The lead was stored, then the job died before its audit entry and `record.created` event; the queue
    redelivers the message and pairing runs again."""
    tid, key = tenant["id"], tenant["key"]
    rule_creating_leads(api, key)
    message = make_message(make_mailbox(tid), sender="who@new.example")
    real_save = AuditEntry.save

    def crash(self, *args, **kwargs):
        raise RuntimeError("the Lambda timed out")

    monkeypatch.setattr(AuditEntry, "save", crash)
    with pytest.raises(RuntimeError):
        engine.pair_message(message)
    monkeypatch.setattr(AuditEntry, "save", real_save)
    engine.pair_message(message)                                     # the redelivery
    engine.pair_message(message)                                     # and one more: nothing twice
    [lead] = [r for r in directory.DirectoryRecord.query(tid) if r.type == "lead"]
    assert linked(message) == {("lead", lead.record_id)}
    created = [e for e in manual.list_audit(tid, 50, None, message.message_id)[0] if e.action == "record.created"]
    assert len(created) == 1 and created[0].entity_id == lead.record_id
    events = list_events(tid, "record.created")
    assert len(events) == 1 and events[0].payload["audit_id"] == created[0].audit_id


def test_two_writes_of_one_record_racing_leave_no_stale_index_entry(tenant):
    """Both writers read the record before either saved it (two PUTs, or a batch and a PUT): each moved the
    index from the same old state, so the loser's address stayed indexed for a record that no longer has it
    and paired mail with it."""
    tid = tenant["id"]
    directory.put_record(tid, "contact", "p-1", {"emails": ["old@acme.example"]})
    stale = directory.get_record(tid, "contact", "p-1")
    directory.put_record(tid, "contact", "p-1", {"emails": ["first@acme.example"]})
    directory.put_record(tid, "contact", "p-1", {"emails": ["second@acme.example"]}, existing=stale)
    assert directory.get_record(tid, "contact", "p-1").emails == ["second@acme.example"]
    mailbox = make_mailbox(tid)
    for sender, expected in (("first@acme.example", set()), ("old@acme.example", set()),
                             ("second@acme.example", {("contact", "p-1")})):
        message = make_message(mailbox, sender=sender)
        engine.pair_message(message)
        assert linked(message) == expected, sender
    legacy = directory.get_record(tid, "contact", "p-1")                 # a record written before versions
    legacy.update(actions=[directory.DirectoryRecord.version.remove()])
    directory.put_record(tid, "contact", "p-1", {"emails": ["third@acme.example"]})
    assert directory.get_record(tid, "contact", "p-1").version == 1


def test_a_rule_pairing_with_another_tenants_record_pairs_nothing(api, tenant, other_tenant):
    """Held: a rule names a record by type and id within its own tenant; the other tenant's record of that id
    is never reached, and a record missing from the directory makes no link (nor an error)."""
    api("PUT", "/v1/directory/project/theirs", key=other_tenant["key"], json_body={"name": "Not yours"})
    for record_id in ("theirs", "missing"):
        assert api("POST", "/v1/rules", key=tenant["key"], json_body={
            "name": record_id, "conditions": {},
            "actions": [{"type": "pair", "record": {"type": "project", "id": record_id}}]}).status == 201
    message = make_message(make_mailbox(tenant["id"]), sender="x@y.example")
    result = engine.pair_message(message)
    assert result.links == [] and linked(message) == set()
    assert Message.get(message.message_id).link_count == 0


def test_a_later_rules_skip_undoes_nothing_because_nothing_was_done(api, tenant):
    """Rule 1 creates a lead and reopens tickets, rule 2 says skip (pair with nothing): the lead was created
    and the ticket reopened although the message ended paired with nothing."""
    tid, key = tenant["id"], tenant["key"]
    directory.put_record(tid, "ticket", "tk-1", {"number": "555", "status": "closed"})
    for position, actions, conditions in ((1, [{"type": "create_lead"}, {"type": "reopen_ticket"}], {}),
                                          (2, [{"type": "skip"}], {"subject_contains": "unsubscribe"})):
        assert api("POST", "/v1/rules", key=key, json_body={"name": f"r{position}", "position": position,
                                                             "conditions": conditions,
                                                             "actions": actions}).status == 201
    mailbox = make_mailbox(tid)
    skipped = make_message(mailbox, sender="who@new.example", subject="Re: [T-555] unsubscribe")
    result = engine.pair_message(skipped)
    assert result.skipped.endswith("skip") and result.records == [] and result.reopened == []
    assert [r for r in directory.DirectoryRecord.query(tid) if r.type == "lead"] == []
    assert directory.get_record(tid, "ticket", "tk-1").status == "closed"
    assert list_events(tid, "record.created") == [] and linked(skipped) == set()
    kept = make_message(mailbox, sender="who@new.example", subject="Re: [T-555] still broken")
    result = engine.pair_message(kept)                               # without the skip both happen
    assert len(result.records) == 1 and result.reopened == ["tk-1"]
    assert linked(kept) == {("lead", result.records[0]["id"]), ("ticket", "tk-1")}


def test_accept_and_dismiss_racing_resolve_a_signal_once(api, tenant, monkeypatch):
    """Held: both requests read the open signal; the one whose conditional write lands second gets 409 and
    writes nothing (no link, no audit entry)."""
    tid, key = tenant["id"], tenant["key"]
    api("PUT", "/v1/directory/company/c-1", key=key, json_body={"emails": ["info@acme.example"]})
    message = make_message(make_mailbox(tid, mode="signal"), sender="info@acme.example")
    [signal_id] = engine.pair_message(message).signals
    stale = store.get_signal(tid, signal_id)
    assert api("POST", f"/v1/signals/{signal_id}/dismiss", key=key).status == 200
    real_get = manual.get_signal
    monkeypatch.setattr(manual, "get_signal", lambda tenant_id, sid: stale)
    answer = api("POST", f"/v1/signals/{signal_id}/accept", key=key)
    monkeypatch.setattr(manual, "get_signal", real_get)
    assert answer.status == 409 and answer.json["detail"] == "The signal is already dismissed.", answer.json
    assert store.get_signal(tid, signal_id).status == "dismissed"
    assert linked(message) == set() and Message.get(message.message_id).link_count == 0
    actions = [e.action for e in manual.list_audit(tid, 50, None, message.message_id)[0]]
    assert sorted(actions) == ["signal.created", "signal.dismissed"]


def test_an_undo_entry_cannot_be_undone_and_the_rule_limit_names_its_field(api, tenant, monkeypatch):
    """Held: undo of an `undo` is 409; the per-tenant rule limit is a 422 naming `rules`."""
    tid, key = tenant["id"], tenant["key"]
    api("PUT", "/v1/directory/company/c-1", key=key, json_body={"emails": ["info@acme.example"]})
    message = make_message(make_mailbox(tid), sender="info@acme.example")
    engine.pair_message(message)
    entry = next(e for e in manual.list_audit(tid, 50, None, message.message_id)[0] if e.action == "link.created")
    undo = api("POST", f"/v1/audit/{entry.audit_id}/undo", key=key).json
    assert api("POST", f"/v1/audit/{undo['id']}/undo", key=key).status == 409
    assert linked(message) == set()
    monkeypatch.setattr(rulebook, "MAX_RULES", 1)
    body = {"name": "r", "conditions": {}, "actions": [{"type": "stop"}]}
    assert api("POST", "/v1/rules", key=key, json_body=body).status == 201
    refused = api("POST", "/v1/rules", key=key, json_body=body)
    assert refused.status == 422 and refused.json["errors"][0]["field"] == "rules", refused.json


def _imported(mailbox, from_header: str, n: int):
    raw = (f"From: {from_header}\r\nTo: alice@acme-crm.example\r\nSubject: hello {n}\r\n"
           f"Message-ID: <addr-{n}@x.example>\r\nDate: Sun, 22 Nov 2026 08:15:00 +0000\r\n\r\nbody\r\n").encode()
    return save_fetched(mailbox, FetchedMessage(MessageRef("inbox", str(n)), raw)).message


def test_addresses_pair_as_the_mail_really_names_them(api, tenant):
    """Held, through the real header parser: a display name that looks like an address pairs on the real
    address only; the unquoted lookalike is a malformed From and pairs with nothing; domains match exactly (a
    subdomain pairs only with the company that lists it); free-mail domains never pair by domain."""
    tid, key = tenant["id"], tenant["key"]
    records = [{"type": "company", "id": "c-acme", "emails": ["ceo@acme.example"], "domains": ["acme.example"]},
               {"type": "company", "id": "c-eu", "domains": ["eu.acme.example"]},
               {"type": "company", "id": "c-evil", "emails": ["x@evil.example"]},
               {"type": "company", "id": "c-gmail", "domains": ["gmail.com"]}]
    assert api("POST", "/v1/directory/batch", key=key, json_body={"records": records}).status == 200
    mailbox = make_mailbox(tid)
    cases = [('"ceo@acme.example" <x@evil.example>', {("company", "c-evil")}),
             ("ceo@acme.example <x@evil.example>", set()),
             ("Jan <jan@eu.acme.example>", {("company", "c-eu")}),
             ("Jan <jan@mail.acme.example>", set()),
             ("Jan <jan@gmail.com>", set()),
             ("CEO <CEO@ACME.example>", {("company", "c-acme")})]
    for n, (from_header, expected) in enumerate(cases):
        message = _imported(mailbox, from_header, n)
        engine.pair_message(message)
        assert linked(message) == expected, from_header


@pytest.mark.parametrize("condition, sender", [
    ("bücher.example", "jan@xn--bcher-kva.example"),
    ("xn--bcher-kva.example", "jan@bücher.example"),
    ("Jan@BÜCHER.example", "jan@xn--bcher-kva.example"),
])
def test_a_rules_from_condition_matches_an_international_domain_in_either_form(api, tenant, condition, sender):
    tid, key = tenant["id"], tenant["key"]
    rule_pairing_with_a_project(api, key, "books", {"from": [condition]})
    message = make_message(make_mailbox(tid), sender=sender)
    engine.pair_message(message)
    assert linked(message) == {("project", "pr-1")}


def test_a_lead_undone_and_created_again_is_announced_again(api, tenant):
    tid, key = tenant["id"], tenant["key"]
    rule_creating_leads(api, key)
    mailbox = make_mailbox(tid)
    first = make_message(mailbox, sender="who@new.example")
    lead_id = engine.pair_message(first).records[0]["id"]
    entry = next(e for e in manual.list_audit(tid, 50, None, first.message_id)[0] if e.action == "record.created")
    assert api("POST", f"/v1/audit/{entry.audit_id}/undo", key=key).status == 200
    second = make_message(mailbox, sender="who@new.example")          # the same sender: the same lead id
    assert engine.pair_message(second).records == [{"type": "lead", "id": lead_id}]
    events = list_events(tid, "record.created")
    assert len(events) == 2 and {e.payload["message_id"] for e in events} == {first.message_id, second.message_id}
