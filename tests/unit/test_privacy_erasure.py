"""Purge, erasure and retention: what they delete (everything stored for the mailbox / the person, found by a scan
of every table and the bucket) and what they must not (other mail, the CRM's directory)."""
from __future__ import annotations

import base64
import datetime as dt
import json

import boto3
import pytest

from chalicelib.api.schemas.outbox import SendRequest
from chalicelib.config import get_settings
from chalicelib.erasure import erase, purge, retention
from chalicelib.erasure.delete import delete_messages
from chalicelib.models.conversation import ThreadEntry
from chalicelib.models.directory import DirectoryIndex, DirectoryRecord
from chalicelib.models.event import Event
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.models.outbox import OutboxItem
from chalicelib.models.pairing import AuditEntry
from chalicelib.models.privacy import ErasureJob, RetiredMailbox
from chalicelib.models.registry import all_models
from chalicelib.notify import notifier, user_notifications
from chalicelib.outbox import delivery
from chalicelib.outbox import service as outbox_service
from chalicelib.pairing import manual
from chalicelib.privacy import lists
from chalicelib.providers.base import FetchedMessage, MessageRef
from chalicelib.sync import effects, renewer, store, store_page
from chalicelib.threads import derived
from chalicelib.timeutil import isoformat, utcnow
from tests.mailfactory import make_message
from tests.sync_helpers import drain
from tests.unit.test_sharing_matrix import make_world  # noqa: F401 - the fixture that builds a tenant's world

PERSON = "Petra.Svobodova@Client.example"


def everything_naming(needles, *, skip=()) -> list:
    """Every DynamoDB item (all tables) and every S3 object (key or body) that contains one of `needles`."""
    needles = [n.casefold() for n in needles]
    found = []
    for model in all_models():
        if model in skip:
            continue
        for item in model.scan():
            text = json.dumps(item.serialize(), default=str).casefold()
            if any(n in text for n in needles):
                found.append((model.__name__, text[:160]))
    s3 = boto3.client("s3")
    bucket = get_settings().raw_bucket
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode("utf-8", "replace")
            if any(n in obj["Key"].casefold() or n in body.casefold() for n in needles):
                found.append(("s3", obj["Key"]))
    return found


def stored(mailbox, folder="inbox", uid="1", **kwargs):
    raw = make_message(**kwargs)
    return store.save_fetched(mailbox, FetchedMessage(MessageRef(folder, uid), raw)).message


def deliver_events(tenant_id: str) -> None:
    for event in Event.query(tenant_id):
        user_notifications.on_event(event)


class Record:
    def __init__(self, body: dict):
        self.body = json.dumps(body)
        self.message_id = "m-1"


def test_purge_deletes_everything_stored_for_the_mailbox_and_nothing_else(api, make_world):  # noqa: F811
    """Guards against a purge leaving any trace of the mailbox (raw mail, items, links, signals, audit,
    outbox, cursors, credentials, events, notifications) or deleting another mailbox's data."""
    world = make_world("personal")
    keep = make_world("personal")
    mailbox = world["mailbox"]
    tenant = world["tenant"]
    more = stored(Mailbox.get(tenant["id"], mailbox.mailbox_id), uid="2", from_="Info <info@customer.example>",
                  to="owner@acme-crm.example", subject="Second")
    deliver_events(tenant["id"])
    ids = [mailbox.mailbox_id, world["message"].message_id, more.message_id, world["signal"], world["outbox"]]
    assert everything_naming(ids)                         # there is something to delete

    answer = api("DELETE", f"/v1/mailboxes/{mailbox.mailbox_id}?purge=true", key=tenant["key"])

    assert answer.status == 200, answer
    assert answer.json["status"] == "purged" and answer.json["push_stop"] == "none"
    counts = answer.json["counts"]
    assert counts["messages"] == 2 and counts["raw_objects"] >= 2 and counts["links"] >= 1
    assert counts["signals"] == 1 and counts["outbox_items"] == 1 and counts["audit_entries"] >= 1
    assert everything_naming(ids) == []
    assert api("GET", f"/v1/mailboxes/{mailbox.mailbox_id}", key=tenant["key"]).status == 404
    kept = api("GET", f"/v1/messages/{keep['message'].message_id}", key=tenant["key"])
    assert kept.status == 200 and kept.json["id"] == keep["message"].message_id
    assert DirectoryRecord.get(tenant["id"], "company#c-1")          # the CRM's directory is not ours to delete


