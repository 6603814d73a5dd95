"""Privacy against real and fake providers: a never-import list honoured by a real Dovecot sync; erasure and
purge leave nothing stored and touch nothing at the provider (Dovecot byte- and flag-identical); a purge stops
Gmail's watch (`users.stop`) and deletes Graph's subscriptions."""
from __future__ import annotations

import datetime as dt

from chalicelib.erasure import erase, purge, retention
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.models.privacy import TENANT_SCOPE
from chalicelib.privacy import lists
from chalicelib.sync import cursors, worker
from chalicelib.sync.push import save_state
from chalicelib.tenancy import service
from tests.gmail_fixtures import EMAIL, days_ago, mail
from tests.graph_helpers import ADDRESS, api_deliver, outlook_mailbox, raw_mail
from tests.integration.test_gmail_consent import consent, create_gmail
from tests.integration.test_graph_push import provider
from tests.integration.test_pairing_imap import imap_mailbox
from chalicelib.timeutil import utcnow
from tests.mailfactory import make_message
from tests.sync_helpers import FakeContext, drain, job_event, receive_event, reload
from tests.unit.test_privacy_erasure import everything_naming

RECENT = dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.timezone.utc)
PERSON = "marta@client.example"


def subjects(mailbox) -> set[str]:
    return {m.subject for m in Message.by_mailbox.query(mailbox.mailbox_id)}


def test_dovecot_never_import_erasure_and_purge_leave_the_server_untouched(aws, dovecot):
    """Guards against a never-import address being stored by a real IMAP sync, and against erasure or purge
    leaving anything stored — or changing a byte or a flag of the mail at the server."""
    tenant_id = service.create_tenant("Privacy", "standard", own_domains=["example.com"]).tenant_id
    mailbox, user = imap_mailbox(dovecot, tenant_id, "auto")
    lists.put_list(tenant_id, TENANT_SCOPE, ["@Newsletter.example"], [])

    def append(folder, flags=(), **kwargs):
        dovecot.append(user, folder, make_message(date=RECENT, **kwargs), flags=flags, date=RECENT)

    append("INBOX", subject="Weekly news", from_="news@mail.newsletter.example", to="me@example.com")
    append("INBOX", subject="From Marta", from_=f"Marta <{PERSON}>", to="me@example.com", flags=["\\Seen"])
    append("INBOX", subject="Marta in copy", from_="jan@acme.example", to="me@example.com", cc=PERSON.upper())
    append("INBOX", subject="Unrelated", from_="jan@acme.example", to="me@example.com", flags=["\\Flagged"])
    append("Sent", subject="To Marta", from_="me@example.com", to=PERSON)
    before = dovecot.snapshot(user)

    assert worker.handle_batch(job_event((tenant_id, mailbox.mailbox_id)), FakeContext()) == {
        "batchItemFailures": []}
    assert subjects(mailbox) == {"From Marta", "Marta in copy", "Unrelated", "To Marta"}
    assert int(reload(mailbox).skipped_count) == 1
    assert everything_naming(["news@mail.newsletter.example", "Weekly news"]) == []

    job = erase.run_for_request(erase.create(tenant_id, PERSON))
    assert job.status == "done" and job.counts["messages"] == 3
    assert subjects(mailbox) == {"Unrelated"}
    assert everything_naming([PERSON]) == []

    report = purge.purge_now(reload(mailbox))
    assert report["status"] == "purged" and report["counts"]["messages"] == 1
    assert everything_naming([mailbox.mailbox_id]) == []
    assert dovecot.snapshot(user) == before           # FETCH RFC822 + FLAGS of every message, every folder


def test_purging_a_gmail_mailbox_stops_its_watch(api, tenant, google, aws):
    """Guards against a purged Gmail mailbox leaving its watch running at Google (or its mail stored)."""
    google.deliver(EMAIL, mail(1), received=days_ago(1))
    created = create_gmail(api, tenant, google)
    consent(api, created["authorize_url"])
    assert google.accounts[EMAIL].watch is not None
    worker.handle_batch(receive_event(aws["sync_queue_url"], 10), FakeContext())
    assert len(list(Message.by_mailbox.query(created["id"]))) == 1

    answer = api("DELETE", f"/v1/mailboxes/{created['id']}?purge=true", key=tenant["key"], user="u-ann")

    assert answer.status == 200 and answer.json["push_stop"] == "stopped", answer
    assert google.calls["stop"] == 1 and google.accounts[EMAIL].watch is None
    assert everything_naming([created["id"]]) == []
    assert len(google.accounts[EMAIL].messages) == 1           # nothing deleted at the provider


