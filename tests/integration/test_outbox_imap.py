"""Guards sending through the outbox against a real SMTP server (aiosmtpd) and a real Dovecot: replies that
do not thread at the server, signatures ignoring the mailbox settings, header injection reaching SMTP, a
retried request sending twice, scheduled mail sent early or after a cancel, provider failures lost, the
sent copy missing from Sent (or filed there although `append_sent` is off), stored twice by the next sync, or
left unpaired, and forwards without the original's attachments."""
from __future__ import annotations

import time

import pytest

from chalicelib import aws
from chalicelib.config import get_settings
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.outbox import OutboxItem
from chalicelib.notify.events import list_events
from chalicelib.outbox import delivery, service
from chalicelib.pairing import directory
from devservers.dovecot import free_port
from devservers.smtp import for_dovecot
from tests.mailfactory import make_message
from tests.outbox_helpers import (SIGNATURE, mailbox_body, outbox_item, received, run_outbox_jobs, sent_folder,
                                  stored_in, sync)


@pytest.fixture
def smtp(dovecot):
    with for_dovecot(dovecot) as server:
        yield server


@pytest.fixture
def world(api, tenant, dovecot, smtp, aws):
    """A shared IMAP mailbox (signature, replies signed) with one inbound message from a CRM contact, synced."""
    user, password = dovecot.new_user("send")
    created = api("POST", "/v1/mailboxes", key=tenant["key"],
                  json_body=mailbox_body(dovecot, smtp.port, user, password, signature_html=SIGNATURE,
                                         signature_on_replies=True))
    assert created.status == 201, created
    mailbox_id = created.json["id"]
    for who, level in (("u-reader", "read"), ("u-writer", "read_write")):
        assert api("PUT", f"/v1/mailboxes/{mailbox_id}/shares/{who}", key=tenant["key"],
                   json_body={"access": level}).status == 200
    directory.put_record(tenant["id"], "contact", "p-1", {"name": "Jan", "emails": ["jan@customer.example"]})
    original_id = "<offer-1@customer.example>"
    dovecot.append(user, "INBOX", make_message(subject="Offer #1", from_="Jan <jan@customer.example>",
                                               to=f"{user}@acme-crm.example", message_id=original_id,
                                               references=["<earlier@customer.example>"]))
    sync(mailbox_id, tenant["id"])
    [inbound] = stored_in(mailbox_id, "inbox")
    return {"user": user, "mailbox_id": mailbox_id, "inbound": inbound, "tenant": tenant, "aws": aws,
            "email": f"{user}@acme-crm.example"}


def plain(mail) -> str:
    return mail.get_body(("plain",)).get_content().replace("\r\n", "\n")


def send(api, world, body, *, user="u-writer", key=None):
    headers = {"Idempotency-Key": key} if key else None
    return api("POST", f"/v1/mailboxes/{world['mailbox_id']}/send", key=world["tenant"]["key"], user=user,
               json_body=body, headers=headers)


