"""Erased stays erased on every path that creates a `Message` item, and across a signing-key rotation: the
one-message store, the page store's one-by-one fallback, the outbox's sent copy; subject hashes that outlive
`MAILBRIDGE_SIGNING_KEY`."""
from __future__ import annotations

import datetime as dt

import boto3

from chalicelib import aws as aws_clients
from chalicelib.api.schemas.outbox import SendRequest
from chalicelib.config import get_settings, reset_settings
from chalicelib.erasure import erase
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.models.outbox import OutboxItem
from chalicelib.models.privacy import ErasureJob
from chalicelib.models.tenant import Tenant
from chalicelib.outbox import delivery
from chalicelib.outbox import service as outbox_service
from chalicelib.privacy import erased, lists
from chalicelib.providers.base import FetchedMessage, MessageRef
from chalicelib.sync import store, store_page
from chalicelib.security import tenant_keys
from chalicelib.security.crypto import clear_data_key_cache
from chalicelib.timeutil import isoformat, now_iso, utcnow
from tests.mailfactory import make_message
from tests.unit.test_privacy_erasure import PERSON, everything_naming
from tests.unit.test_sharing_matrix import make_world  # noqa: F401 - the fixture that builds a tenant's world


def _mailbox(world) -> Mailbox:
    return Mailbox.get(world["tenant"]["id"], world["mailbox"].mailbox_id)


def _subjects(mailbox: Mailbox) -> set[str]:
    return {m.subject for m in Message.by_mailbox.query(mailbox.mailbox_id)}


def _skipped(mailbox: Mailbox) -> int:
    return int(Mailbox.get(mailbox.tenant_id, mailbox.mailbox_id).skipped_count or 0)


def test_an_erasure_requested_while_one_message_is_stored_is_not_outrun(api, make_world, aws, monkeypatch):  # noqa: F811
    """Guards against the one-message store (`store.save_fetched`) storing an erased person's mail when the
    erasure is requested between its read of the lists and its write (the job may already have read the
    mailbox), and against the refused message's raw object staying in the bucket."""
    world = make_world("personal")
    tenant_id, mailbox = world["tenant"]["id"], _mailbox(world)
    real_put = store.put_raw

    def erasure_meanwhile(prepared, tagging=None):      # after the lists were read, before the item is written
        erase.run_for_request(erase.create(tenant_id, PERSON))
        real_put(prepared, tagging)

    monkeypatch.setattr(store, "put_raw", erasure_meanwhile)
    raw = make_message(from_=f"Petra <{PERSON}>", subject="Racing one", date=utcnow() - dt.timedelta(hours=1))

    outcome = store.save_fetched(mailbox, FetchedMessage(MessageRef("inbox", "60"), raw))

    assert outcome.message.skipped_reason == lists.ERASED and not outcome.message.owed
    assert "Racing one" not in _subjects(mailbox)
    assert everything_naming([PERSON, "Racing one"]) == []
    assert _skipped(mailbox) == 1


def test_the_page_fallback_does_not_outrun_an_erasure(api, make_world, aws, monkeypatch):  # noqa: F811
    """Guards against the page store's one-by-one fallback (a chunk whose transaction another writer beat)
    inserting an erased person's message with the erasure count the page read before the erasure."""
    world = make_world("personal")
    tenant_id, mailbox = world["tenant"]["id"], _mailbox(world)
    page = [FetchedMessage(MessageRef("inbox", "72"), make_message(from_=f"Petra <{PERSON}>", subject="Fallback")),
            FetchedMessage(MessageRef("inbox", "73"), make_message(from_="jan@acme.example", subject="Other"))]

    def beaten_then_erased(mailbox_, chunk, lease_owner, erasures=None):
        erase.run_for_request(erase.create(tenant_id, PERSON))
        return False                          # "an item already existed": the page stores one by one

    monkeypatch.setattr(store_page, "insert_items", beaten_then_erased)

    outcomes = store_page.save_page(mailbox, page)

    assert [o.message.skipped_reason for o in outcomes] == [lists.ERASED, None]
    assert "Fallback" not in _subjects(mailbox) and "Other" in _subjects(mailbox)
    assert everything_naming([PERSON, "Fallback"]) == []


