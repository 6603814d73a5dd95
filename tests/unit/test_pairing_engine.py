"""Guards pair_message against duplicate links/signals on redelivery, ignoring the mailbox mode, losing the
project on a reply that dropped the tag, re-suggesting dismissed signals and a wrong `link_count`."""
from __future__ import annotations

import pytest

from chalicelib.models.message import Message
from chalicelib.models.pairing import MessageLink
from chalicelib.notify.events import list_events
from chalicelib.pairing import directory, engine, manual
from chalicelib.pairing.store import active_links
from tests.sync_helpers import by_operation, dynamodb_calls
from tests.unit.pairing_fixtures import make_mailbox, make_message, make_tenant


@pytest.fixture
def tenant_id(aws):
    tenant_id = make_tenant()
    directory.put_record(tenant_id, "company", "c-1", {"name": "Acme", "emails": ["info@acme.example"],
                                                       "domains": ["acme.example"]})
    directory.put_record(tenant_id, "contact", "p-1", {"emails": ["jan@acme.example"], "company_id": "c-1"})
    directory.put_record(tenant_id, "project", "pr-7", {"number": "1234"})
    return tenant_id


def linked(message) -> set[tuple[str, str]]:
    return {(link.entity_type, link.entity_id) for link in active_links(message.message_id)}


def test_auto_mode_links_once_and_counts(tenant_id):
    mailbox = make_mailbox(tenant_id, "auto")
    message = make_message(mailbox, sender="jan@acme.example", subject="Offer #1234#")
    first = engine.pair_message(message)
    assert {(link["type"], link["id"]) for link in first.links} == {("company", "c-1"), ("contact", "p-1"),
                                                                   ("project", "pr-7")}
    assert all(link["source"] == "auto" and link["reason"] for link in first.links)
    again = engine.pair_message(Message.get(message.message_id))
    assert again.links == [] and again.signals == []
    assert Message.get(message.message_id).link_count == 3
    paired = list_events(tenant_id, "message.paired")
    assert len(paired) == 1 and len(paired[0].payload["links"]) == 3


def test_a_messages_links_are_written_in_one_transaction(tenant_id):
    """Guards pair_message against one transaction per link: its three links, their audit entries, the count and
    the thread markers go in together, and pairing again (the transaction is cancelled, then each link found
    written) adds nothing."""
    mailbox = make_mailbox(tenant_id, "auto")
    message = make_message(mailbox, sender="jan@acme.example", subject="Offer #1234#")
    with dynamodb_calls(by_operation) as calls:
        assert len(engine.pair_message(message).links) == 3
    assert calls["TransactWriteItems"] == 1, dict(calls)
    assert linked(message) == {("company", "c-1"), ("contact", "p-1"), ("project", "pr-7")}
    assert Message.get(message.message_id).link_count == 3
    assert engine.pair_message(Message.get(message.message_id)).links == []
    assert Message.get(message.message_id).link_count == 3 and len(list_events(tenant_id, "message.paired")) == 1


def test_signal_mode_suggests_and_accept_dismiss(tenant_id):
    mailbox = make_mailbox(tenant_id, "signal")
    message = make_message(mailbox, sender="jan@acme.example", subject="Offer #1234#")
    result = engine.pair_message(message)
    assert result.links == [] and len(result.signals) == 3
    assert linked(message) == set() and Message.get(message.message_id).link_count == 0
    assert len(list_events(tenant_id, "signal.created")) == 3
    assert engine.pair_message(message).signals == []                       # idempotent
    by_record = {}
    from chalicelib.models.pairing import Signal
    for signal in Signal.query(tenant_id):
        by_record[signal.entity_type] = signal
        assert 0 < signal.confidence <= 1 and signal.reason
    manual.accept_signal(tenant_id, by_record["project"].signal_id, "u-alice")
    manual.dismiss_signal(tenant_id, by_record["company"].signal_id, "u-alice")
    assert linked(message) == {("project", "pr-7")}
    link = MessageLink.get(message.message_id, "project#pr-7")
    assert link.source == "signal" and link.actor == "user:u-alice"
    with pytest.raises(manual.PairingError):
        manual.accept_signal(tenant_id, by_record["company"].signal_id, "u-alice")
    assert engine.pair_message(Message.get(message.message_id)).signals == []   # dismissed: never again
    assert Signal.get(tenant_id, by_record["company"].signal_id).status == "dismissed"


def test_off_mode_does_nothing(tenant_id):
    mailbox = make_mailbox(tenant_id, "off")
    message = make_message(mailbox, sender="jan@acme.example", subject="#1234#")
    result = engine.pair_message(message)
    assert result.skipped == "pairing off" and result.matches == [] and linked(message) == set()