def test_reply_is_threaded_signed_appended_once_and_paired(api, world, smtp, dovecot):
    accepted = send(api, world, {"mode": "reply", "in_reply_to": world["inbound"].message_id,
                                 "text": "Thank you, we accept."})
    assert accepted.status == 202, accepted
    assert accepted.json["status"] == "queued"
    assert run_outbox_jobs(world["aws"]["events_queue_url"]) == ["sent"]

    [mail] = received(smtp)
    assert smtp.envelopes[0][1] == ["jan@customer.example"]
    assert mail["In-Reply-To"] == "<offer-1@customer.example>"
    assert mail["References"] == "<earlier@customer.example> <offer-1@customer.example>"
    assert mail["Subject"] == "Re: Offer #1"
    assert str(mail["From"]) == f"Acme Sales <{world['email']}>"
    text = plain(mail)
    assert "Thank you, we accept.\n\n-- \nJana Nováková\nAcme sales · team page <https://acme-crm.example/team>" \
        in text
    assert "> Hello," in text and "[Acme logo]" in text
    assert mail.get_body(("html",)) is None                             # text-only mail stays text-only

    item = api("GET", f"/v1/outbox/{accepted.json['id']}", key=world["tenant"]["key"], user="u-reader").json
    assert item["status"] == "sent" and item["attempts"] == 1 and item["message_id"]
    assert item["rfc_message_id"] in mail["Message-ID"]

    sent = sent_folder(dovecot, world["user"])
    assert len(sent) == 1 and sent[0] == smtp.envelopes[0][2]            # the very bytes, filed once
    [copy] = stored_in(world["mailbox_id"], "sent")
    assert copy.message_id == item["message_id"] and copy.direction == "outbound" and copy.link_count >= 1
    sync(world["mailbox_id"], world["tenant"]["id"])
    [after_sync] = stored_in(world["mailbox_id"], "sent")                   # found in Sent, not stored again
    assert after_sync.message_id == copy.message_id and not after_sync.provider_id.startswith("outbox:")


def test_signature_follows_the_mailbox_settings(api, world, smtp):
    api("PATCH", f"/v1/mailboxes/{world['mailbox_id']}", key=world["tenant"]["key"],
        json_body={"signature_on_replies": False})
    assert send(api, world, {"mode": "reply", "in_reply_to": world["inbound"].message_id,
                             "text": "No signature here"}).status == 202
    assert send(api, world, {"to": ["jan@customer.example"], "subject": "New", "text": "Signed",
                             "html": "<p>Signed</p><script>x()</script>"}).status == 202
    assert run_outbox_jobs(world["aws"]["events_queue_url"]) == ["sent", "sent"]
    mails = {m["Subject"]: m for m in received(smtp)}
    assert "Jana" not in plain(mails["Re: Offer #1"])
    assert plain(mails["New"]).startswith("Signed\n\n-- \nJana Nováková")
    html = mails["New"].get_body(("html",)).get_content()
    assert 'src="https://acme-crm.example/logo.png"' in html and 'href="https://acme-crm.example/team"' in html
    assert "<script" not in html and "x()" not in html


def test_forward_keeps_the_stored_originals_attachments_and_is_signed_per_setting(api, world, smtp, dovecot):
    """Guards a forward through the API that drops the original's attachment (read back from its stored raw
    object) or ignores `signature_on_replies` for forwards."""
    dovecot.append(world["user"], "INBOX", make_message(
        subject="Price list", from_="Eva <eva@supplier.example>", to=world["email"], message_id="<prices@x.example>",
        attachments=[("prices.csv", "text/csv", b"item,price\nA,10\n")]))
    sync(world["mailbox_id"], world["tenant"]["id"])
    [prices] = [m for m in stored_in(world["mailbox_id"], "inbox") if m.subject == "Price list"]
    body = {"mode": "forward", "in_reply_to": prices.message_id, "to": ["jan@customer.example"], "text": "FYI"}
    assert send(api, world, body).status == 202
    api("PATCH", f"/v1/mailboxes/{world['mailbox_id']}", key=world["tenant"]["key"],
        json_body={"signature_on_replies": False})
    assert send(api, world, {**body, "text": "Again, unsigned"}).status == 202
    assert run_outbox_jobs(world["aws"]["events_queue_url"]) == ["sent", "sent"]
    signed, unsigned = received(smtp)
    for mail in (signed, unsigned):
        assert mail["Subject"] == "Fwd: Price list" and mail["In-Reply-To"] is None
        [part] = list(mail.iter_attachments())
        assert part.get_filename() == "prices.csv" and part.get_content().replace("\r\n", "\n") == "item,price\nA,10\n"
        assert "From: Eva <eva@supplier.example>" in plain(mail)
    assert "\n-- \nJana Nováková" in plain(signed) and "Jana" not in plain(unsigned)


