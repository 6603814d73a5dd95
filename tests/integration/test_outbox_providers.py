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