def test_a_purge_that_runs_out_of_time_continues_in_the_background(api, make_world, aws, monkeypatch):  # noqa: F811
    """Guards against a large purge being cut off by the request's time limit and never finishing."""
    world = make_world("personal")
    mailbox, tenant = world["mailbox"], world["tenant"]
    monkeypatch.setattr(purge, "REQUEST_SECONDS", 0.0)
    drain(aws["events_queue_url"])

    answer = api("DELETE", f"/v1/mailboxes/{mailbox.mailbox_id}?purge=true", key=tenant["key"])

    assert answer.status == 202 and answer.json["status"] == "purging", answer
    shown = api("GET", f"/v1/mailboxes/{mailbox.mailbox_id}", key=tenant["key"])
    assert shown.json["status"] == "purging" and shown.json["has_password"] is False
    for _ in range(20):
        jobs = [m["body"] for m in drain(aws["events_queue_url"]) if m["body"].get("kind") == purge.JOB_KIND]
        if not jobs:
            break
        for job in jobs:
            notifier.consume(Record(job))
    assert api("GET", f"/v1/mailboxes/{mailbox.mailbox_id}", key=tenant["key"]).status == 404
    assert everything_naming([mailbox.mailbox_id, world["message"].message_id]) == []


def test_erasure_deletes_the_persons_mail_tenant_wide_and_keeps_only_a_keyed_hash(api, make_world, aws):  # noqa: F811
    """Guards against an erasure missing a copy of the person's mail (any mailbox, any address field, any case),
    deleting mail they are not in, or keeping their address in plain text."""
    first, second = make_world("personal"), make_world("shared")
    tenant = first["tenant"]
    box1 = Mailbox.get(tenant["id"], first["mailbox"].mailbox_id)
    box2 = Mailbox.get(tenant["id"], second["mailbox"].mailbox_id)
    inbound = stored(box1, uid="10", from_=f"Petra <{PERSON}>", to="owner@acme-crm.example", subject="Inbound")
    copied = stored(box2, uid="11", from_="info@customer.example", to="owner@acme-crm.example",
                    cc=PERSON.upper(), subject="Copied")
    manual.link_manually(inbound, "project", "pr-1", None)
    outbound = stored(box2, folder="sent", uid="12", from_="owner@acme-crm.example", to="x@other.example",
                      extra_headers={"Reply-To": PERSON.lower()}, subject="Reply-To")
    deliver_events(tenant["id"])
    erased_ids = [inbound.message_id, copied.message_id, outbound.message_id]

    answer = api("POST", "/v1/erasure", key=tenant["key"], json_body={"email": PERSON})

    assert answer.status == 202 and answer.json["status"] == "done", answer
    assert sorted(answer.json["message_ids"]) == sorted(erased_ids)
    assert answer.json["counts"]["messages"] == 3 and answer.json["counts"]["raw_objects"] == 3
    record_kinds = (ErasureJob, AuditEntry)      # the erasure's own record: ids and a keyed hash only
    assert everything_naming([PERSON] + erased_ids, skip=record_kinds + (DirectoryRecord, DirectoryIndex)) == []
    assert everything_naming([PERSON]) == []     # the address is nowhere, not even in the erasure's record
    [entry] = [e for e in AuditEntry.query(tenant["id"]) if e.action == "erasure"]
    assert entry.details["subject_hash"] == erase.subject_hash(tenant["id"], PERSON.casefold())
    assert sorted(entry.details["message_ids"]) == sorted(erased_ids)
    for world in (first, second):                 # their mail is untouched
        assert Message.get(world["message"].message_id)
    job = api("GET", f"/v1/erasure/{answer.json['id']}", key=tenant["key"])
    assert job.status == 200 and job.json["status"] == "done"
    assert api("POST", "/v1/erasure", key=tenant["key"], user="u-owner",
               json_body={"email": PERSON}).status == 403


def test_erasure_continues_in_the_background(api, make_world, aws, monkeypatch):  # noqa: F811
    """Guards against an erasure of a large tenant stopping when the request's time is up."""
    world = make_world("personal")
    tenant = world["tenant"]
    mailbox = Mailbox.get(tenant["id"], world["mailbox"].mailbox_id)
    message = stored(mailbox, uid="20", from_=PERSON, to="owner@acme-crm.example")
    monkeypatch.setattr(erase, "REQUEST_SECONDS", 0.0)
    drain(aws["events_queue_url"])
    answer = api("POST", "/v1/erasure", key=tenant["key"], json_body={"email": PERSON})
    assert answer.status == 202 and answer.json["status"] == "running"
    for _ in range(20):
        jobs = [m["body"] for m in drain(aws["events_queue_url"]) if m["body"].get("kind") == erase.JOB_KIND]
        if not jobs:
            break
        for job in jobs:
            notifier.consume(Record(job))
    assert api("GET", f"/v1/erasure/{answer.json['id']}", key=tenant["key"]).json["status"] == "done"
    with pytest.raises(Message.DoesNotExist):
        Message.get(message.message_id)