def test_append_sent_off_leaves_the_sent_folder_to_the_server(api, world, smtp, dovecot):
    """Guards `append_sent: false` (servers that file sent mail themselves): a second copy in Sent."""
    patched = api("PATCH", f"/v1/mailboxes/{world['mailbox_id']}", key=world["tenant"]["key"],
                  json_body={"append_sent": False})
    assert patched.status == 200 and patched.json["append_sent"] is False
    assert send(api, world, {"to": ["jan@customer.example"], "subject": "No copy", "text": "x"}).status == 202
    assert run_outbox_jobs(world["aws"]["events_queue_url"]) == ["sent"]
    assert len(smtp.envelopes) == 1 and sent_folder(dovecot, world["user"]) == []
    [copy] = stored_in(world["mailbox_id"], "sent")                   # still stored and paired at once
    assert copy.direction == "outbound" and copy.subject == "No copy"


@pytest.mark.parametrize("field,body", [
    ("subject", {"to": ["jan@customer.example"], "subject": "Hi\r\nBcc: victim@evil.example", "text": "x"}),
    ("to.0", {"to": ["Jan\r\nBcc: victim@evil.example <jan@customer.example>"], "text": "x"}),
    ("to.0", {"to": ["jan@customer.example <mallory@evil.example>"], "text": "x"}),
    ("to.0.name", {"to": [{"email": "jan@customer.example", "name": "Jan\nBcc: v@evil.example"}], "text": "x"}),
    ("to.0.email", {"to": ["jan\x01@customer.example"], "text": "x"}),               # a control in the envelope
    ("cc.0.email", {"to": ["jan@customer.example"], "cc": [{"email": "jaň@customer.example"}], "text": "x"}),
    ("bcc.0.email", {"bcc": ["jan..novak@customer.example"], "text": "x"}),          # not a dot-atom
    ("attachments.0.filename", {"to": ["jan@customer.example"], "text": "x",
                                "attachments": [{"filename": "a\r\n.pdf", "content_base64": "eA=="}]}),
    # line ends Python's email package knows besides CR/LF (str.splitlines): a 500 before, or a header split
    ("subject", {"to": ["jan@customer.example"], "subject": "Hi\u2028Bcc: victim@evil.example", "text": "x"}),
    ("to.0.name", {"to": [{"email": "jan@customer.example", "name": "Jan\u2029Bcc: v@evil.example"}], "text": "x"}),
    ("attachments.0.filename", {"to": ["jan@customer.example"], "text": "x",
                                "attachments": [{"filename": "a\x85Bcc: v.pdf", "content_base64": "eA=="}]}),
    ("text", {"to": ["jan@customer.example"], "subject": "empty"}),
    ("text", {"to": ["jan@customer.example"], "text": "  ", "html": "<script>x()</script><p></p>"}),
    ("in_reply_to", {"mode": "reply", "text": "x"}),
    ("to", {"to": [f"r{i}@customer.example" for i in range(101)], "text": "x"}),
])
def test_bad_input_is_refused_naming_the_field_and_nothing_is_sent(api, world, smtp, field, body):
    result = send(api, world, body)
    assert result.status == 422, result
    assert field in [e["field"] for e in result.json["errors"]], result.json
    assert run_outbox_jobs(world["aws"]["events_queue_url"]) == [] and smtp.envelopes == []
    assert list(OutboxItem.query(world["tenant"]["id"])) == []


def test_a_retried_request_sends_once(api, world, smtp):
    body = {"to": ["jan@customer.example"], "subject": "Once", "text": "only once"}
    first = send(api, world, body, key="crm-42")
    second = send(api, world, body, key="crm-42")
    assert first.status == second.status == 202 and first.json["id"] == second.json["id"]
    other = send(api, world, {**body, "text": "changed"}, key="crm-42")
    assert other.status == 422 and other.json["type"].endswith("/idempotency-key-reused")
    run_outbox_jobs(world["aws"]["events_queue_url"])
    assert send(api, world, body, key="crm-42").json["status"] == "sent"
    run_outbox_jobs(world["aws"]["events_queue_url"])
    assert len(smtp.envelopes) == 1


