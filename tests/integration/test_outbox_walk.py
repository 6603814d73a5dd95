"""The issue's "Done when" walk as one test: two users share a mailbox (one `read`, one `read_write`); the
read-write user replies from the CRM with the signature; the reply is threaded at the server (headers checked
on the bytes aiosmtpd received), appears in Dovecot's Sent once — also after the next sync — and is paired;
the read user gets 404 on send; the tenant's webhook receiver, down for the first hour, then gets every event
of it signed (verified with the recipe in docs/api.md), once each."""
from __future__ import annotations

import pytest

from chalicelib.models.message import Message
from chalicelib.notify import deliveries, events, notifier
from chalicelib.notify import queue as notify_queue
from chalicelib.pairing import directory
from devservers.smtp import for_dovecot
from tests.mailfactory import make_message
from tests.outbox_helpers import SIGNATURE, mailbox_body, received, sent_folder, stored_in, sync
from tests.sync_helpers import FakeContext, receive_event
from tests.webhook_helpers import documented_verify, Receiver, SimClock, SimQueue

HOUR = 3600


def pump_events(aws) -> None:
    """Feed the events queue to the notifier as Lambda would, until it is empty."""
    while True:
        batch = receive_event(aws["events_queue_url"], 10)
        if not batch["Records"]:
            return
        assert notifier.handle_batch(batch, FakeContext()) == {"batchItemFailures": []}


@pytest.fixture
def smtp(dovecot):
    with for_dovecot(dovecot) as server:
        yield server


def test_done_when_walk(api, tenant, aws, dovecot, smtp, monkeypatch):
    clock = SimClock()
    queue = SimQueue(clock)
    monkeypatch.setattr(deliveries, "clock", clock)
    monkeypatch.setattr(notify_queue, "send", queue.send)
    receiver = Receiver(clock).start()
    webhook = api("PUT", "/v1/webhook", key=tenant["key"], json_body={"url": receiver.url})
    assert webhook.status == 200, webhook
    port = receiver.port
    receiver.stop()                                              # the receiver is down for the first hour
    start = clock.now

    # A shared mailbox, created by the tenant admin: u-reader reads, u-writer reads and writes.
    user, password = dovecot.new_user("walk")
    created = api("POST", "/v1/mailboxes", key=tenant["key"], json_body=mailbox_body(
        dovecot, smtp.port, user, password, signature_html=SIGNATURE, signature_on_replies=True))
    assert created.status == 201, created
    mailbox_id = created.json["id"]
    for who, level in (("u-reader", "read"), ("u-writer", "read_write")):
        assert api("PUT", f"/v1/mailboxes/{mailbox_id}/shares/{who}", key=tenant["key"],
                   json_body={"access": level}).status == 200
    directory.put_record(tenant["id"], "contact", "p-1", {"name": "Jan", "emails": ["jan@customer.example"]})
    dovecot.append(user, "INBOX", make_message(subject="Offer #1", from_="Jan <jan@customer.example>",
                                               to=f"{user}@acme-crm.example",
                                               message_id="<offer-1@customer.example>"))
    sync(mailbox_id, tenant["id"])
    pump_events(aws)
    [inbound] = stored_in(mailbox_id, "inbox")
    body = {"mode": "reply", "in_reply_to": inbound.message_id, "text": "Thank you, we accept."}

    # The read user cannot send: 404, nothing queued.
    refused = api("POST", f"/v1/mailboxes/{mailbox_id}/send", key=tenant["key"], user="u-reader", json_body=body)
    assert refused.status == 404 and refused.json["type"].endswith("/not-found")
    # The read-write user replies; the outbox job rides the events queue.
    accepted = api("POST", f"/v1/mailboxes/{mailbox_id}/send", key=tenant["key"], user="u-writer",
                   json_body=body, headers={"Idempotency-Key": "walk-1"})
    assert accepted.status == 202, accepted
    queue.run_until(clock.now)
    pump_events(aws)
    status = api("GET", f"/v1/outbox/{accepted.json['id']}", key=tenant["key"], user="u-reader").json
    assert status["status"] == "sent" and status["message_id"]

    # Threaded at the server, with the signature.
    [mail] = received(smtp)
    assert mail["In-Reply-To"] == "<offer-1@customer.example>" and mail["Subject"] == "Re: Offer #1"
    assert mail["References"] == "<offer-1@customer.example>"
    assert "\r\n-- \r\nJana Nováková" in mail.get_body(("plain",)).get_content()
    # In Sent once, stored once (also after the next sync), paired to the contact.
    assert len(sent_folder(dovecot, user)) == 1
    sync(mailbox_id, tenant["id"])
    pump_events(aws)
    [copy] = stored_in(mailbox_id, "sent")
    assert copy.message_id == status["message_id"] and copy.direction == "outbound"
    links = api("GET", f"/v1/messages/{copy.message_id}", key=tenant["key"], user="u-reader").json
    assert Message.get(copy.message_id).link_count >= 1, links

    # The receiver comes back after an hour and gets every event, signed, once each.
    queue.run_until(start + HOUR)
    assert receiver.hits == []
    receiver.port = port
    receiver.start()
    queue.run_until(start + 4 * HOUR)
    verify = documented_verify()
    public = [e for e in events.list_events(tenant["id"], limit=1000) if e.type not in events.INTERNAL_TYPES]
    assert {"message.created", "message.paired", "outbox.sent"} <= {e.type for e in public}
    ids = [hit.headers["Webhook-Id"] for hit in receiver.hits]
    assert sorted(ids) == sorted(e.event_id for e in public)      # every event, exactly once
    assert all(verify(webhook.json["secret"], hit.headers, hit.body) for hit in receiver.hits)
    sent_events = [hit.json for hit in receiver.hits if hit.json["type"] == "outbox.sent"]
    assert sent_events[0]["data"]["outbox_id"] == accepted.json["id"]
    receiver.stop()