def test_retention_sweeper_deletes_only_mail_older_than_the_period(api, make_world):  # noqa: F811
    """Guards against the retention sweep deleting recent mail, or keeping mail past the period."""
    world = make_world("personal")
    tenant = world["tenant"]
    mailbox = Mailbox.get(tenant["id"], world["mailbox"].mailbox_id)
    old = stored(mailbox, uid="30", date=utcnow() - dt.timedelta(days=40), subject="Old")
    recent = stored(mailbox, uid="31", date=utcnow() - dt.timedelta(days=20), subject="Recent")
    assert retention.sweep([mailbox]) == {}                           # no period: nothing is deleted
    put = api("PUT", "/v1/privacy/settings", key=tenant["key"], json_body={"retention_days": 30})
    assert put.status == 200 and put.json == {"retention_days": 30}
    assert api("PUT", "/v1/privacy/settings", key=tenant["key"], json_body={"retention_days": 31}).status == 422

    counts = retention.sweep([mailbox])

    assert counts["messages"] == 1
    with pytest.raises(Message.DoesNotExist):
        Message.get(old.message_id)
    assert Message.get(recent.message_id) and Message.get(world["message"].message_id)
    assert everything_naming([old.message_id]) == []
    assert lists.lists_for(mailbox).raw_tagging == "mailbridge-retention-days=30"
    tagged = stored(mailbox, uid="32", subject="Tagged")
    tags = boto3.client("s3").get_object_tagging(Bucket=get_settings().raw_bucket, Key=tagged.raw_s3_key)
    assert tags["TagSet"] == [{"Key": "mailbridge-retention-days", "Value": "30"}]
    assert isoformat(utcnow())        # (clock sanity for the cutoff)


def test_deleting_a_message_again_deletes_and_counts_nothing(api, make_world):  # noqa: F811
    """Guards against a repeated deletion (a redelivered job, a GSI page naming deleted items) failing or
    counting messages twice."""
    world = make_world("personal")
    message = Message.get(world["message"].message_id)
    first = delete_messages([message, message])
    assert first["messages"] == 1 and first["raw_objects"] == 1 and first["links"] >= 1
    assert delete_messages([message]) == {}
    # events name ids only and expire (purge and erasure delete them; delete_messages does not)
    assert everything_naming([message.message_id], skip=(Event,)) == []


def test_erasure_and_retention_reach_the_mail_of_a_mailbox_deleted_without_purge(api, make_world, aws):  # noqa: F811
    """Guards against mail kept after a plain delete (the CRM's record tabs still show what was paired) escaping
    an erasure or the retention period because its mailbox is gone from the tenant's partition."""
    world = make_world("personal")
    tenant = world["tenant"]
    mailbox = Mailbox.get(tenant["id"], world["mailbox"].mailbox_id)
    about_her = stored(mailbox, uid="40", from_=f"Petra <{PERSON}>", to="owner@acme-crm.example")
    old = stored(mailbox, uid="41", date=utcnow() - dt.timedelta(days=40), subject="Old")
    assert api("DELETE", f"/v1/mailboxes/{mailbox.mailbox_id}", key=tenant["key"], user="u-owner").status == 204
    [retired] = RetiredMailbox.query(tenant["id"])
    assert retired.mailbox_id == mailbox.mailbox_id
    assert set(retired.serialize()) == {"tenant_id", "mailbox_id", "retired_at"}              # it names no one
    assert Message.get(about_her.message_id) and Message.get(world["message"].message_id)     # the mail stays

    answer = api("POST", "/v1/erasure", key=tenant["key"], json_body={"email": PERSON})

    assert answer.status == 202 and answer.json["status"] == "done"
    assert answer.json["message_ids"] == [about_her.message_id]
    assert everything_naming([PERSON, about_her.message_id], skip=(ErasureJob, AuditEntry)) == []

    assert api("PUT", "/v1/privacy/settings", key=tenant["key"], json_body={"retention_days": 30}).status == 200
    assert renewer.run()["retention_deleted"] == 1                 # the hourly renewer reaches the retired mailbox
    with pytest.raises(Message.DoesNotExist):
        Message.get(old.message_id)
    assert [r.mailbox_id for r in RetiredMailbox.query(tenant["id"])] == [mailbox.mailbox_id]   # mail remains
    delete_messages([Message.get(m.message_id) for m in Message.by_mailbox.query(mailbox.mailbox_id)])
    renewer.run()
    assert list(RetiredMailbox.query(tenant["id"])) == []          # none of its mail is left: forgotten