def test_scheduled_send_waits_and_a_cancelled_one_never_goes(api, world, smtp):
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    later = send(api, world, {"to": ["jan@customer.example"], "subject": "Later", "text": "x", "send_at": soon})
    cancelled = send(api, world, {"to": ["jan@customer.example"], "subject": "Never", "text": "x", "send_at": soon})
    assert later.json["status"] == "scheduled" and later.json["send_at"] == soon
    too_far = send(api, world, {"to": ["jan@customer.example"], "text": "x", "send_at": "2099-01-01T00:00:00Z"})
    assert too_far.status == 422 and too_far.json["errors"][0]["field"] == "send_at"

    jobs = [{"tenant_id": world["tenant"]["id"], "outbox_id": r.json["id"]} for r in (later, cancelled)]
    assert [delivery.on_message(job) for job in jobs] == ["early", "early"]     # re-enqueued, not sent
    assert smtp.envelopes == []
    path = f"/v1/outbox/{cancelled.json['id']}/cancel"
    assert api("POST", path, key=world["tenant"]["key"], user="u-reader").status == 403
    assert api("POST", path, key=world["tenant"]["key"], user="u-writer").json["status"] == "cancelled"

    due = time.time() + 3601
    assert [delivery.on_message(job, now=due) for job in jobs] == ["sent", "done"]
    assert [m["Subject"] for m in received(smtp)] == ["Later"]
    again = api("POST", f"/v1/outbox/{later.json['id']}/cancel", key=world["tenant"]["key"], user="u-writer")
    assert again.status == 409 and again.json["status_now"] == "sent"


def test_provider_failure_retries_with_backoff_then_fails_with_the_reason(api, world, smtp):
    mailbox = Mailbox.get(world["tenant"]["id"], world["mailbox_id"])
    mailbox.update(actions=[Mailbox.smtp.set({**mailbox.smtp, "port": free_port()})])   # SMTP is down
    accepted = send(api, world, {"to": ["jan@customer.example"], "subject": "Down", "text": "x"})
    tenant_id, outbox_id = world["tenant"]["id"], accepted.json["id"]
    clock = [time.time()]
    delays = []
    for _ in range(delivery.MAX_ATTEMPTS):
        outcome = delivery.on_message({"tenant_id": tenant_id, "outbox_id": outbox_id}, now=clock[0])
        item = outbox_item(tenant_id, outbox_id)
        if outcome == "failed":
            break
        assert outcome == "retrying" and item.status == "queued" and item.last_error["code"] == "temporary"
        delays.append(item.due_at - int(clock[0]))
        clock[0] = item.due_at + 1
    # 30 s doubling, each plus 0-20 % jitter (chalicelib.backoff)
    assert all(base <= d <= base * 1.2 + 1 for d, base in zip(delays, [30, 60, 120, 240, 480])) and len(delays) == 5
    shown = api("GET", f"/v1/outbox/{outbox_id}", key=world["tenant"]["key"]).json
    assert shown["status"] == "failed" and shown["attempts"] == delivery.MAX_ATTEMPTS
    assert shown["last_error"]["code"] == "temporary" and shown["last_error"]["detail"]
    assert smtp.envelopes == []
    assert [e.payload["outbox_id"] for e in list_events(tenant_id, "outbox.failed")] == [outbox_id]


def test_read_user_gets_404_on_send_and_nothing_is_queued(api, world, smtp):
    result = send(api, world, {"to": ["jan@customer.example"], "text": "x"}, user="u-reader")
    assert result.status == 404 and result.json["type"].endswith("/not-found")
    assert list(OutboxItem.query(world["tenant"]["id"])) == []


