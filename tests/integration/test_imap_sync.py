"""Guards the whole IMAP sync path (worker → lease → IMAP provider → store) against a real Dovecot: wrong import
window, re-imports, server-side changes (\\Seen, moves), duplicates after UIDVALIDITY changes, redeliveries
and crashes, and retry storms on a wrong password."""
from __future__ import annotations

import datetime as dt
import time
from types import SimpleNamespace

import pytest

from chalicelib.models.message import Message
from chalicelib.providers import kinds
from chalicelib.security.crypto import encrypt_secrets
from chalicelib.sync import lease, worker
from chalicelib.sync.engine import SyncOptions
from devservers.smtp import SmtpServer
from tests.mailfactory import make_message
from tests.sync_helpers import FakeContext, counts_of, cursor_field, drain, job_event, make_mailbox, reload

UTC = dt.timezone.utc
OLD = dt.datetime(2026, 11, 10, 9, 0, tzinfo=UTC)       # before import_since
RECENT = dt.datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


class Spy:
    """Wraps the real provider to count what the engine asked of it (and to inject a crash)."""

    def __init__(self, provider, crash_on_changes_call: int | None = None):
        self.provider, self.crash_on = provider, crash_on_changes_call
        self.change_sets, self.fetched_refs = [], 0

    def folders(self):
        return self.provider.folders()

    def changes(self, folder, cursor, **kwargs):
        if self.crash_on is not None and len(self.change_sets) + 1 == self.crash_on:
            raise RuntimeError("worker killed between pages")
        change_set = self.provider.changes(folder, cursor, **kwargs)
        self.change_sets.append(change_set)
        return change_set

    def fetch(self, refs, **kwargs):
        self.fetched_refs += len(refs)
        return self.provider.fetch(refs, **kwargs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.provider.close()


def imap_mailbox(dovecot, user: str, password: str):
    mailbox = make_mailbox("tnt_imap", import_since="2026-11-20",
                           imap={"host": "127.0.0.1", "port": dovecot.port, "security": "none", "username": user,
                                 "login_method": "plain"})
    mailbox.update(actions=[type(mailbox).secret_ciphertext.set(
        encrypt_secrets(mailbox.tenant_id, mailbox.mailbox_id, {"password": password}))])
    return reload(mailbox)


def sync(mailbox, *, spy_options: dict | None = None, context=None, **options) -> tuple[dict, list[Spy]]:
    spies: list[Spy] = []

    def factory(box):
        spies.append(Spy(kinds.build_provider(box), **(spy_options or {})))
        return spies[-1]

    result = worker.handle_batch(job_event((mailbox.tenant_id, mailbox.mailbox_id)), context or FakeContext(),
                                 provider_factory=factory, **options)
    return result, spies


def stored(mailbox) -> list[Message]:
    return list(Message.by_mailbox.query(mailbox.mailbox_id))


def subjects(mailbox) -> list[str]:
    return sorted(m.subject for m in stored(mailbox))


def test_import_window_new_mail_idle_sync_and_server_untouched(aws, dovecot):
    user, password = dovecot.new_user()
    dovecot.append(user, "INBOX", make_message(subject="too old", date=OLD), date=OLD)
    for n in range(3):
        dovecot.append(user, "INBOX", make_message(subject=f"in {n}", date=RECENT), date=RECENT)
    dovecot.append(user, "INBOX", make_message(subject="flagged", date=RECENT), flags=["\\Flagged"], date=RECENT)
    dovecot.append(user, "Sent", make_message(subject="out", date=RECENT), flags=["\\Seen"], date=RECENT)
    before = dovecot.snapshot(user)
    mailbox = imap_mailbox(dovecot, user, password)

    result, _ = sync(mailbox)
    assert result == {"batchItemFailures": []}
    assert subjects(mailbox) == ["flagged", "in 0", "in 1", "in 2", "out"]
    assert {m.folder for m in stored(mailbox) if m.subject == "out"} == {"sent"}
    assert dovecot.snapshot(user) == before                       # byte-for-byte, flags included
    assert all("\\Seen" not in flags for flags in dovecot.flags(user, "INBOX").values())
    fresh = reload(mailbox)
    assert fresh.sync_stage == "idle" and counts_of(fresh)["imported"] == 5

    _, (idle,) = sync(fresh)                                      # nothing new: no fetch at all
    assert idle.fetched_refs == 0 and all(not cs.new for cs in idle.change_sets)
    assert all(cs.round_trips <= 1 for cs in idle.change_sets)    # one STATUS per folder

    dovecot.append(user, "INBOX", make_message(subject="newer", date=RECENT), date=RECENT)
    _, (second,) = sync(reload(mailbox))
    assert second.fetched_refs == 1
    assert subjects(mailbox) == ["flagged", "in 0", "in 1", "in 2", "newer", "out"]
    assert counts_of(reload(mailbox))["imported"] == 6
    assert dovecot.flags(user, "INBOX")[max(dovecot.uids(user, "INBOX"))] == ()


def test_uidvalidity_change_resyncs_without_duplicates(aws, dovecot):
    user, password = dovecot.new_user()
    for n in range(4):
        dovecot.append(user, "INBOX", make_message(subject=f"m{n}", date=RECENT), date=RECENT)
    mailbox = imap_mailbox(dovecot, user, password)
    sync(mailbox)
    first_ids = sorted(m.message_id for m in stored(mailbox))
    old_cursor = cursor_field(reload(mailbox), "inbox", "cursor")
    dovecot.recreate_folder(user, "INBOX")
    dovecot.append(user, "INBOX", make_message(subject="after", date=RECENT), date=RECENT)
    result, _ = sync(reload(mailbox))
    assert result == {"batchItemFailures": []}
    assert len(stored(mailbox)) == 5 and set(first_ids) < {m.message_id for m in stored(mailbox)}
    fresh = reload(mailbox)
    assert fresh.resync_count == 1 and cursor_field(fresh, "inbox", "cursor") != old_cursor
    assert fresh.sync_stage == "idle"
    # the stored items now point at the new UIDVALIDITY
    validity = dovecot.status(user, "INBOX")["UIDVALIDITY"]
    assert {m.provider_id.split(":")[0] for m in stored(mailbox) if m.folder == "inbox"} == {str(validity)}


def test_redelivery_and_checkpoint_lose_and_duplicate_nothing(aws, dovecot):
    user, password = dovecot.new_user()
    for n in range(12):
        dovecot.append(user, "INBOX", make_message(subject=f"m{n:02d}", date=RECENT), date=RECENT)
    mailbox = imap_mailbox(dovecot, user, password)
    clock = {"t": 0.0}

    class Ticking(Spy):
        def changes(self, folder, cursor, **kwargs):
            clock["t"] += 50
            return super().changes(folder, cursor, **kwargs)

    def factory(box):
        return Ticking(kinds.build_provider(box))

    # remaining 100 s: the first page took 50 s, a second (expected 75 s) would end past the invocation → checkpoint
    event = job_event((mailbox.tenant_id, mailbox.mailbox_id))
    assert worker.handle_batch(event, FakeContext(100), provider_factory=factory, clock=lambda: clock["t"],
                               options=SyncOptions(page_size=5)) == {"batchItemFailures": []}
    assert len(stored(mailbox)) == 5
    assert [q["body"]["reason"] for q in drain(aws["sync_queue_url"])] == ["continue"]
    # the same message redelivered
    worker.handle_batch(event, FakeContext(), provider_factory=factory, options=SyncOptions(page_size=5))
    assert len(stored(mailbox)) == 12
    worker.handle_batch(event, FakeContext(), provider_factory=factory, options=SyncOptions(page_size=5))
    assert len(stored(mailbox)) == 12 and counts_of(reload(mailbox))["imported"] == 12


def test_worker_killed_between_pages_resumes_after_the_lease_expires(aws, dovecot, monkeypatch):
    user, password = dovecot.new_user()
    for n in range(11):
        dovecot.append(user, "INBOX", make_message(subject=f"m{n:02d}", date=RECENT), date=RECENT)
    mailbox = imap_mailbox(dovecot, user, password)
    # A hard kill runs no cleanup: the lease is never released and simply expires.
    monkeypatch.setattr(lease, "release", lambda held, **kw: False)
    result, _ = sync(mailbox, spy_options={"crash_on_changes_call": 2}, options=SyncOptions(page_size=4))
    assert len(result["batchItemFailures"]) == 1
    killed = reload(mailbox)
    killed_cursor = cursor_field(killed, "inbox", "cursor")
    assert killed.lease_owner and killed_cursor
    assert len(stored(mailbox)) == 4
    monkeypatch.undo()
    # the lease is still live → coalesced
    assert sync(reload(mailbox), options=SyncOptions(page_size=4))[0] == {"batchItemFailures": []}
    assert len(stored(mailbox)) == 4 and reload(mailbox).sync_requested is True
    later = time.time() + lease.lease_seconds() + 1
    monkeypatch.setattr(lease, "time", SimpleNamespace(time=lambda: later))       # the dead worker's lease lapsed
    result, (resumed,) = sync(reload(mailbox), options=SyncOptions(page_size=4))
    assert result == {"batchItemFailures": []}
    assert resumed.change_sets[0].previous_cursor == killed_cursor
    assert sorted(m.subject for m in stored(mailbox)) == [f"m{n:02d}" for n in range(11)]
    assert reload(mailbox).lease_owner is None


def test_wrong_password_turns_the_mailbox_auth_error(aws, dovecot):
    from chalicelib.notify.events import list_events
    user, _ = dovecot.new_user()
    mailbox = imap_mailbox(dovecot, user, "not-the-password")
    result, _ = sync(mailbox)
    assert result == {"batchItemFailures": []}
    fresh = reload(mailbox)
    assert fresh.status == "auth_error" and fresh.status_reason
    assert "not-the-password" not in (fresh.status_reason + str(fresh.last_error))
    assert [e.payload["status"] for e in list_events(mailbox.tenant_id, "mailbox.status_changed")] == ["auth_error"]


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def test_moving_import_since_earlier_imports_the_missing_mail_and_later_changes_nothing(aws, dovecot):
    """Guards against an earlier import_since doing nothing (the folder cursor had passed those UIDs)."""
    user, password = dovecot.new_user()
    dovecot.append(user, "INBOX", make_message(subject="old", date=OLD), date=OLD)
    dovecot.append(user, "INBOX", make_message(subject="recent", date=RECENT), date=RECENT)
    mailbox = imap_mailbox(dovecot, user, password)
    sync(mailbox)
    assert subjects(mailbox) == ["recent"]
    reload(mailbox).update(actions=[type(mailbox).import_since.set("2026-11-05")])
    sync(reload(mailbox))
    assert subjects(mailbox) == ["old", "recent"]                      # no duplicate of "recent"
    assert counts_of(reload(mailbox))["imported"] == 2
    reload(mailbox).update(actions=[type(mailbox).import_since.set("2026-11-21")])
    dovecot.append(user, "INBOX", make_message(subject="new", date=RECENT), date=RECENT)
    sync(reload(mailbox))
    assert subjects(mailbox) == ["new", "old", "recent"]               # nothing deleted, nothing re-imported
    assert cursor_field(reload(mailbox), "inbox", "since") == "2026-11-05"


def test_changing_the_imap_login_starts_the_folders_afresh_without_duplicates(aws, dovecot):
    """Guards against a new account keeping the old account's cursors (its UIDs mean nothing there)."""
    from chalicelib.mailboxes.service import update_mailbox
    from chalicelib.tenancy.service import get_tenant
    first, first_password = dovecot.new_user()
    second, second_password = dovecot.new_user()
    shared = make_message(subject="in both", date=RECENT)
    for user in (first, second):
        dovecot.append(user, "INBOX", shared, date=RECENT)
    dovecot.append(user, "INBOX", make_message(subject="only second", date=RECENT), date=RECENT)
    mailbox = imap_mailbox(dovecot, first, first_password)
    sync(mailbox)
    old_cursor = cursor_field(reload(mailbox), "inbox")
    with SmtpServer(lambda login, password: True) as smtp:
        update_mailbox(get_tenant(mailbox.tenant_id), reload(mailbox),
                       {"imap": {"host": "127.0.0.1", "port": dovecot.port, "security": "none", "username": second},
                        "smtp": {"host": "127.0.0.1", "port": smtp.port, "security": "none", "username": second},
                        "password": second_password})
    assert reload(mailbox).cursor_epoch == 1 and cursor_field(reload(mailbox), "inbox") is None
    sync(reload(mailbox))
    assert subjects(mailbox) == ["in both", "only second"]
    assert cursor_field(reload(mailbox), "inbox") != old_cursor