def test_a_sent_copy_of_mail_to_an_erased_person_is_not_stored(api, make_world, aws):  # noqa: F811
    """Guards against the outbox storing its copy of a message to a person erased while it was being sent (the
    erasure deleted the outbox item and its MIME; the attempt still held the bytes): the copy, dated before
    the erasure, would bring the person's address back — and against the attempt writing the deleted outbox
    item back (an UpdateItem without a condition creates it) as a stub without status or creation time."""
    world = make_world("personal")
    tenant_id, mailbox = world["tenant"]["id"], _mailbox(world)
    item, _ = outbox_service.accept(mailbox, None, SendRequest(to=[PERSON], subject="Offer", text="Hello"),
                                    None, None)
    raw = boto3.client("s3").get_object(Bucket=get_settings().raw_bucket, Key=item.raw_s3_key)["Body"].read()
    erase.run_for_request(erase.create(tenant_id, PERSON))      # while the provider accepts the message

    delivery.finish_sent(item, mailbox, raw)

    assert "Offer" not in _subjects(mailbox)
    assert [m for m in Message.by_mailbox.query(mailbox.mailbox_id) if m.folder == store.SENT_FOLDER] == []
    assert [i.outbox_id for i in OutboxItem.query(tenant_id)] == [world["outbox"]]    # not written back
    assert everything_naming([PERSON]) == []


def test_a_sent_copy_stored_while_an_erasure_is_requested_is_not_outrun(api, make_world, aws, monkeypatch):  # noqa: F811
    """Guards against `store.save_sent` writing the copy with the erasure count it read before an erasure was
    requested (the same race as the sync's), and against its raw object staying behind."""
    world = make_world("personal")
    tenant_id, mailbox = world["tenant"]["id"], _mailbox(world)
    raw = make_message(from_="owner@acme-crm.example", to=PERSON, subject="Sent racing",
                       message_id="<sent-race@acme-crm.example>", date=utcnow() - dt.timedelta(minutes=1))
    real_put = store.put_raw

    def erasure_meanwhile(prepared, tagging=None):
        erase.run_for_request(erase.create(tenant_id, PERSON))
        real_put(prepared, tagging)

    monkeypatch.setattr(store, "put_raw", erasure_meanwhile)

    outcome = store.save_sent(mailbox, raw, rfc_message_id="<sent-race@acme-crm.example>", provider_id="p-9")

    assert outcome.message.skipped_reason == lists.ERASED and not outcome.message.owed
    assert everything_naming([PERSON, "Sent racing"]) == []


def test_a_sent_copy_to_a_never_import_address_is_still_stored(api, make_world, aws):  # noqa: F811
    """Guards the documented exception (docs/api.md): copies of mail sent through `/send` are stored even when
    a never-import list names the recipient — only an erasure refuses them."""
    world = make_world("personal")
    tenant_id, mailbox = world["tenant"]["id"], _mailbox(world)
    lists.put_list(tenant_id, "tenant", ["@blocked.example"], [])
    raw = make_message(from_="owner@acme-crm.example", to="x@blocked.example", subject="Sent anyway",
                       message_id="<sent-anyway@acme-crm.example>")

    outcome = store.save_sent(mailbox, raw, rfc_message_id="<sent-anyway@acme-crm.example>", provider_id="p-8")

    assert outcome.created and outcome.message.skipped_reason is None
    assert "Sent anyway" in _subjects(mailbox)
def _rotate_signing_key(monkeypatch, value: str) -> None:
    """A new `MAILBRIDGE_SIGNING_KEY`, as a redeploy after `secretsmanager put-secret-value` gives every
    process: new settings, empty process caches."""
    monkeypatch.setenv("MAILBRIDGE_SIGNING_KEY", value)
    reset_settings()
    erased.clear_cache()
    clear_data_key_cache()
    aws_clients.reset_clients()