def send_and_die_after_submitting(api, world, subject, monkeypatch) -> tuple[str, str]:
    """Send, and kill the attempt after the provider took the message but before it was recorded as sent."""
    accepted = send(api, world, {"to": ["jan@customer.example"], "subject": subject, "text": "x"})
    real_record = delivery._record_sent
    monkeypatch.setattr(delivery, "_record_sent", lambda *a, **k: (_ for _ in ()).throw(SystemExit("killed")))
    with pytest.raises(SystemExit):
        run_outbox_jobs(world["aws"]["events_queue_url"])
    monkeypatch.setattr(delivery, "_record_sent", real_record)
    return world["tenant"]["id"], accepted.json["id"]


def test_a_dead_attempt_is_not_resent_blindly(api, world, smtp, dovecot, monkeypatch):
    """Guards against resending a message whose attempt died after SMTP accepted it (a duplicate)."""
    tenant_id, outbox_id = send_and_die_after_submitting(api, world, "Crash", monkeypatch)
    assert outbox_item(tenant_id, outbox_id).status == "sending" and len(smtp.envelopes) == 1
    assert delivery.sweep() == 0                                   # not stale yet
    assert delivery.sweep(time.time() + delivery.STALE_AFTER + 1) == 1
    item = outbox_item(tenant_id, outbox_id)
    assert item.status == "sent" and item.message_id and len(smtp.envelopes) == 1   # found in Sent, not resent


def test_a_connection_lost_after_the_final_dot_is_not_resent(api, world, smtp, dovecot):
    """Guards a second copy at the recipients: the SMTP server took the whole message but the connection
    dropped before its reply to the final "." (RFC 5321 §4.1.1.4). A retry would deliver it twice; the item is
    checked against Sent after the backoff delay and, not found there, ends `failed` with `unknown_outcome`."""
    smtp.drop_after_data(times=5)
    accepted = send(api, world, {"to": ["jan@customer.example"], "subject": "Dropped", "text": "x"}, key="k-drop")
    tenant_id, outbox_id = world["tenant"]["id"], accepted.json["id"]
    assert run_outbox_jobs(world["aws"]["events_queue_url"]) == ["unsure"]
    item = outbox_item(tenant_id, outbox_id)
    assert item.status == "sending" and item.last_error["code"] == "temporary" and len(smtp.envelopes) == 1
    job = {"tenant_id": tenant_id, "outbox_id": outbox_id}
    assert [delivery.on_message(job) for _ in range(3)] == ["done"] * 3          # redelivered early: nothing
    assert send(api, world, {"to": ["jan@customer.example"], "subject": "Dropped", "text": "x"},
                key="k-drop").json["status"] == "sending"                          # the client's retry: same item
    later = item.due_at + 1
    assert [delivery.on_message(job, now=later) for _ in range(2)] == ["failed", "done"]
    shown = api("GET", f"/v1/outbox/{outbox_id}", key=world["tenant"]["key"]).json
    assert shown["status"] == "failed" and shown["last_error"]["code"] == "unknown_outcome"
    assert len(smtp.envelopes) == 1 and sent_folder(dovecot, world["user"]) == []
    assert [e.payload["outbox_id"] for e in list_events(tenant_id, "outbox.failed")] == [outbox_id]


