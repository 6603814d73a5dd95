"""Read state at the source (`unread`) followed by the sync, in the message and the thread list: a real Dovecot
(`\\Seen`, CONDSTORE), the fake Google (`UNREAD` label history) and the fake Microsoft (`isRead` in delta)."""
from __future__ import annotations

import datetime as dt
import time

from chalicelib.credentials.store import CredentialStore
from chalicelib.models.conversation import ThreadEntry
from chalicelib.models.message import Message
from chalicelib.providers.kinds import provider_for
from chalicelib.security.crypto import encrypt_secrets
from chalicelib.sync import effects, engine, worker
from chalicelib.threads import derived
from tests.gmail_fixtures import EMAIL, days_ago, gmail_provider, mail, make_gmail_mailbox
from tests.graph_helpers import ADDRESS, outlook_mailbox, raw_mail
from tests.mailfactory import make_message
from tests.sync_helpers import FakeContext, job_event, make_mailbox, reload

RECENT = dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.timezone.utc)


def stored(mailbox) -> list[Message]:
    return list(Message.by_mailbox.query(mailbox.mailbox_id))


def settle(mailbox) -> None:
    """What the notifier does with a page's `message.created` events: thread (and index) the messages."""
    derived.remember(mailbox.tenant_id, [m.message_id for m in stored(mailbox)])


def unread_of(api, tenant, mailbox) -> tuple[dict[str, bool | None], dict[str, bool | None]]:
    """({subject: message unread}, {thread subject: thread unread}) as the API shows them."""
    listed = api("GET", f"/v1/mailboxes/{mailbox.mailbox_id}/messages", key=tenant["key"])
    assert listed.status == 200, listed
    threads = api("GET", f"/v1/threads?mailbox_id={mailbox.mailbox_id}", key=tenant["key"])
    assert threads.status == 200, threads
    return ({m["subject"]: m["unread"] for m in listed.json["items"]},
            {t["subject"]: t["unread"] for t in threads.json["items"]})


def imap_sync(mailbox) -> None:
    assert worker.handle_batch(job_event((mailbox.tenant_id, mailbox.mailbox_id)), FakeContext()) == {
        "batchItemFailures": []}


def test_dovecot_seen_flag_changes_flip_unread_in_the_message_and_the_thread(api, tenant, dovecot):
    """Guards against `unread` staying at its import state (or null) after \\Seen changes at the server, and
    against a thread's unread answer counting a read message (or missing an unread one)."""
    user, password = dovecot.new_user()
    mailbox = make_mailbox(tenant["id"], import_since="2026-11-20",
                           imap={"host": "127.0.0.1", "port": dovecot.port, "security": "none", "username": user,
                                 "login_method": "plain"})
    mailbox.update(actions=[type(mailbox).secret_ciphertext.set(
        encrypt_secrets(mailbox.tenant_id, mailbox.mailbox_id, {"password": password}))])
    root = dovecot.append(user, "INBOX", make_message(subject="Offer", message_id="<offer@customer.example>",
                                                      from_="jan@customer.example", date=RECENT), date=RECENT)
    reply = dovecot.append(user, "INBOX", make_message(
        subject="Re: Offer", message_id="<re-offer@customer.example>", in_reply_to="<offer@customer.example>",
        references=["<offer@customer.example>"], from_="jan@customer.example", date=RECENT + dt.timedelta(hours=1)),
        flags=["\\Seen"], date=RECENT)
    dovecot.append(user, "INBOX", make_message(subject="Alone", from_="eva@other.example", date=RECENT),
                   flags=["\\Seen"], date=RECENT)
    imap_sync(reload(mailbox))
    settle(mailbox)
    messages, threads = unread_of(api, tenant, mailbox)
    assert messages == {"Offer": True, "Re: Offer": False, "Alone": False}
    assert threads == {"Offer": True, "Alone": False}

    before = dovecot.snapshot(user)
    dovecot.set_flags(user, "INBOX", root, ["\\Seen"])           # read in a mail client
    dovecot.set_flags(user, "INBOX", reply, ["\\Seen", "\\Flagged"])   # a change that is not read state
    after_client = dovecot.snapshot(user)
    assert after_client != before
    imap_sync(reload(mailbox))
    messages, threads = unread_of(api, tenant, mailbox)
    assert messages == {"Offer": False, "Re: Offer": False, "Alone": False}
    assert threads == {"Offer": False, "Alone": False}
    assert dovecot.snapshot(user) == after_client                # the sync changed nothing at the server

    dovecot.set_flags(user, "INBOX", reply, [])                  # marked unread again
    imap_sync(reload(mailbox))
    messages, threads = unread_of(api, tenant, mailbox)
    assert messages["Re: Offer"] is True and threads == {"Offer": True, "Alone": False}
    imap_sync(reload(mailbox))                                   # idle: nothing moves twice
    entries = list(ThreadEntry.query(mailbox.mailbox_id))
    assert sorted(int(e.unread_count) for e in entries) == [0, 1]