def test_internal_and_blocklisted_mail_pair_with_nothing(aws):
    tenant_id = make_tenant(pairing={"blocklist": {"domains": ["spam.example"]}})
    directory.put_record(tenant_id, "project", "pr-7", {"number": "1234"})
    mailbox = make_mailbox(tenant_id)
    internal = make_message(mailbox, sender="bob@acme-crm.example", subject="#1234#")
    assert engine.pair_message(internal).skipped == "internal mail"
    blocked = make_message(mailbox, sender="x@spam.example", subject="#1234#")
    assert engine.pair_message(blocked).skipped == "blocklisted" and linked(blocked) == set()


def test_reply_without_the_tag_inherits_links_of_the_message_it_answers(tenant_id):
    mailbox = make_mailbox(tenant_id)
    original = make_message(mailbox, sender="someone@other.example", subject="Offer #1234#", rfc_id="orig@x")
    engine.pair_message(original)
    reply = make_message(mailbox, sender="someone@other.example", subject="Re: Offer", in_reply_to="orig@x",
                         references=["orig@x"])
    result = engine.pair_message(reply)
    assert linked(reply) == {("project", "pr-7")}
    assert result.links[0]["source"] == "thread" and "orig@x" in result.links[0]["reason"]
    deeper = make_message(mailbox, sender="someone@other.example", subject="Re: Re: Offer",
                          in_reply_to=reply.rfc_message_id, references=["orig@x", reply.rfc_message_id])
    engine.pair_message(deeper)
    assert linked(deeper) == {("project", "pr-7")}


def test_reply_inherits_through_the_provider_thread_id(tenant_id):
    mailbox = make_mailbox(tenant_id)
    original = make_message(mailbox, sender="someone@other.example", subject="#1234#", thread_id="T1")
    engine.pair_message(original)
    follow_up = make_message(mailbox, sender="someone@other.example", subject="no tag", thread_id="T1")
    engine.pair_message(follow_up)
    assert linked(follow_up) == {("project", "pr-7")}
    unrelated = make_message(mailbox, sender="someone@other.example", subject="no tag", thread_id="T2")
    engine.pair_message(unrelated)
    assert linked(unrelated) == set()


def test_removed_link_is_not_recreated_and_undo_is_audited(tenant_id):
    mailbox = make_mailbox(tenant_id)
    message = make_message(mailbox, sender="info@acme.example")
    engine.pair_message(message)
    link = MessageLink.get(message.message_id, "company#c-1")
    undo = manual.undo(tenant_id, link.audit_id, None)
    assert undo.action == "undo" and undo.undo_of == link.audit_id
    assert linked(message) == set() and Message.get(message.message_id).link_count == 0
    assert MessageLink.get(message.message_id, "company#c-1").status == "removed"     # trail kept
    engine.pair_message(Message.get(message.message_id))
    assert linked(message) == set()
    with pytest.raises(manual.PairingError):
        manual.undo(tenant_id, link.audit_id, None)
    manual.link_manually(Message.get(message.message_id), "company", "c-1", "u-alice")  # a person may re-pair
    assert linked(message) == {("company", "c-1")} and Message.get(message.message_id).link_count == 1


def test_ticket_tag_in_body_uses_the_parsed_body_only_when_enabled(aws, monkeypatch):
    tenant_id = make_tenant(pairing={"ticket_tag_in_body": True})
    directory.put_record(tenant_id, "ticket", "tk-1", {"number": "555"})
    mailbox = make_mailbox(tenant_id)
    message = make_message(mailbox, sender="x@other.example", subject="no tag")
    calls = []

    def fake_load_parsed(msg):
        calls.append(msg.message_id)
        return type("Parsed", (), {"text": "Quoted: [T-555] thanks"})()

    monkeypatch.setattr("chalicelib.pairing.engine.load_parsed", fake_load_parsed)
    engine.pair_message(message)
    assert linked(message) == {("ticket", "tk-1")} and calls == [message.message_id]
    other_tenant = make_tenant()
    directory.put_record(other_tenant, "ticket", "tk-1", {"number": "555"})
    plain = make_message(make_mailbox(other_tenant), sender="x@other.example", subject="no tag")
    engine.pair_message(plain)
    assert linked(plain) == set() and calls == [message.message_id]


def test_a_passed_mailbox_saves_the_read_but_a_foreign_one_is_ignored(tenant_id):
    mailbox = make_mailbox(tenant_id, "auto")
    off = make_mailbox(tenant_id, "off", email="x@acme-crm.example")
    message = make_message(mailbox, sender="info@acme.example")
    assert engine.pair_message(message, mailbox=off).mode == "auto"        # not the message's mailbox
    assert engine.pair_message(message, mailbox=mailbox).links == []       # already paired: idempotent