def test_purging_an_outlook_mailbox_deletes_its_subscriptions(api, aws, fake_ms):
    """Guards against a purged Microsoft 365 mailbox leaving Graph subscriptions behind."""
    fake_ms.deliver = api_deliver(api)
    mailbox = outlook_mailbox(fake_ms)
    save_state(reload(mailbox), provider(mailbox).start_push())
    drain(aws["sync_queue_url"])
    fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(1))
    worker.handle_batch(job_event((mailbox.tenant_id, mailbox.mailbox_id)), FakeContext())
    assert len(fake_ms.subscriptions) == 2 and subjects(mailbox)

    report = purge.purge_now(Mailbox.get(mailbox.tenant_id, mailbox.mailbox_id))

    assert report["status"] == "purged" and report["push_stop"] == "stopped"
    assert fake_ms.subscriptions == {}
    assert everything_naming([mailbox.mailbox_id]) == []


def resync_from_scratch(mailbox) -> None:
    """What a cursor-invalid resync, a new UIDVALIDITY or a re-list does: every folder is listed again from
    `import_since` (the cursors are gone), and the store sees every message anew."""
    cursors.delete_all(reload(mailbox))
    assert worker.handle_batch(job_event((mailbox.tenant_id, mailbox.mailbox_id)), FakeContext()) == {
        "batchItemFailures": []}


def test_dovecot_erased_and_retention_deleted_mail_stays_deleted_after_a_full_relist(aws, dovecot):
    """Guards against erased mail (and mail past the retention period) coming back when the server lists it
    again — a lost cursor, a new UIDVALIDITY, an import window moved earlier — while new mail from the same
    person, dated after the erasure, is still imported."""
    tenant_id = service.create_tenant("Resurrect", "standard", own_domains=["example.com"]).tenant_id
    mailbox, user = imap_mailbox(dovecot, tenant_id, "auto")
    old = utcnow() - dt.timedelta(days=40)
    mailbox.update(actions=[Mailbox.import_since.set((old - dt.timedelta(days=5)).date().isoformat())])

    def append(folder, date=RECENT, **kwargs):
        dovecot.append(user, folder, make_message(date=date, **kwargs), date=date)

    append("INBOX", subject="From Marta", from_=f"=?utf-8?q?Marta_Nov=C3=A1?= <{PERSON.upper()}>",
           to="me@example.com")
    append("Sent", subject="To Marta", from_="me@example.com", to=PERSON)
    append("INBOX", subject="Unrelated", from_="jan@acme.example", to="me@example.com")
    append("INBOX", subject="Old news", from_="jan@acme.example", to="me@example.com", date=old)
    before = dovecot.snapshot(user)
    assert worker.handle_batch(job_event((tenant_id, mailbox.mailbox_id)), FakeContext()) == {
        "batchItemFailures": []}
    assert subjects(mailbox) == {"From Marta", "To Marta", "Unrelated", "Old news"}

    assert erase.run_for_request(erase.create(tenant_id, PERSON)).counts["messages"] == 2
    lists.set_retention(tenant_id, 30)
    assert retention.sweep([reload(mailbox)])["messages"] == 1
    assert subjects(mailbox) == {"Unrelated"}

    resync_from_scratch(mailbox)

    assert subjects(mailbox) == {"Unrelated"}
    assert everything_naming([PERSON, "Old news"]) == []
    assert dovecot.snapshot(user) == before               # nothing at the server was touched
    append("INBOX", subject="Marta again", date=utcnow() + dt.timedelta(minutes=1), from_=PERSON,
           to="me@example.com")
    resync_from_scratch(mailbox)
    assert subjects(mailbox) == {"Unrelated", "Marta again"}          # mail written after the erasure is new


def test_gmail_erased_mail_stays_erased_after_a_full_relist(api, tenant, google, aws):
    """Guards against a Gmail re-list (a stale historyId answers 404 and the engine lists from import_since)
    importing erased mail again."""
    google.deliver(EMAIL, mail(1, sender=PERSON), received=days_ago(1))
    google.deliver(EMAIL, mail(2), received=days_ago(1))
    created = create_gmail(api, tenant, google)
    consent(api, created["authorize_url"])
    worker.handle_batch(receive_event(aws["sync_queue_url"], 10), FakeContext())
    mailbox = Mailbox.get(tenant["id"], created["id"])
    assert subjects(mailbox) == {"gmail message 1", "gmail message 2"}
    assert erase.run_for_request(erase.create(tenant["id"], PERSON)).counts["messages"] == 1

    resync_from_scratch(mailbox)

    assert subjects(mailbox) == {"gmail message 2"}
    assert everything_naming([PERSON]) == []