def test_a_lost_reply_to_the_final_dot_is_recorded_sent_when_the_server_filed_it(api, world, smtp, dovecot):
    """Guards the case above on a server that files sent mail itself (`append_sent: false`): the copy in Sent
    proves the message went, so the item is `sent` and stored once — the next sync does not store it again."""
    api("PATCH", f"/v1/mailboxes/{world['mailbox_id']}", key=world["tenant"]["key"], json_body={"append_sent": False})
    smtp.drop_after_data()
    accepted = send(api, world, {"to": ["jan@customer.example"], "subject": "Filed", "text": "x"})
    tenant_id, outbox_id = world["tenant"]["id"], accepted.json["id"]
    assert run_outbox_jobs(world["aws"]["events_queue_url"]) == ["unsure"]
    [(_from, _rcpts, raw)] = smtp.envelopes
    dovecot.append(world["user"], "Sent", raw, flags=["\\Seen"])                  # the server filed what it took
    item = outbox_item(tenant_id, outbox_id)
    assert delivery.on_message({"tenant_id": tenant_id, "outbox_id": outbox_id}, now=item.due_at + 1) == "sent"
    item = outbox_item(tenant_id, outbox_id)
    assert item.status == "sent" and item.message_id and len(smtp.envelopes) == 1
    sync(world["mailbox_id"], tenant_id)
    assert [m.subject for m in stored_in(world["mailbox_id"], "sent")] == ["Filed"]


def test_a_job_redelivered_many_times_sends_once(api, world, smtp):
    """Guards SQS at-least-once delivery: the same outbox job handled five times is one SMTP transaction."""
    accepted = send(api, world, {"to": ["jan@customer.example"], "subject": "Five", "text": "x"})
    job = {"tenant_id": world["tenant"]["id"], "outbox_id": accepted.json["id"]}
    assert [delivery.on_message(job) for _ in range(5)] == ["sent", "done", "done", "done", "done"]
    assert run_outbox_jobs(world["aws"]["events_queue_url"]) == ["done"]
    assert len(smtp.envelopes) == 1


def test_a_copy_the_sync_stored_before_a_dead_attempt_was_recovered_is_one_message(api, world, smtp, monkeypatch):
    """Guards two messages in the CRM for one send: the attempt died after SMTP took the message and the APPEND
    filed it, the next sync stored Sent's copy, then the sweep recovered the item — its copy is that one."""
    tenant_id, outbox_id = send_and_die_after_submitting(api, world, "Crash then sync", monkeypatch)
    sync(world["mailbox_id"], tenant_id)
    [imported] = stored_in(world["mailbox_id"], "sent")
    assert delivery.sweep(time.time() + delivery.STALE_AFTER + 1) == 1
    item = outbox_item(tenant_id, outbox_id)
    assert item.status == "sent" and item.message_id == imported.message_id and len(smtp.envelopes) == 1
    sync(world["mailbox_id"], tenant_id)
    assert [m.message_id for m in stored_in(world["mailbox_id"], "sent")] == [imported.message_id]
    created = [e.payload.get("message_id") for e in list_events(tenant_id, "message.created")]
    assert created.count(imported.message_id) == 1 and len(set(created)) == len(created)


def test_a_reply_to_mail_whose_headers_decode_to_line_separators_goes_out_unsplit(api, world, smtp, dovecot):
    """Guards a header split (or a 500 from the email package) on replying to inbound mail whose encoded From
    name and Subject (RFC 2047) decode to U+2028 / NEL: the reply's subject and recipient carry spaces."""
    raw = (b"From: =?utf-8?q?Jan=E2=80=A8Bcc=3A_victim=40evil=2Eexample?= <jan@customer.example>\r\n"
           b"To: " + world["email"].encode() + b"\r\nSubject: =?utf-8?q?Offer=C2=85Bcc=3A_victim=40evil=2Eexample?=\r\n"
           b"Message-ID: <sep-1@customer.example>\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n\r\nHello\r\n")
    dovecot.append(world["user"], "INBOX", raw)
    sync(world["mailbox_id"], world["tenant"]["id"])
    [inbound] = [m for m in stored_in(world["mailbox_id"], "inbox") if m.rfc_message_id == "sep-1@customer.example"]
    assert send(api, world, {"mode": "reply", "in_reply_to": inbound.message_id, "text": "Thanks"}).status == 202
    assert run_outbox_jobs(world["aws"]["events_queue_url"]) == ["sent"]
    [(_from, rcpts, sent)] = smtp.envelopes
    assert rcpts == ["jan@customer.example"]
    assert not [line for line in sent.split(b"\r\n") if line.lower().startswith(b"bcc")]
    [mail] = received(smtp)
    assert mail["Subject"] == "Re: Offer Bcc: victim@evil.example" and "\u2028" not in str(mail["To"])


