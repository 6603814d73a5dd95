"""Guards against duplicate or lost messages when the sync worker re-delivers, retries or resyncs (moto)."""
from __future__ import annotations

import boto3
import pytest
from pynamodb.connection import Connection

from chalicelib.config import get_settings
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.providers.base import FetchedMessage, MessageRef
from chalicelib.sync import store, store_page
from chalicelib.timeutil import now_iso
from tests.mailfactory import make_message


def make_mailbox(tenant_id: str = "ten_1", mailbox_id: str = "mbx_1", email: str = "alice@example.com",
                 **fields) -> Mailbox:
    now = now_iso()
    mailbox = Mailbox(tenant_id, mailbox_id, name="Sales", type="imap", email=email, import_since="2026-11-01",
                      status="active", kind=fields.pop("kind", "personal"),
                      owner_user_id=fields.pop("owner_user_id", "u-alice"), created_at=now, updated_at=now, **fields)
    mailbox.save()
    return mailbox


def fetched(raw: bytes | None, uid: str = "7:1", folder: str = "inbox", skipped: str | None = None,
            size: int | None = None) -> FetchedMessage:
    return FetchedMessage(MessageRef(folder=folder, provider_id=uid, size=size), raw, skipped)


def s3_keys() -> list[str]:
    listing = boto3.client("s3").list_objects_v2(Bucket=get_settings().raw_bucket)
    return [obj["Key"] for obj in listing.get("Contents", [])]


def all_messages() -> list[Message]:
    return list(Message.scan())


@pytest.fixture
def mailbox(aws):
    return make_mailbox()


def test_new_message_writes_one_object_and_one_item(mailbox):
    raw = make_message(subject="Offer", from_="Jan <jan@acme.example>", message_id="<offer-1@acme.example>",
                       attachments=[("a.txt", "text/plain", b"hello")])
    outcome = store.save_fetched(mailbox, fetched(raw))
    assert outcome.created
    message = Message.get(outcome.message.message_id)
    assert message.subject == "Offer" and message.direction == "inbound"
    assert message.rfc_message_id == "offer-1@acme.example"
    assert message.provider_key == "mbx_1#inbox#7:1" and message.mailbox_folder == "mbx_1#inbox"
    assert message.date_key == f"{message.date}#{message.message_id}"
    assert message.has_attachments and message.attachments[0]["filename"] == "a.txt"
    assert message.raw_s3_key == f"raw/ten_1/mbx_1/{message.message_id}.eml"
    obj = boto3.client("s3").get_object(Bucket=get_settings().raw_bucket, Key=message.raw_s3_key)
    assert obj["Body"].read() == raw
    assert obj["ContentType"] == "message/rfc822" and obj["ServerSideEncryption"] == "AES256"
    assert store.load_raw(message) == raw
    assert store.load_parsed(message).text.startswith("Hello,")


def test_saving_twice_is_idempotent(mailbox):
    raw = make_message(message_id="<twice@acme.example>")
    first = store.save_fetched(mailbox, fetched(raw))
    second = store.save_fetched(mailbox, fetched(raw))
    assert first.created and not second.created
    assert first.message.message_id == second.message.message_id
    assert len(all_messages()) == 1 and len(s3_keys()) == 1
    assert second.message.subject == "Test message"     # the returned item is the stored one


def test_same_message_id_with_new_uid_updates_provider_key_and_keeps_crm_state(mailbox):
    raw = make_message(message_id="<resync@acme.example>")
    first = store.save_fetched(mailbox, fetched(raw, uid="7:1")).message
    first.update(actions=[Message.link_count.set(2), Message.removed_at_source.set(now_iso())])
    second = store.save_fetched(mailbox, fetched(raw, uid="9:44"))    # UIDVALIDITY changed
    assert not second.created
    [stored] = all_messages()
    assert stored.provider_id == "9:44" and stored.provider_key == "mbx_1#inbox#9:44"
    assert stored.removed_at_source is None and stored.link_count == 2


def test_message_without_message_id_is_keyed_by_content(mailbox):
    raw = make_message(message_id="")
    first = store.save_fetched(mailbox, fetched(raw, uid="7:1"))
    again = store.save_fetched(mailbox, fetched(raw, uid="7:5"))
    other = store.save_fetched(mailbox, fetched(make_message(message_id="", body="other"), uid="7:2"))
    assert first.message.message_id == again.message.message_id != other.message.message_id
    assert first.message.rfc_message_id is None
    assert len(all_messages()) == 2