def test_an_erasure_outlives_a_signing_key_rotation(api, make_world, aws, monkeypatch):  # noqa: F811
    """Guards against a rotation of `MAILBRIDGE_SIGNING_KEY` making every erasure unrecognizable to the store,
    so that a provider listing the erased person's mail again (a lost cursor, a new mailbox) re-imports it."""
    world = make_world("personal")
    tenant_id, mailbox = world["tenant"]["id"], _mailbox(world)
    job = erase.run_for_request(erase.create(tenant_id, PERSON))
    raw = make_message(from_=f"Petra <{PERSON}>", subject="Before rotation", date=utcnow() - dt.timedelta(days=1))

    _rotate_signing_key(monkeypatch, "a-brand-new-signing-key")
    outcome = store.save_fetched(mailbox, FetchedMessage(MessageRef("inbox", "61"), raw))

    assert outcome.message.skipped_reason == lists.ERASED
    assert everything_naming([PERSON, "Before rotation"]) == []
    assert ErasureJob.get(tenant_id, job.job_id).subject_hash == erase.subject_hash(tenant_id, PERSON.casefold())


def test_a_job_hashed_under_the_signing_key_is_honoured_while_that_key_is_unchanged(api, make_world, aws, monkeypatch):  # noqa: F811
    """Guards against erasures recorded before subject hashes moved to the tenant key (`hmac-sha256:` under the
    signing key) being forgotten: they still refuse the person's mail while the signing key is the same."""
    world = make_world("personal")
    tenant_id, mailbox = world["tenant"]["id"], _mailbox(world)
    legacy = erased.legacy_subject_hash(tenant_id, PERSON.casefold())
    assert legacy.startswith("hmac-sha256:")
    ErasureJob(tenant_id, "era_legacy", status="done", subject_hash=legacy, progress={"phase": "done"},
               counts={}, message_ids=[], created_at=now_iso()).save()
    lists.count_erasure(tenant_id)
    raw = make_message(from_=PERSON, subject="Legacy erased", date=utcnow() - dt.timedelta(days=1))

    outcome = store.save_fetched(mailbox, FetchedMessage(MessageRef("inbox", "62"), raw))

    assert outcome.message.skipped_reason == lists.ERASED
    fresh = make_message(from_="someone@else.example", subject="Not erased", date=utcnow() - dt.timedelta(days=1))
    assert store.save_fetched(mailbox, FetchedMessage(MessageRef("inbox", "63"), fresh)).message.skipped_reason \
        is None


def test_erasures_hashed_under_replaced_tenant_keys_are_all_honoured(api, make_world, aws):  # noqa: F811
    """Guards against the 90-day replacement of a tenant's secrets key (`security.tenant_keys`) forgetting the
    erasures hashed under the key it replaced: every hash names its key, and old keys stay."""
    world = make_world("personal")
    tenant_id, mailbox = world["tenant"]["id"], _mailbox(world)
    first = erase.run_for_request(erase.create(tenant_id, PERSON))
    tenant = Tenant.get(tenant_id)
    aged = {key_id: {**entry, "created_at": isoformat(utcnow() - dt.timedelta(days=tenant_keys.MAX_KEY_AGE_DAYS + 1))}
            for key_id, entry in tenant.secrets_keys.items()}
    tenant.update(actions=[Tenant.secrets_keys.set(aged)])
    clear_data_key_cache()
    second = erase.run_for_request(erase.create(tenant_id, "other.person@client.example"))
    assert first.subject_hash.split(":")[1] != second.subject_hash.split(":")[1]      # two tenant keys
    past = utcnow() - dt.timedelta(days=1)

    for uid, sender in (("64", PERSON), ("65", "Other.Person@client.example")):
        outcome = store.save_fetched(mailbox, FetchedMessage(MessageRef("inbox", uid), make_message(
            from_=sender, date=past)))
        assert outcome.message.skipped_reason == lists.ERASED, sender
