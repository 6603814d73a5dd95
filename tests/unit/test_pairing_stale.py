"""Guards "links follow the directory": a deleted or changed record kept every link it had (the message
listed a deleted company, `?paired=true` counted it), undoing a created record left other messages linked to
it, accepting a suggestion of a deleted record linked a record that does not exist, a lead created from Sent
mail was keyed on the mailbox owner, and a contact was created without its company."""
from __future__ import annotations

from chalicelib.models.message import Message
from chalicelib.models.pairing import Signal
from chalicelib.notify.events import list_events
from chalicelib.pairing import directory, engine, late, manual
from chalicelib.pairing.store import active_links
from tests.unit.pairing_fixtures import make_mailbox, make_message


def linked(message) -> set[tuple[str, str]]:
    return {(link.entity_type, link.entity_id) for link in active_links(message.message_id)}


def run_directory_jobs(tenant_id: str) -> None:
    """What the notifier does with the queued `directory.changed` events (oldest first; idempotent)."""
    for event in reversed(list_events(tenant_id, late.EVENT_TYPE)):
        late.on_event(event)


def test_deleted_record_loses_every_link_and_counts_follow(api, tenant):
    tid, key = tenant["id"], tenant["key"]
    api("PUT", "/v1/directory/company/c-1", key=key, json_body={"name": "Acme", "emails": ["info@acme.example"]})
    api("PUT", "/v1/directory/project/pr-1", key=key, json_body={"name": "Kept"})
    mailbox = make_mailbox(tid)
    message = make_message(mailbox, sender="info@acme.example")
    engine.pair_message(message)
    manual.link_manually(message, "project", "pr-1", "u-alice")
    other = make_message(mailbox, sender="jan@else.example")
    manual.link_manually(other, "company", "c-1", "u-alice")               # by hand: goes only with the record
    assert linked(message) == {("company", "c-1"), ("project", "pr-1")} and linked(other) == {("company", "c-1")}

    assert api("DELETE", "/v1/directory/company/c-1", key=key).status == 204
    run_directory_jobs(tid)
    assert linked(message) == {("project", "pr-1")} and linked(other) == set()
    assert Message.get(message.message_id).link_count == 1 and Message.get(other.message_id).link_count == 0
    paired = api("GET", f"/v1/mailboxes/{mailbox.mailbox_id}/messages?paired=true", key=key).json["items"]
    assert [m["id"] for m in paired] == [message.message_id]
    assert [link["id"] for link in paired[0]["links"]] == ["pr-1"]
    detail = api("GET", f"/v1/messages/{other.message_id}", key=key).json
    assert detail["links"] == []
    trail = api("GET", f"/v1/audit?message_id={other.message_id}", key=key).json["items"]
    assert (trail[0]["action"], trail[0]["actor"]) == ("link.removed", "directory")
    assert api("GET", "/v1/directory/company/c-1/messages", key=key).status == 404
    run_directory_jobs(tid)                                                  # a redelivery changes nothing
    assert Message.get(message.message_id).link_count == 1


def test_changed_record_drops_only_the_links_it_no_longer_justifies(api, tenant):
    tid, key = tenant["id"], tenant["key"]
    records = [{"type": "company", "id": "c-1", "emails": ["info@acme.example"], "domains": ["acme.example"]},
               {"type": "contact", "id": "p-1", "company_id": "c-1", "emails": ["jan@gmail.com"]},
               {"type": "project", "id": "pr-7", "number": "1234"}]
    api("POST", "/v1/directory/batch", key=key, json_body={"records": records})
    mailbox = make_mailbox(tid)
    by_domain = make_message(mailbox, sender="info@acme.example", rfc_id="a@x")
    by_contact = make_message(mailbox, sender="jan@gmail.com", rfc_id="b@x", date="2026-11-22T09:00:00Z")
    reply = make_message(mailbox, sender="someone@other.example", in_reply_to="b@x", date="2026-11-22T10:00:00Z")
    tagged = make_message(mailbox, sender="x@y.example", subject="Plan #1234#")
    by_hand = make_message(mailbox, sender="x@y.example", subject="no tag")
    for message in (by_domain, by_contact, reply, tagged):
        engine.pair_message(message)
    manual.link_manually(by_hand, "project", "pr-7", None)
    assert linked(by_contact) == {("contact", "p-1"), ("company", "c-1")} == linked(reply)

    # the company's address goes, its domain stays: the message still matches (by domain)
    api("PUT", "/v1/directory/company/c-1", key=key, json_body={"emails": [], "domains": ["acme.example"]})
    # the contact's address goes: its link, the company link made through it, and the reply's inherited ones
    api("PUT", "/v1/directory/contact/p-1", key=key, json_body={"company_id": "c-1", "emails": []})
    # the project's number changes: the tag no longer matches; the link made by hand stays
    api("PUT", "/v1/directory/project/pr-7", key=key, json_body={"number": "9999"})
    run_directory_jobs(tid)
    assert linked(by_domain) == {("company", "c-1")}
    assert linked(by_contact) == set() and linked(reply) == set()
    assert linked(tagged) == set() and linked(by_hand) == {("project", "pr-7")}
    assert Message.get(reply.message_id).link_count == 0