def test_same_message_in_inbox_and_sent_are_two_items(mailbox):
    raw = make_message(message_id="<self@x>", from_="alice@example.com")
    inbox = store.save_fetched(mailbox, fetched(raw, folder="inbox"))
    sent = store.save_fetched(mailbox, fetched(raw, folder="sent"))
    assert inbox.message.message_id != sent.message.message_id


def test_skipped_message_is_recorded_without_raw(mailbox):
    outcome = store.save_fetched(mailbox, fetched(None, uid="7:3", skipped="too_large", size=99_000_000))
    assert outcome.created
    message = Message.get(outcome.message.message_id)
    assert message.skipped_reason == "too_large" and message.raw_s3_key is None and message.size == 99_000_000
    assert s3_keys() == []
    assert store.load_raw(message) == b""
    assert not store.save_fetched(mailbox, fetched(None, uid="7:3", skipped="too_large")).created
    assert len(all_messages()) == 1


def test_oversize_raw_is_treated_as_skipped_but_keeps_headers(mailbox, monkeypatch):
    monkeypatch.setenv("MAILBRIDGE_MAX_MESSAGE_BYTES", "2000")
    from chalicelib.config import reset_settings
    reset_settings()
    raw = make_message(subject="Big one", body="x" * 5000)
    outcome = store.save_fetched(mailbox, fetched(raw, uid="7:8"))
    message = Message.get(outcome.message.message_id)
    assert message.skipped_reason.startswith("too_large") and message.raw_s3_key is None
    assert message.subject == "Big one" and message.size == len(raw)
    assert s3_keys() == []
    monkeypatch.delenv("MAILBRIDGE_MAX_MESSAGE_BYTES")
    reset_settings()


def test_malformed_message_is_stored_with_raw_and_import_time_date(mailbox):
    raw = b"Subject: =?utf-8?b?broken\r\nDate: yesterday-ish\r\nContent-Type: multipart/mixed\r\n\r\n\xff\xfe junk"
    outcome = store.save_fetched(mailbox, fetched(raw))
    message = Message.get(outcome.message.message_id)
    assert store.load_raw(message) == raw
    assert "date: unparsable" in message.parse_errors and "date: using import time" in message.parse_errors
    assert "boundary: missing" in message.parse_errors and "message-id: missing" in message.parse_errors
    assert message.date[:10] == now_iso()[:10] and message.date_key.startswith(message.date)


@pytest.mark.parametrize("from_, folder, expected", [
    ("Jan <jan@acme.example>", "inbox", "inbound"),
    ("Alice <ALICE@Example.com>", "inbox", "outbound"),
    ("Jan <jan@acme.example>", "sent", "outbound"),
])
def test_direction(mailbox, from_, folder, expected):
    outcome = store.save_fetched(mailbox, fetched(make_message(from_=from_), folder=folder))
    assert outcome.message.direction == expected


@pytest.mark.parametrize("path", ["one message", "page"])
def test_a_removed_message_found_again_is_back_and_uncounted_exactly_once(mailbox, path):
    """Guards against: the sync status's `removed` count staying up after a removed message came back (a
    UIDVALIDITY resync re-listing the same bytes), or going down twice when the return is replayed."""
    def save(uid):
        item = fetched(raw, uid=uid)
        return (store.save_fetched(mailbox, item) if path == "one message"
                else store_page.save_page(Mailbox.get("ten_1", "mbx_1"), [item])[0])

    def removed_count():
        return int(Mailbox.get("ten_1", "mbx_1", consistent_read=True).removed_count or 0)

    raw = make_message(subject="Back", message_id="<back@acme.example>")
    first = save("7:1").message
    assert store.mark_removed(mailbox, "inbox", ["7:1"]) == 1 and removed_count() == 1
    assert store.mark_removed(mailbox, "inbox", ["7:1"]) == 0 and removed_count() == 1
    again = save("9:1")
    assert not again.created and again.message.message_id == first.message_id
    stored = Message.get(first.message_id, consistent_read=True)
    assert stored.removed_at_source is None and stored.provider_id == "9:1" and stored.conversation_id
    assert removed_count() == 0
    save("9:1")                                                         # the page, replayed
    assert removed_count() == 0 and len(all_messages()) == 1


