"""Named folders in `sync_folders` synced from a real Dovecot (mailbox name), the fake Google (label by name or
id) and the fake Microsoft (well-known name and display name); a missing one is a visible per-folder error
while the others sync."""
from __future__ import annotations

import datetime as dt
import time

from chalicelib.credentials.store import CredentialStore
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.providers.kinds import provider_for
from chalicelib.security.crypto import encrypt_secrets
from chalicelib.sync import effects, engine, worker
from tests.gmail_fixtures import EMAIL, days_ago, gmail_provider, mail, make_gmail_mailbox
from tests.graph_helpers import ADDRESS, outlook_mailbox, raw_mail
from tests.mailfactory import make_message
from tests.sync_helpers import FakeContext, cursor_field, job_event, make_mailbox, reload

RECENT = dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.timezone.utc)


def by_folder(mailbox) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for message in Message.by_mailbox.query(mailbox.mailbox_id):
        found.setdefault(message.folder, set()).add(message.subject)
    return found


def test_dovecot_named_folder_synced_missing_one_reported_and_turning_it_off_keeps_its_mail(aws, dovecot):
    """Guards against a named IMAP folder being ignored, a missing one crashing the sync (or hiding silently),
    and a folder turned off losing its stored mail or cursor."""
    user, password = dovecot.new_user()
    mailbox = make_mailbox("tnt_folders", import_since="2026-11-20",
                           imap={"host": "127.0.0.1", "port": dovecot.port, "security": "none", "username": user,
                                 "login_method": "plain"},
                           sync_folders=["inbox", "Projects/Acme", "Nowhere"])
    mailbox.update(actions=[Mailbox.secret_ciphertext.set(
        encrypt_secrets(mailbox.tenant_id, mailbox.mailbox_id, {"password": password}))])
    dovecot.append(user, "INBOX", make_message(subject="in inbox", date=RECENT), date=RECENT)
    dovecot.append(user, "Projects/Acme", make_message(subject="in project", date=RECENT), date=RECENT)
    dovecot.append(user, "Sent", make_message(subject="in sent", date=RECENT), date=RECENT)

    assert worker.handle_batch(job_event((mailbox.tenant_id, mailbox.mailbox_id)), FakeContext()) == {
        "batchItemFailures": []}
    fresh = reload(mailbox)
    assert by_folder(fresh) == {"inbox": {"in inbox"}, "Projects/Acme": {"in project"}}
    assert fresh.sync_stage == "idle" and fresh.last_error["code"] == "not_found"
    assert "Nowhere" in fresh.last_error["detail"]
    project_cursor = cursor_field(fresh, "Projects/Acme")
    assert project_cursor is not None

    fresh.update(actions=[Mailbox.sync_folders.set(["inbox"])])
    dovecot.append(user, "Projects/Acme", make_message(subject="later in project", date=RECENT), date=RECENT)
    assert worker.handle_batch(job_event((mailbox.tenant_id, mailbox.mailbox_id)), FakeContext()) == {
        "batchItemFailures": []}
    fresh = reload(mailbox)
    assert by_folder(fresh) == {"inbox": {"in inbox"}, "Projects/Acme": {"in project"}}
    assert cursor_field(fresh, "Projects/Acme") == project_cursor and fresh.last_error is None


def test_gmail_label_by_name_and_by_id_missing_label_reported(aws, google):
    """Guards against a Gmail label in sync_folders being ignored (or only found by id), and against a missing
    label stopping the other folders."""
    clients = google.add_label(EMAIL, "Clients")
    google.deliver(EMAIL, mail(1, "-inbox"), received=days_ago(1))
    google.deliver(EMAIL, mail(2, "-clients"), labels=(clients,), received=days_ago(1))
    later = google.deliver(EMAIL, mail(3, "-archived"), labels=(), received=days_ago(1))
    mailbox = make_gmail_mailbox(google, sync_folders=["inbox", "clients", "Nope"])
    result = engine.sync_mailbox(reload(mailbox), gmail_provider(mailbox), float("inf"),
                                 after_store=effects.announce_only)
    assert by_folder(mailbox) == {"inbox": {"gmail message 1-inbox"}, "clients": {"gmail message 2-clients"}}
    assert set(result.folder_errors) == {"Nope"} and result.folder_errors["Nope"]["code"] == "not_found"
    assert [p["labelIds"] for n, p in google.requests if n == "messages.list"] == ["INBOX", clients]

    google.change_labels(EMAIL, later, add=(clients,))        # labelled later: history with labelId
    mailbox.update(actions=[Mailbox.sync_folders.set(["inbox", clients])])
    by_id = engine.sync_mailbox(reload(mailbox), gmail_provider(reload(mailbox)), float("inf"),
                                after_store=effects.announce_only)
    assert by_id.folder_errors == {}
    assert by_folder(mailbox)[clients] == {"gmail message 2-clients", "gmail message 3-archived"}   # by id
    assert by_folder(mailbox)["clients"] == {"gmail message 2-clients"}   # the folder by name stays as stored


def test_graph_well_known_and_display_name_folders_missing_one_reported(aws, fake_ms):
    """Guards against a Graph mail folder in sync_folders being ignored or a missing one failing the sync."""
    fake_ms.mail.add_folder(ADDRESS, "Archive", well_known="archive")
    projects = fake_ms.mail.add_folder(ADDRESS, "Projects")
    fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(1, subject="Inbox"))
    fake_ms.mail.add_message(ADDRESS, "archive", raw_mail(2, subject="Archived"))
    fake_ms.mail.add_message(ADDRESS, projects, raw_mail(3, subject="Project"))
    fake_ms.mail.add_message(ADDRESS, "sentitems", raw_mail(4, subject="Sent", sender=ADDRESS))
    mailbox = outlook_mailbox(fake_ms, sync_folders=["inbox", "archive", "projects", "Missing"])
    mailbox = reload(mailbox)
    provider = provider_for(mailbox, CredentialStore(mailbox.tenant_id, mailbox.mailbox_id).decode(mailbox))
    with provider:
        result = engine.sync_mailbox(mailbox, provider, time.monotonic() + 60)
    assert by_folder(mailbox) == {"inbox": {"Inbox 1"}, "archive": {"Archived 2"}, "projects": {"Project 3"}}
    assert set(result.folder_errors) == {"Missing"}
    assert reload(mailbox).last_error["code"] == "not_found"