def test_rule_links_follow_matching_but_an_explicit_pair_stays(api, tenant):
    tid, key = tenant["id"], tenant["key"]
    api("PUT", "/v1/directory/lead/l-1", key=key, json_body={"emails": ["eva@lead.example"]})
    api("PUT", "/v1/directory/project/pr-1", key=key, json_body={"name": "Inbox triage"})
    result = api("POST", "/v1/rules", key=key, json_body={
        "name": "bind and pair", "conditions": {}, "actions": [
            {"type": "bind", "types": ["lead"]}, {"type": "pair", "record": {"type": "project", "id": "pr-1"}}]})
    assert result.status == 201, result
    mailbox = make_mailbox(tid, mode="signal")
    message = make_message(mailbox, sender="eva@lead.example")
    engine.pair_message(message)
    assert linked(message) == {("lead", "l-1"), ("project", "pr-1")}
    api("PUT", "/v1/directory/lead/l-1", key=key, json_body={"emails": []})
    api("PUT", "/v1/directory/project/pr-1", key=key, json_body={"name": "Renamed", "number": "5"})
    api("PUT", "/v1/directory/project/pr-1", key=key, json_body={"name": "Renamed"})   # loses its number
    run_directory_jobs(tid)
    assert linked(message) == {("project", "pr-1")}


def test_undo_of_a_created_record_removes_its_links_everywhere(api, tenant):
    tid, key = tenant["id"], tenant["key"]
    mailbox = make_mailbox(tid)
    first = make_message(mailbox, sender="new@prospect.example")
    made = api("POST", f"/v1/messages/{first.message_id}/create-record", key=key, json_body={"type": "lead"})
    assert made.status == 201, made
    lead_id = made.json["record"]["id"]
    second = make_message(mailbox, sender="new@prospect.example")
    engine.pair_message(second)
    assert linked(first) == {("lead", lead_id)} == linked(second)
    entry = next(e for e in api("GET", "/v1/audit", key=key).json["items"] if e["action"] == "record.created")
    assert api("POST", f"/v1/audit/{entry['id']}/undo", key=key).status == 200
    assert api("GET", f"/v1/directory/lead/{lead_id}", key=key).status == 404
    assert linked(first) == set()
    run_directory_jobs(tid)
    assert linked(second) == set() and Message.get(second.message_id).link_count == 0


def test_accepting_a_signal_whose_record_was_deleted_is_a_conflict(api, tenant):
    tid, key = tenant["id"], tenant["key"]
    api("PUT", "/v1/directory/company/c-1", key=key, json_body={"emails": ["info@acme.example"]})
    api("PUT", "/v1/directory/company/c-2", key=key, json_body={"emails": ["sales@acme.example"]})
    mailbox = make_mailbox(tid, mode="signal")
    message = make_message(mailbox, sender="info@acme.example", cc=("sales@acme.example",), direction="outbound",
                           to=("info@acme.example",))
    signals = engine.pair_message(message).signals
    assert len(signals) == 2
    by_record = {Signal.get(tid, s).entity_id: s for s in signals}
    assert api("DELETE", "/v1/directory/company/c-1", key=key).status == 204
    refused = api("POST", f"/v1/signals/{by_record['c-1']}/accept", key=key)
    assert refused.status == 409 and "no longer exists" in refused.json["detail"]
    assert linked(message) == set() and Message.get(message.message_id).link_count == 0
    assert Signal.get(tid, by_record["c-1"]).status == "dismissed"
    # the notifier also closes the open suggestions of a deleted record
    api("DELETE", "/v1/directory/company/c-2", key=key)
    run_directory_jobs(tid)
    assert Signal.get(tid, by_record["c-2"]).status == "dismissed"
    assert api("GET", "/v1/signals?status=open", key=key).json["items"] == []


