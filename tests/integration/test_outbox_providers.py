"""Guards that Gmail and Microsoft 365 mailboxes send through the same outbox path as IMAP: a reply that loses
its provider thread, a sent copy stored again when the next sync finds it in Sent, provider ids missing from
the outbox item."""
from __future__ import annotations

import time

import pytest

from chalicelib.api.schemas.outbox import SendRequest
from chalicelib.credentials.store import CredentialStore
from chalicelib.models.message import Message
from chalicelib.outbox import delivery, service
from chalicelib.providers.kinds import provider_for
from chalicelib.sync import effects, engine
from tests.gmail_fixtures import EMAIL, days_ago, gmail_provider, mail, make_gmail_mailbox
from tests.graph_helpers import ADDRESS, outlook_mailbox, raw_mail
from tests.outbox_helpers import outbox_item
from tests.sync_helpers import reload

pytestmark = pytest.mark.usefixtures("aws")


def stored(mailbox, folder: str) -> list[Message]:
    return [m for m in Message.by_mailbox.query(mailbox.mailbox_id) if m.folder == folder]


def sync_with(mailbox, provider) -> None:
    with provider:
        engine.sync_mailbox(reload(mailbox), provider, time.monotonic() + 60, after_store=effects.complete,
                            options=engine.SyncOptions())


def reply_and_deliver(mailbox, original: Message) -> str:
    item, created = service.accept(reload(mailbox), "u-writer",
                                   SendRequest(mode="reply", in_reply_to=original.message_id, text="Thanks"),
                                   original, None)
    assert created
    assert delivery.on_message({"tenant_id": item.tenant_id, "outbox_id": item.outbox_id}) == "sent"
    return item.outbox_id


def test_gmail_reply_goes_through_messages_send_in_the_thread(google):
    mailbox = make_gmail_mailbox(google)
    google.deliver(EMAIL, mail(1), thread_id="thread-1", received=days_ago(1))
    sync_with(mailbox, gmail_provider(reload(mailbox)))
    [original] = stored(mailbox, "inbox")

    outbox_id = reply_and_deliver(mailbox, original)
    [sent] = google.sent
    assert sent["threadId"] == "thread-1" and b"In-Reply-To: <gmail-1@acme.example>" in sent["raw"]
    item = outbox_item(mailbox.tenant_id, outbox_id)
    assert item.status == "sent" and item.provider_thread_id == "thread-1" and item.provider_message_id
    [copy] = stored(mailbox, "sent")
    assert copy.message_id == item.message_id and copy.provider_id == item.provider_message_id
    sync_with(mailbox, gmail_provider(reload(mailbox)))
    assert [m.message_id for m in stored(mailbox, "sent")] == [copy.message_id]      # not stored twice


def test_graph_reply_goes_through_the_reply_action(fake_ms):
    mailbox = outlook_mailbox(fake_ms)
    fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(1))
    def graph():
        box = reload(mailbox)
        return provider_for(box, CredentialStore(box.tenant_id, box.mailbox_id).decode(box))

    sync_with(mailbox, graph())
    [original] = stored(mailbox, "inbox")
    outbox_id = reply_and_deliver(mailbox, original)
    [sent] = fake_ms.mail.user(ADDRESS).sent
    assert sent["message_id"] == original.provider_id and b"In-Reply-To: <graph-1-Hello@acme.example>" in sent["raw"]
    item = outbox_item(mailbox.tenant_id, outbox_id)
    assert item.status == "sent" and item.message_id
    [copy] = stored(mailbox, "sent")
    assert copy.provider_id.startswith("outbox:")                     # Graph answers 202 without an id
    sync_with(mailbox, graph())
    [after] = stored(mailbox, "sent")
    assert after.message_id == copy.message_id and not after.provider_id.startswith("outbox:")


def _accept(mailbox, body: dict):
    item, created = service.accept(reload(mailbox), "u-writer", SendRequest(**body), None, None)
    assert created
    return {"tenant_id": item.tenant_id, "outbox_id": item.outbox_id}