def test_an_erasure_requested_while_a_page_is_stored_is_not_outrun(api, make_world, aws, monkeypatch):  # noqa: F811
    """Guards against a sync page that read the privacy lists before an erasure was requested storing the
    person's mail after the erasure job has already read that mailbox (the insert must see the new erasure),
    and against the refused message's raw object staying in the bucket."""
    world = make_world("personal")
    tenant = world["tenant"]
    mailbox = Mailbox.get(tenant["id"], world["mailbox"].mailbox_id)
    page = [FetchedMessage(MessageRef("inbox", "70"), make_message(from_=f"Petra <{PERSON}>", subject="Racing")),
            FetchedMessage(MessageRef("inbox", "71"), make_message(from_="jan@acme.example", subject="Bystander"))]
    lookups = []
    real_lookup = store_page.existing_items

    def erasure_meanwhile(keys):             # after the page read the lists, before it inserts
        if not lookups:
            erase.run_for_request(erase.create(tenant["id"], PERSON))
        lookups.append(keys)
        return real_lookup(keys)

    monkeypatch.setattr(store_page, "existing_items", erasure_meanwhile)

    outcomes = store_page.save_page(mailbox, page)

    assert [o.message.skipped_reason for o in outcomes] == [None, lists.ERASED]
    assert {m.subject for m in Message.by_mailbox.query(mailbox.mailbox_id)} >= {"Bystander"}
    assert "Racing" not in {m.subject for m in Message.by_mailbox.query(mailbox.mailbox_id)}
    assert everything_naming([PERSON, "Racing"]) == []
    assert int(Mailbox.get(tenant["id"], mailbox.mailbox_id).skipped_count or 0) == 1


def test_erasure_refuses_only_mail_dated_up_to_the_request(api, make_world, aws):  # noqa: F811
    """Guards against an erasure blocking the person's future mail (only mail dated up to the request stays
    erased; undated mail counts as erased), against plus-addressed or look-alike addresses being taken for the
    person, and against the person's address forms (case, IDN) escaping."""
    world = make_world("personal")
    tenant = world["tenant"]
    mailbox = Mailbox.get(tenant["id"], world["mailbox"].mailbox_id)
    idn_person = "Jan@Bücher.example"
    for address in (PERSON, idn_person):
        erase.run_for_request(erase.create(tenant["id"], address))
    past, future = utcnow() - dt.timedelta(days=1), utcnow() + dt.timedelta(minutes=5)

    def reason(uid, **kwargs):
        return store.save_fetched(mailbox, FetchedMessage(MessageRef("inbox", uid), make_message(**kwargs))
                                  ).message.skipped_reason

    assert reason("80", from_=PERSON.upper(), date=past) == lists.ERASED
    assert reason("81", from_="x@y.example", to="a@b.example", extra_headers={"Reply-To": PERSON}, date=past) \
        == lists.ERASED
    assert reason("82", from_="x@y.example", extra_headers={"Bcc": "JAN@xn--bcher-kva.example"},
                  date=past) == lists.ERASED
    assert reason("83", from_=PERSON, date=future) is None                     # written after the erasure
    assert reason("84", from_="petra.svobodova+crm@client.example", date=past) is None   # another address
    assert reason("85", from_="petra.svobodova@client.example.org", date=past) is None
    undated = make_message(from_=PERSON).replace(b"Date:", b"X-Old-Date:")
    assert store.save_fetched(mailbox, FetchedMessage(MessageRef("inbox", "86"), undated)
                              ).message.skipped_reason == lists.ERASED