def test_lead_from_sent_mail_is_the_recipient_not_the_mailbox_owner(api, tenant):
    mailbox = make_mailbox(tenant["id"], email="alice@acme-crm.example")
    sent = [make_message(mailbox, sender="alice@acme-crm.example", to=(to,), direction="outbound")
            for to in ("eva@one.example", "petr@two.example")]
    leads = []
    for message in sent:
        made = api("POST", f"/v1/messages/{message.message_id}/create-record", key=tenant["key"],
                   json_body={"type": "lead"})
        assert made.status == 201 and made.json["created"] is True, made
        assert made.json["link"]["id"] == made.json["record"]["id"]
        leads.append(made.json["record"])
    assert [link["emails"] for link in leads] == [["eva@one.example"], ["petr@two.example"]]
    assert leads[0]["id"] != leads[1]["id"]
    inbound = make_message(mailbox, sender="eva@one.example")
    again = api("POST", f"/v1/messages/{inbound.message_id}/create-record", key=tenant["key"],
                json_body={"type": "lead"}).json
    assert again["created"] is False and again["record"]["id"] == leads[0]["id"]


def test_contact_from_a_message_gets_its_company_or_a_422_naming_company_id(api, tenant):
    key = tenant["key"]
    api("PUT", "/v1/directory/company/c-1", key=key, json_body={"domains": ["acme.example"]})
    api("PUT", "/v1/directory/company/c-2", key=key, json_body={"name": "Other"})
    mailbox = make_mailbox(tenant["id"], mode="off")
    known = make_message(mailbox, sender="jan@acme.example")
    path = f"/v1/messages/{known.message_id}/create-record"
    made = api("POST", path, key=key, json_body={"type": "contact"})
    assert made.status == 201 and made.json["record"]["company_id"] == "c-1", made
    assert made.json["record"]["emails"] == ["jan@acme.example"]
    unknown = make_message(mailbox, sender="eva@nowhere.example")
    path = f"/v1/messages/{unknown.message_id}/create-record"
    refused = api("POST", path, key=key, json_body={"type": "contact"})
    assert refused.status == 422 and refused.json["errors"][0]["field"] == "company_id", refused
    missing = api("POST", path, key=key, json_body={"type": "contact", "company_id": "c-404"})
    assert missing.status == 422 and missing.json["errors"][0]["field"] == "company_id"
    wrong = api("POST", path, key=key, json_body={"type": "project", "company_id": "c-2"})
    assert wrong.status == 422 and wrong.json["errors"][0]["field"] == "company_id"
    chosen = api("POST", path, key=key, json_body={"type": "contact", "company_id": "c-2"})
    assert chosen.status == 201 and chosen.json["record"]["company_id"] == "c-2"
    assert linked(unknown) == {("contact", chosen.json["record"]["id"])}
    assert directory.get_record(tenant["id"], "contact", chosen.json["record"]["id"]).company_id == "c-2"


def test_notifier_lambda_removes_links_of_a_deleted_record(api, tenant, aws):
    """Guards the wiring: a record deletion must reach link removal through the events queue and notifier."""
    import json

    from app import notifier
    from tests.sync_helpers import receive_event

    api("PUT", "/v1/directory/contact/p-1", key=tenant["key"], json_body={"emails": ["eva@wired.example"]})
    message = make_message(make_mailbox(tenant["id"]), sender="eva@wired.example")
    engine.pair_message(message)
    assert linked(message) == {("contact", "p-1")}
    receive_event(aws["events_queue_url"], 10)                        # drain the events of the setup
    assert api("DELETE", "/v1/directory/contact/p-1", key=tenant["key"]).status == 204
    event = receive_event(aws["events_queue_url"], 10)
    assert [json.loads(r["body"])["type"] for r in event["Records"]] == [late.EVENT_TYPE]
    assert notifier(event, None) == {"batchItemFailures": []}
    assert linked(message) == set() and Message.get(message.message_id).link_count == 0


def test_a_deleted_record_with_many_links_is_finished_by_follow_up_events(api, tenant, monkeypatch):
    """Guards the per-event bound: links beyond it must not stay on a deleted record for good."""
    from chalicelib.pairing import stale
    monkeypatch.setattr(stale, "MAX_LINKS", 2)
    api("PUT", "/v1/directory/lead/l-1", key=tenant["key"], json_body={"emails": ["many@lead.example"]})
    mailbox = make_mailbox(tenant["id"])
    messages = [make_message(mailbox, sender="many@lead.example") for _ in range(5)]
    for message in messages:
        engine.pair_message(message)
    api("DELETE", "/v1/directory/lead/l-1", key=tenant["key"])
    for _ in range(3):
        run_directory_jobs(tenant["id"])
    assert [linked(m) for m in messages] == [set()] * 5