def test_mark_removed_sets_removed_at_source_once(mailbox):
    kept = store.save_fetched(mailbox, fetched(make_message(), uid="7:1")).message
    gone = store.save_fetched(mailbox, fetched(make_message(), uid="7:2")).message
    assert store.mark_removed(mailbox, "inbox", ["7:2", "7:404"]) == 1
    assert Message.get(gone.message_id).removed_at_source is not None
    assert Message.get(kept.message_id).removed_at_source is None
    assert store.mark_removed(mailbox, "inbox", ["7:2"]) == 0          # already marked
    assert store.mark_removed(mailbox, "sent", ["7:1"]) == 0           # other folder
    assert len(all_messages()) == 2                                     # nothing deleted


def test_one_s3_put_and_one_dynamodb_write_per_new_message(mailbox, monkeypatch):
    """Guards the one-message path's cost: one PUT and one TransactWriteItems (the item's put with the erasure
    ConditionCheck, `privacy.lists.check_erasures`) — no second write."""
    calls: list[str] = []
    real_put, real_transact = store.aws.s3().put_object, Connection.transact_write_items
    monkeypatch.setattr(store.aws.s3(), "put_object", lambda **kw: calls.append("s3") or real_put(**kw))
    monkeypatch.setattr(Connection, "transact_write_items",
                        lambda self, *a, **kw: calls.append("ddb") or real_transact(self, *a, **kw))
    monkeypatch.setattr(Message, "save", lambda self, **kw: calls.append("plain save"))
    store.save_fetched(mailbox, fetched(make_message()))
    assert calls == ["s3", "ddb"]


def test_two_different_messages_with_one_message_id_both_survive(mailbox):
    """Guards against an outsider suppressing real mail by sending first with a guessed Message-ID."""
    forged = make_message(subject="Fake invoice", from_="mallory@evil.example", message_id="<real-1@acme.example>")
    real = make_message(subject="Invoice", from_="jan@acme.example", message_id="<real-1@acme.example>")
    first = store.save_fetched(mailbox, fetched(forged, uid="7:1"))
    second = store.save_fetched(mailbox, fetched(real, uid="7:2"))
    assert first.created and second.created and first.message.message_id != second.message.message_id
    assert sorted(m.subject for m in all_messages()) == ["Fake invoice", "Invoice"]
    for outcome, raw in ((first, forged), (second, real)):       # each raw object holds its own bytes
        body = boto3.client("s3").get_object(Bucket=get_settings().raw_bucket,
                                             Key=outcome.message.raw_s3_key)["Body"].read()
        assert body == raw
    assert {m.rfc_message_id for m in all_messages()} == {"real-1@acme.example"}   # threads still see one id


def test_the_same_bytes_again_under_a_new_uid_are_one_message(mailbox):
    raw = make_message(subject="Once", message_id="<once@acme.example>")
    store.save_fetched(mailbox, fetched(raw, uid="7:1"))
    again = store.save_fetched(mailbox, fetched(raw, uid="8:1"))          # UIDVALIDITY resync
    assert not again.created and len(all_messages()) == 1
    assert Message.get(again.message.message_id).provider_id == "8:1"


def test_messages_stored_under_the_legacy_message_id_key_are_not_duplicated(aws):
    """Guards the upgrade: mailboxes created before content keys stored messages under their Message-ID."""
    from chalicelib import ids
    legacy = make_mailbox(mailbox_id="mbx_legacy")                       # store_keys unset
    raw = make_message(subject="Old", message_id="<old@acme.example>")
    legacy_id = ids.stable_id("msg", legacy.tenant_id, legacy.mailbox_id, "inbox", "old@acme.example")
    item = store._build_item(legacy, fetched(raw), legacy_id, store.parse_message(raw), raw_sha256=
                             __import__("hashlib").sha256(raw).hexdigest(), size=len(raw))
    item.save()
    again = store.save_fetched(legacy, fetched(raw, uid="9:1"))
    assert not again.created and again.message.message_id == legacy_id and len(all_messages()) == 1