def test_erasure_leaves_no_name_subject_or_text_of_the_erased_mail_and_exact_thread_counts(api, make_world, aws):  # noqa: F811
    """Guards against an erasure that deletes the address but leaves what identifies the person elsewhere: their
    display name (RFC 2047-encoded in the header), the erased messages' subject or text in a conversation's
    snippet, participants or the search index — and against a conversation's message and unread counts that
    still count the erased messages."""
    world = make_world("personal")
    tenant = world["tenant"]
    mailbox = Mailbox.get(tenant["id"], world["mailbox"].mailbox_id)
    first = stored(mailbox, uid="90", message_id="<q1@customer.example>", subject="Quorum offer",
                   from_="jan@customer.example", to="owner@acme-crm.example", body="Kept text.\n")
    reply = stored(mailbox, uid="91", message_id="<q2@client.example>", subject="Re: Quorum offer",
                   from_=f"=?utf-8?b?{base64.b64encode('Žofie Quartzová'.encode()).decode()}?= "
                         f"<{PERSON.lower()}>", to="owner@acme-crm.example", body="Zebrafinch secret plan.\n",
                   in_reply_to="<q1@customer.example>", references=["<q1@customer.example>"],
                   date=utcnow() + dt.timedelta(seconds=1))
    derived.remember(tenant["id"], [first.message_id, reply.message_id])
    conversation = Message.get(first.message_id).conversation_id
    assert Message.get(reply.message_id).conversation_id == conversation
    before = ThreadEntry.get(mailbox.mailbox_id, conversation)
    assert before.message_count == 2

    answer = api("POST", "/v1/erasure", key=tenant["key"], json_body={"email": PERSON})

    assert answer.json["status"] == "done" and answer.json["message_ids"] == [reply.message_id]
    assert everything_naming(["Quartzov", "Zebrafinch", reply.message_id], skip=(ErasureJob, AuditEntry)) == []
    left = ThreadEntry.get(mailbox.mailbox_id, conversation)
    assert left.message_count == 1 and left.latest_message_id == first.message_id
    assert int(left.unread_count or 0) == 0
    listed = api("GET", f"/v1/threads?mailbox_id={mailbox.mailbox_id}", key=tenant["key"])
    [thread] = [t for t in listed.json["items"] if t["id"] == conversation]
    assert thread["message_count"] == 1 and "Zebrafinch" not in json.dumps(thread)
    assert api("GET", "/v1/messages/search?q=zebrafinch", key=tenant["key"]).json["items"] == []