def gmail_sync(mailbox):
    return engine.sync_mailbox(reload(mailbox), gmail_provider(reload(mailbox)), float("inf"),
                               after_store=effects.announce_only)


def test_gmail_unread_label_changes_flip_unread(api, tenant, google):
    """Guards against Gmail's UNREAD label history being ignored (unread stuck at import) or a read-state
    change re-fetching the message."""
    first = google.deliver(EMAIL, mail(1, "-first"), received=days_ago(1))
    google.deliver(EMAIL, mail(2, "-second"), labels=("INBOX",), received=days_ago(1))
    mailbox = make_gmail_mailbox(google, tenant["id"])
    gmail_sync(mailbox)
    settle(mailbox)
    by_provider = {m.provider_id: m for m in stored(mailbox)}
    assert sorted(m.unread for m in by_provider.values()) == [False, True]
    messages, threads = unread_of(api, tenant, mailbox)
    assert sorted(threads.values()) == [False, True]

    google.change_labels(EMAIL, first, remove=("UNREAD",))
    result = gmail_sync(mailbox)
    assert result.counts.fetched == 0 and result.counts.read_state == 1
    messages, threads = unread_of(api, tenant, mailbox)
    assert set(messages.values()) == {False} and set(threads.values()) == {False}

    google.change_labels(EMAIL, first, add=("UNREAD",))
    gmail_sync(mailbox)
    assert Message.get(by_provider[first].message_id).unread is True
    assert sorted(unread_of(api, tenant, mailbox)[1].values()) == [False, True]


def graph_sync(mailbox):
    mailbox = reload(mailbox)
    provider = provider_for(mailbox, CredentialStore(mailbox.tenant_id, mailbox.mailbox_id).decode(mailbox))
    with provider:
        return engine.sync_mailbox(mailbox, provider, time.monotonic() + 60)


def test_graph_is_read_changes_flip_unread(api, tenant, fake_ms):
    """Guards against Graph's isRead being dropped from the delta (unread null or stuck at import)."""
    first = fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(1))
    second = fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(2))
    fake_ms.mail.touch_message(ADDRESS, second)                  # read before the first sync
    mailbox = outlook_mailbox(fake_ms, tenant["id"])
    graph_sync(mailbox)
    settle(mailbox)
    by_provider = {m.provider_id: m for m in stored(mailbox)}
    assert (by_provider[first].unread, by_provider[second].unread) == (True, False)
    assert sorted(unread_of(api, tenant, mailbox)[1].values()) == [False, True]

    fake_ms.mail.touch_message(ADDRESS, first)                   # isRead patched to true
    result = graph_sync(mailbox)
    assert result.counts.fetched == 0 and result.counts.read_state == 1
    assert Message.get(by_provider[first].message_id).unread is False
    assert set(unread_of(api, tenant, mailbox)[1].values()) == {False}