def test_a_sender_name_with_a_line_separator_is_refused_on_the_mailbox(api, world):
    """Guards a mailbox whose every send would fail: its sender_name ends up in From."""
    result = api("PATCH", f"/v1/mailboxes/{world['mailbox_id']}", key=world["tenant"]["key"],
                 json_body={"sender_name": "Acme\u2028Sales"})
    assert result.status == 422 and "sender_name" in [e["field"] for e in result.json["errors"]], result.json


@pytest.mark.parametrize("change", ["revoke", "lower_to_read"])
def test_a_share_revoked_while_a_send_waits_stops_it(api, world, smtp, change):
    """Guards mail going out in the name of a user who lost send rights while it was queued or scheduled
    (up to 30 days): when it is due, it fails with `forbidden`; the tenant's own sends are unaffected."""
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600))
    mine = send(api, world, {"to": ["jan@customer.example"], "subject": "Later", "text": "x", "send_at": soon})
    tenants = api("POST", f"/v1/mailboxes/{world['mailbox_id']}/send", key=world["tenant"]["key"],
                  json_body={"to": ["jan@customer.example"], "subject": "Tenant's", "text": "x", "send_at": soon})
    assert mine.status == tenants.status == 202
    path = f"/v1/mailboxes/{world['mailbox_id']}/shares/u-writer"
    if change == "revoke":
        assert api("DELETE", path, key=world["tenant"]["key"]).status == 204
    else:
        assert api("PUT", path, key=world["tenant"]["key"], json_body={"access": "read"}).status == 200
    due = time.time() + 601
    jobs = [{"tenant_id": world["tenant"]["id"], "outbox_id": r.json["id"]} for r in (mine, tenants)]
    assert [delivery.on_message(job, now=due) for job in jobs] == ["failed", "sent"]
    item = outbox_item(world["tenant"]["id"], mine.json["id"])
    assert item.status == "failed" and item.last_error["code"] == "forbidden"
    assert [m["Subject"] for m in received(smtp)] == ["Tenant's"]


def test_a_reply_to_long_message_ids_threads_on_the_wire(api, world, smtp, dovecot):
    """Guards In-Reply-To/References written as RFC 2047 encoded-words (which RFC 2047 §5 forbids in a msg-id,
    so no receiving client threads the reply): Outlook's Message-IDs run past the 78-character fold. The
    bytes SMTP receives carry each id literally, References capped at 20 (first + last 19), folded between ids."""
    outlook_id = "AM0PR07MB6129F8C2A1B2C3D4E5F60718293A4B5C6D@AM0PR07MB6129.eurprd07.prod.outlook.com"
    chain = [f"<AM0PR07MB{n:04d}F8C2A1B2C3D4E5F60718293A4B5C6D@AM0PR07MB6129.eurprd07.prod.outlook.com>"
             for n in range(25)]
    raw = (f"From: Jan <jan@customer.example>\r\nTo: {world['email']}\r\nSubject: Long ids\r\n"
           f"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{outlook_id}>\r\n"
           "References: " + "\r\n ".join(chain) + "\r\n\r\nHello\r\n")       # folded between ids
    dovecot.append(world["user"], "INBOX", raw.encode())
    sync(world["mailbox_id"], world["tenant"]["id"])
    [inbound] = [m for m in stored_in(world["mailbox_id"], "inbox") if m.subject == "Long ids"]
    assert send(api, world, {"mode": "reply", "in_reply_to": inbound.message_id, "text": "Thanks"}).status == 202
    assert run_outbox_jobs(world["aws"]["events_queue_url"]) == ["sent"]
    [(_from, _rcpts, raw)] = smtp.envelopes
    head = raw.split(b"\r\n\r\n")[0].decode("ascii")
    assert f"\r\nIn-Reply-To: <{outlook_id}>\r\n" in head
    unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ")
    [references] = [line for line in unfolded.split("\r\n") if line.startswith("References: ")]
    assert "=?" not in references
    assert references.split(" ")[1:] == [chain[0]] + chain[-18:] + [f"<{outlook_id}>"]
    assert all(len(line) <= 998 for line in head.split("\r\n"))