def test_purge_leaves_no_content_or_address_of_the_mailbox_and_counts_exactly(api, make_world):  # noqa: F811
    """Guards against a purge that deletes what names the mailbox id but leaves its mail's content or
    addresses in items keyed otherwise (conversations, thread keys, search postings, pairing markers), and
    against counts that are not the number of things deleted."""
    world = make_world("personal")
    tenant = world["tenant"]
    mailbox = Mailbox.get(tenant["id"], world["mailbox"].mailbox_id)
    unique = stored(mailbox, uid="95", message_id="<purge-probe@xylophone.example>", subject="Xylophone tender",
                    from_="Quentin Xylo <quentin@xylophone.example>", to="owner@acme-crm.example",
                    body="Marimba figures.\n")
    derived.remember(tenant["id"], [m.message_id for m in Message.by_mailbox.query(mailbox.mailbox_id)])
    deliver_events(tenant["id"])
    s3 = boto3.client("s3")
    bucket = get_settings().raw_bucket
    objects = [o["Key"] for prefix in (f"raw/{tenant['id']}/{mailbox.mailbox_id}/",
                                       f"outbox/{tenant['id']}/{mailbox.mailbox_id}/")
               for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    messages = list(Message.by_mailbox.query(mailbox.mailbox_id))

    answer = api("DELETE", f"/v1/mailboxes/{mailbox.mailbox_id}?purge=true", key=tenant["key"])

    assert answer.status == 200 and answer.json["status"] == "purged", answer
    assert everything_naming(["xylophone", "Quentin Xylo", "Marimba", unique.message_id]) == []
    counts = answer.json["counts"]
    assert counts["messages"] == len(messages)
    assert counts["raw_objects"] + counts.get("outbox_objects", 0) == len(objects), (counts, objects)


def test_erasure_reaches_mail_where_the_person_is_only_the_sender_header(api, make_world, aws):  # noqa: F811
    """Guards against an erasure missing mail a person sent on someone else's behalf (RFC 5322 §3.6.2: the
    Sender field names the agent, From the author) — its raw MIME would keep their address."""
    world = make_world("personal")
    tenant = world["tenant"]
    mailbox = Mailbox.get(tenant["id"], world["mailbox"].mailbox_id)
    on_behalf = stored(mailbox, uid="99", from_="Boss <boss@client.example>", to="owner@acme-crm.example",
                       extra_headers={"Sender": f"Assistant <{PERSON}>"}, subject="On behalf")
    assert Message.get(on_behalf.message_id).sender == {"name": "Assistant", "email": PERSON.lower()}

    answer = api("POST", "/v1/erasure", key=tenant["key"], json_body={"email": PERSON.upper()})

    assert answer.json["message_ids"] == [on_behalf.message_id]
    assert everything_naming([PERSON]) == []


def test_retention_boundary_thread_counts_and_page_debts_are_exact(api, make_world, aws):  # noqa: F811
    """Guards against the sweeper deleting mail exactly at the period's age (only older mail goes) or the store
    refusing it, against conversation counts (message_count, unread_count) that still count swept messages,
    and against a page debt naming a swept message failing or announcing it."""
    world = make_world("personal")
    tenant = world["tenant"]
    mailbox = Mailbox.get(tenant["id"], world["mailbox"].mailbox_id)
    now = utcnow().replace(microsecond=0)
    at_cutoff, just_older = now - dt.timedelta(days=30), now - dt.timedelta(days=30, seconds=1)
    lists.set_retention(tenant["id"], 30)

    def fetched(uid, date, **kwargs):
        return FetchedMessage(MessageRef("inbox", uid, seen=False),
                              make_message(date=date, to="owner@acme-crm.example", **kwargs))

    assert store.save_fetched(mailbox, fetched("50", just_older)).message.skipped_reason == lists.PAST_RETENTION
    lists.set_retention(tenant["id"], None)                        # stored while no period applies
    outcomes = store_page.save_page(mailbox, [
        fetched("51", just_older, message_id="<r1@customer.example>", subject="Offer"),
        fetched("52", at_cutoff, message_id="<r2@customer.example>", subject="Re: Offer",
                in_reply_to="<r1@customer.example>", references=["<r1@customer.example>"])])
    older, boundary = [o.message for o in outcomes]
    derived.remember(tenant["id"], [older.message_id, boundary.message_id])
    conversation = Message.get(older.message_id).conversation_id
    thread = ThreadEntry.get(mailbox.mailbox_id, conversation)
    assert (thread.message_count, thread.unread_count) == (2, 2)
    lists.set_retention(tenant["id"], 30)

    counts = retention.sweep([Mailbox.get(tenant["id"], mailbox.mailbox_id)], now=now)

    assert counts["messages"] == 1
    with pytest.raises(Message.DoesNotExist):
        Message.get(older.message_id)
    assert Message.get(boundary.message_id)                          # exactly 30 days old: not older
    thread = ThreadEntry.get(mailbox.mailbox_id, conversation)
    assert (thread.message_count, thread.unread_count) == (1, 1)
    assert thread.latest_message_id == boundary.message_id
    mailbox = Mailbox.get(tenant["id"], mailbox.mailbox_id)
    assert mailbox.owed_pages                                         # the page's effects are still owed
    drain(aws["events_queue_url"])
    effects.pay_debts(mailbox)
    assert not Mailbox.get(tenant["id"], mailbox.mailbox_id).owed_pages
    assert everything_naming([older.message_id]) == []              # no event announces the swept message


def test_erasure_deletes_the_failure_events_of_mail_sent_to_the_person(api, make_world, aws):  # noqa: F811
    """Guards against an erasure deleting the outbox item addressed to a person but keeping its `outbox.failed`
    event (and webhook delivery, in-app notification): a provider's refusal text can quote the address."""
    world = make_world("personal")
    tenant = world["tenant"]
    mailbox = Mailbox.get(tenant["id"], world["mailbox"].mailbox_id)
    item, _ = outbox_service.accept(mailbox, None, SendRequest(to=[PERSON], text="Hello"), None, None)
    delivery._fail(OutboxItem.get(tenant["id"], item.outbox_id),
                   {"code": "permanent", "detail": f"550 5.1.1 <{PERSON.lower()}>: mailbox unavailable"},
                   OutboxItem.outbox_id.exists())
    deliver_events(tenant["id"])
    assert everything_naming([PERSON])

    answer = api("POST", "/v1/erasure", key=tenant["key"], json_body={"email": PERSON})

    assert answer.json["status"] == "done" and answer.json["counts"]["outbox_items"] == 1
    assert everything_naming([PERSON, item.outbox_id], skip=(ErasureJob, AuditEntry)) == []
    assert everything_naming([PERSON]) == []