def test_gmail_500_after_sending_is_not_sent_again_and_its_copy_is_one_message(google):
    """Guards a second message at Google: `messages.send` sent it, then answered 500. The outbox does not
    retry; the job redelivered meanwhile does nothing; a sync stores Sent's copy; after the backoff the item is
    found in SENT (`rfc822msgid:`), recorded sent, and its stored copy is the one the sync made."""
    mailbox = make_gmail_mailbox(google)
    google.fail("messages.send", 500, after=True)
    job = _accept(mailbox, {"to": ["jan@customer.example"], "subject": "Once only", "text": "x"})
    assert delivery.on_message(job) == "unsure"
    assert [delivery.on_message(job) for _ in range(3)] == ["done"] * 3
    assert len(google.sent) == 1 and outbox_item(job["tenant_id"], job["outbox_id"]).status == "sending"
    sync_with(mailbox, gmail_provider(reload(mailbox)))
    [imported] = stored(mailbox, "sent")
    item = outbox_item(job["tenant_id"], job["outbox_id"])
    assert delivery.on_message(job, now=item.due_at + 1) == "sent"
    item = outbox_item(job["tenant_id"], job["outbox_id"])
    assert item.status == "sent" and item.message_id == imported.message_id and len(google.sent) == 1
    sync_with(mailbox, gmail_provider(reload(mailbox)))
    assert [m.message_id for m in stored(mailbox, "sent")] == [imported.message_id]


def test_gmail_503_before_sending_ends_failed_unknown_outcome_not_resent(google):
    """Guards a blind resend after a 5xx: Google's answer cannot tell a lost success from a failure, so an item
    not found in SENT afterwards is `failed` with `unknown_outcome` (visible), never submitted twice."""
    mailbox = make_gmail_mailbox(google)
    google.fail("messages.send", 503)
    job = _accept(mailbox, {"to": ["jan@customer.example"], "subject": "Maybe", "text": "x"})
    assert delivery.on_message(job) == "unsure"
    item = outbox_item(job["tenant_id"], job["outbox_id"])
    assert delivery.on_message(job, now=item.due_at + 1) == "failed"
    item = outbox_item(job["tenant_id"], job["outbox_id"])
    assert item.status == "failed" and item.last_error["code"] == "unknown_outcome" and google.sent == []


def test_gmail_429_is_retried_as_before(google):
    """A rate limit says the message was not taken: it is retried (and sent once)."""
    mailbox = make_gmail_mailbox(google)
    google.fail("messages.send", 429, retry_after=1)
    job = _accept(mailbox, {"to": ["jan@customer.example"], "subject": "Later", "text": "x"})
    assert delivery.on_message(job) == "retrying"
    item = outbox_item(job["tenant_id"], job["outbox_id"])
    assert delivery.on_message(job, now=item.due_at + 1) == "sent" and len(google.sent) == 1


def test_graph_500_after_sendmail_is_not_sent_again_and_its_copy_is_one_message(fake_ms):
    """Guards a second message at Microsoft: sendMail took the message (it is in Sent Items), then the answer
    was a 500. No retry; a sync stores Sent Items' copy; after the backoff the item is found there by
    internetMessageId, recorded sent, and its stored copy is the synced one."""
    mailbox = outlook_mailbox(fake_ms)

    def graph():
        box = reload(mailbox)
        return provider_for(box, CredentialStore(box.tenant_id, box.mailbox_id).decode(box))

    fake_ms.inject(500, {"error": {"code": "InternalServerError", "message": "boom"}}, path="/me/sendMail",
                   after=True)
    job = _accept(mailbox, {"to": ["jan@customer.example"], "subject": "Once only", "text": "x"})
    assert delivery.on_message(job) == "unsure"
    assert len(fake_ms.mail.user(ADDRESS).sent) == 1
    sync_with(mailbox, graph())
    [imported] = stored(mailbox, "sent")
    item = outbox_item(job["tenant_id"], job["outbox_id"])
    assert delivery.on_message(job, now=item.due_at + 1) == "sent"
    item = outbox_item(job["tenant_id"], job["outbox_id"])
    assert item.status == "sent" and item.message_id == imported.message_id
    assert len(fake_ms.mail.user(ADDRESS).sent) == 1
    sync_with(mailbox, graph())
    assert [m.message_id for m in stored(mailbox, "sent")] == [imported.message_id]


def test_graph_500_without_a_copy_in_sent_items_ends_failed_unknown_outcome(fake_ms):
    mailbox = outlook_mailbox(fake_ms)
    fake_ms.inject(500, {"error": {"code": "InternalServerError", "message": "boom"}}, path="/me/sendMail")
    job = _accept(mailbox, {"to": ["jan@customer.example"], "subject": "Maybe", "text": "x"})
    assert delivery.on_message(job) == "unsure"
    item = outbox_item(job["tenant_id"], job["outbox_id"])
    assert delivery.on_message(job, now=item.due_at + 1) == "failed"
    item = outbox_item(job["tenant_id"], job["outbox_id"])
    assert item.last_error["code"] == "unknown_outcome" and fake_ms.mail.user(ADDRESS).sent == []