def test_two_concurrent_posts_with_one_idempotency_key_make_one_item(api, world, smtp, monkeypatch):
    """Guards the race of two identical requests: the second read no item yet (the first had not written), so
    it reaches the conditional put, loses, answers the winner's item and drops its own composed copy."""
    body = {"to": ["jan@customer.example"], "subject": "Race", "text": "once"}
    first = send(api, world, body, key="race-1")
    real_get, lookups = service.get_item, []

    def not_yet_written(tenant_id, outbox_id):
        lookups.append(outbox_id)
        return None if len(lookups) == 1 else real_get(tenant_id, outbox_id)

    monkeypatch.setattr(service, "get_item", not_yet_written)
    second = send(api, world, body, key="race-1")
    monkeypatch.setattr(service, "get_item", real_get)
    assert first.status == second.status == 202 and first.json["id"] == second.json["id"] and len(lookups) == 2
    keys = [o["Key"] for o in aws.s3().list_objects_v2(Bucket=get_settings().raw_bucket,
                                                 Prefix=f"outbox/{world['tenant']['id']}/").get("Contents", [])]
    assert len(keys) == 1                                              # the loser's copy is gone
    assert run_outbox_jobs(world["aws"]["events_queue_url"]).count("sent") == 1 and len(smtp.envelopes) == 1


def test_a_dead_attempt_that_cannot_be_checked_ends_visible_not_sending_forever(api, world, smtp, monkeypatch):
    """Guards an item left `sending` for good: its attempt died after SMTP took the message and Sent cannot be
    searched (IMAP down). It is checked again on a schedule (not only by the hourly sweep) and, still
    unreachable after `CHECK_FOR`, ends `failed` with `unknown_outcome` — visible, and never resent."""
    accepted = send(api, world, {"to": ["jan@customer.example"], "subject": "Crash, IMAP down", "text": "x"})
    tenant_id, outbox_id = world["tenant"]["id"], accepted.json["id"]
    real_record = delivery._record_sent
    monkeypatch.setattr(delivery, "_record_sent", lambda *a, **k: (_ for _ in ()).throw(SystemExit("killed")))
    with pytest.raises(SystemExit):
        run_outbox_jobs(world["aws"]["events_queue_url"])
    monkeypatch.setattr(delivery, "_record_sent", real_record)
    mailbox = Mailbox.get(tenant_id, world["mailbox_id"])
    mailbox.update(actions=[Mailbox.imap.set({**mailbox.imap, "port": free_port()})])    # IMAP is down
    job = {"tenant_id": tenant_id, "outbox_id": outbox_id}
    stale = time.time() + delivery.STALE_AFTER + 1
    assert delivery.on_message(job, now=stale) == "unchecked"
    item = outbox_item(tenant_id, outbox_id)
    assert item.status == "sending" and item.due_at > stale
    delayed = aws.sqs().get_queue_attributes(QueueUrl=world["aws"]["events_queue_url"],
                                             AttributeNames=["ApproximateNumberOfMessagesDelayed"])
    assert delayed["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"        # its own re-check job
    assert delivery.on_message(job, now=item.due_at + delivery.CHECK_FOR) == "failed"
    item = outbox_item(tenant_id, outbox_id)
    assert item.status == "failed" and item.last_error["code"] == "unknown_outcome" and len(smtp.envelopes) == 1
