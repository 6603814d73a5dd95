"""Guards late pairing: loading the directory after mail was imported must still pair the recent messages
(including replies that only inherit), stay bounded, and never touch another tenant's mail."""
from __future__ import annotations

import json

import boto3

from chalicelib.models.mailbox import Mailbox
from chalicelib.notify.events import list_events
from chalicelib.pairing import directory, late
from chalicelib.pairing.matchers import Rec
from chalicelib.pairing.store import active_links
from chalicelib.timeutil import isoformat, utcnow
from tests.sync_helpers import by_operation_and_table, dynamodb_calls
from tests.unit.pairing_fixtures import make_mailbox, make_message, make_tenant


def linked(message):
    return {(link.entity_type, link.entity_id) for link in active_links(message.message_id)}


def recent(days_ago: int) -> str:
    from datetime import timedelta
    return isoformat(utcnow() - timedelta(days=days_ago))


def test_directory_loaded_after_import_pairs_recent_messages_via_the_event(api, tenant, other_tenant, aws):
    mailbox = make_mailbox(tenant["id"])
    early = make_message(mailbox, sender="jan@late.example", subject="Question", rfc_id="q@x", date=recent(3))
    reply = make_message(mailbox, sender="someone@else.example", subject="Re: Question", in_reply_to="q@x",
                         date=recent(2))
    tagged = make_message(mailbox, sender="x@y.example", subject="Plan #4711#", date=recent(1))
    ancient = make_message(mailbox, sender="jan@late.example", subject="old", date=recent(90))
    foreign = make_message(make_mailbox(other_tenant["id"]), sender="jan@late.example", date=recent(1))
    for message in (early, reply, tagged, ancient, foreign):
        assert linked(message) == set()

    records = [{"type": "contact", "id": "p-1", "emails": ["jan@late.example"]},
               {"type": "project", "id": "pr-1", "number": "4711"}]
    assert api("POST", "/v1/directory/batch", key=tenant["key"], json_body={"records": records}).status == 200
    changed = list_events(tenant["id"], late.EVENT_TYPE)
    assert len(changed) == 1 and set(changed[0].payload["records"]) == {"contact#p-1", "project#pr-1"}
    queued = [json.loads(m["Body"]) for m in boto3.client("sqs").receive_message(
        QueueUrl=aws["events_queue_url"], MaxNumberOfMessages=10)["Messages"]]
    job = next(m for m in queued if m["type"] == late.EVENT_TYPE)

    report = late.handle_event(job["tenant_id"], job["event_id"])
    assert linked(early) == {("contact", "p-1")}
    assert linked(reply) == {("contact", "p-1")}                       # inherited from the message it answers
    assert linked(tagged) == {("project", "pr-1")}
    assert linked(ancient) == set() and linked(foreign) == set()       # outside the window / other tenant
    assert report.paired == 3 and not report.truncated
    again = late.handle_event(job["tenant_id"], job["event_id"])
    assert again.links == 0                                            # idempotent


def test_company_added_later_pairs_mail_of_its_existing_contacts(aws):
    tenant_id = make_tenant()
    directory.put_record(tenant_id, "contact", "p-1", {"emails": ["jan@gmail.com"], "company_id": "c-9"})
    message = make_message(make_mailbox(tenant_id), sender="jan@gmail.com", date=recent(1))
    outcome = directory.put_record(tenant_id, "company", "c-9", {"name": "Acme"})
    assert outcome.added_keys == ()                                   # no address of its own ...
    report = late.repair_recent(tenant_id, directory.to_rec(outcome.record))
    assert ("company", "c-9") in linked(message) and report.paired == 1   # ... but its contact's address


def five_messages_and_their_lead() -> tuple[str, Rec]:
    """A tenant whose one mailbox holds five recent messages from an address a new lead then claims."""
    tenant_id = make_tenant()
    mailbox = make_mailbox(tenant_id)
    for _ in range(5):
        make_message(mailbox, sender="a@lead.example", date=recent(1))
    outcome = directory.put_record(tenant_id, "lead", "l-1", {"emails": ["a@lead.example"]})
    return tenant_id, directory.to_rec(outcome.record)


def test_repair_is_bounded(aws):
    tenant_id, lead = five_messages_and_their_lead()
    report = late.repair_recent(tenant_id, lead, limit=3)
    assert report.examined == 3 and report.truncated and report.paired == 3


def test_repair_reads_each_mailbox_once(aws):
    """Guards late pairing against reading the mailbox item again for every message it pairs."""
    tenant_id, lead = five_messages_and_their_lead()
    with dynamodb_calls(by_operation_and_table) as calls:
        report = late.repair_recent(tenant_id, lead)
    assert report.paired == 5
    assert calls[f"GetItem:{Mailbox.Meta.table_name}"] == 1, dict(calls)


def test_unchanged_keys_emit_no_event(api, tenant):
    body = {"name": "Acme", "emails": ["info@acme.example"]}
    api("PUT", "/v1/directory/company/c-1", key=tenant["key"], json_body=body)
    api("PUT", "/v1/directory/company/c-1", key=tenant["key"], json_body={**body, "name": "Acme Inc."})
    assert len(list_events(tenant["id"], late.EVENT_TYPE)) == 1


def test_notifier_lambda_runs_late_pairing_from_the_events_queue(api, tenant, aws):
    """Guards the wiring: a directory change must reach late pairing through the notifier handler."""
    from app import notifier
    from tests.sync_helpers import receive_event

    message = make_message(make_mailbox(tenant["id"]), sender="eva@wired.example", date=recent(1))
    records = [{"type": "contact", "id": "p-7", "emails": ["eva@wired.example"]}]
    assert api("POST", "/v1/directory/batch", key=tenant["key"], json_body={"records": records}).status == 200
    event = receive_event(aws["events_queue_url"], 10)
    assert any(json.loads(r["body"])["type"] == late.EVENT_TYPE for r in event["Records"])
    assert notifier(event, None) == {"batchItemFailures": []}
    assert linked(message) == {("contact", "p-7")}
