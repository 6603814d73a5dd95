"""The idle check (chalicelib/sync/idle_check.py): a scheduled sync that finds nothing new writes nothing to
DynamoDB; anything else runs the normal leased sync."""
from __future__ import annotations

import collections
import dataclasses
import ssl
from datetime import timedelta

import certifi
import pytest

from chalicelib.api.schemas.sync import SyncStatus
from chalicelib.config import get_settings, reset_settings
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.providers.base import ErrorCode, MessageRef, ProviderError
from chalicelib.sync import idle_check, lease, worker
from chalicelib.sync.status import sync_status
from chalicelib.sync.enqueue import request_sync
from chalicelib.timeutil import isoformat, utcnow
from tests.sync_helpers import (FakeContext, FakeProvider, cursor_field, drain, dynamodb_calls, job_event,
                                make_mailbox, receive_event, reload)

WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


def writes(calls: collections.Counter) -> int:
    return sum(n for operation, n in calls.items() if operation in WRITES)


class Factory:
    """Hands the worker `provider` and counts how often it was asked for one."""

    def __init__(self, provider):
        self.provider, self.built = provider, 0

    def __call__(self, mailbox):
        self.built += 1
        self.provider.closed = False
        return self.provider


def run(mailbox, factory, reason="schedule"):
    return worker.handle_batch(job_event((mailbox.tenant_id, mailbox.mailbox_id), reason=reason), FakeContext(),
                               provider_factory=factory)


def synced(provider, **attrs) -> Mailbox:
    """A mailbox whose first sync has run (cursors stored, stage idle, last_success_at now)."""
    mailbox = make_mailbox(**attrs)
    assert run(mailbox, Factory(provider), reason="test")["batchItemFailures"] == []
    box = reload(mailbox)
    assert box.sync_stage == "idle" and box.last_success_at
    drain(get_settings().events_queue_url)                 # the first import's message.created events
    return box


def stored(mailbox) -> int:
    return len(list(Message.by_mailbox.query(mailbox.mailbox_id)))


@pytest.fixture
def outcomes(monkeypatch):
    """The outcome the worker returned for each record."""
    seen: list[str] = []
    original = worker.Worker.process

    def process(self, record):
        outcome = original(self, record)
        seen.append(outcome)
        return outcome

    monkeypatch.setattr(worker.Worker, "process", process)
    return seen


def test_an_idle_scheduled_sync_writes_nothing_to_dynamodb(aws, outcomes):
    """Guards against the idle path taking (and releasing) the lease: 2 writes of the mailbox item per tick."""
    provider = FakeProvider({"inbox": 2, "sent": 1})
    mailbox = synced(provider)
    before = (mailbox.last_success_at, cursor_field(mailbox, "inbox"), cursor_field(mailbox, "sent"))
    provider.changes_calls.clear()
    provider.fetched.clear()
    factory = Factory(provider)
    with dynamodb_calls() as calls:
        assert run(mailbox, factory)["batchItemFailures"] == []
    assert outcomes[-1] == "idle"
    assert writes(calls) == 0, calls
    assert set(calls) <= {"GetItem", "Query"} and calls["Query"] == 1     # the mailbox and its cursors
    assert [folder for folder, _ in provider.changes_calls] == ["inbox", "sent"]   # one question per folder
    assert provider.fetched == [] and factory.built == 1 and provider.closed
    after = reload(mailbox)
    assert (after.last_success_at, cursor_field(after, "inbox"), cursor_field(after, "sent")) == before
    assert after.lease_owner is None and after.sync_stage == "idle"
    assert drain(aws["sync_queue_url"]) == [] and drain(aws["events_queue_url"]) == []


def test_new_mail_found_by_the_check_is_synced_through_the_lease_with_the_same_provider(aws, outcomes):
    """Guards against the check swallowing a change, or opening a second provider connection for it."""
    provider = FakeProvider({"inbox": 1, "sent": 0})
    mailbox = synced(provider)
    provider.add("inbox", 2)
    factory = Factory(provider)
    assert run(mailbox, factory)["batchItemFailures"] == []
    assert outcomes[-1] == "done" and factory.built == 1 and provider.closed
    after = reload(mailbox)
    assert stored(after) == 3 and cursor_field(after, "inbox") == "1:3"
    assert after.lease_owner is None and after.last_success_at >= mailbox.last_success_at


@pytest.mark.parametrize("change", ["removed", "changed"])
def test_any_non_empty_page_runs_the_normal_sync(aws, outcomes, change, monkeypatch):
    """Guards against a deletion or a flag/label change (a `changed` ref) being taken for "nothing new"."""
    provider = FakeProvider({"inbox": 3, "sent": 0})
    mailbox = synced(provider)
    leases: list[str] = []
    acquire = lease.acquire
    monkeypatch.setattr(lease, "acquire", lambda *args, **kwargs: leases.append(args[1]) or acquire(*args, **kwargs))
    if change == "removed":
        provider.delete("inbox", 2)
        asked = provider.changes

        def replaying(folder, cursor, **kwargs):      # the fake forgets a removal once told; IMAP, Gmail and
            pending = list(provider.removed.get(folder, []))   # Graph answer the same cursor the same way
            page = asked(folder, cursor, **kwargs)
            if pending and not replayed:
                provider.removed[folder] = pending
                replayed.append(folder)
            return page
        replayed: list[str] = []
        provider.changes = replaying
    else:
        provider.relist["inbox"] = [1]
    assert run(mailbox, Factory(provider))["batchItemFailures"] == []
    assert outcomes[-1] == "done"
    after = reload(mailbox)
    assert leases == [mailbox.mailbox_id]                                      # the lease was taken
    if change == "removed":
        assert after.removed_count == 1


def test_a_page_with_more_to_come_is_not_nothing_new(aws):
    """Guards against the check reading only the first page of a folder's changes."""
    provider = FakeProvider({"inbox": 1, "sent": 0})
    mailbox = synced(provider)
    provider.add("inbox", 3)
    provider.fail_on[("changes", "inbox")] = []
    page = provider.changes("inbox", cursor_field(mailbox, "inbox"), since=None, page_size=2)
    assert page.has_more and idle_check.nothing_new(mailbox, provider, page_size=2) is False


def test_a_read_state_change_is_not_nothing_new(aws):
    """Guards against `unread` never following the provider on scheduled syncs (a `flags`-only page)."""
    provider = FakeProvider({"inbox": 1, "sent": 0})
    mailbox = synced(provider)
    asked = provider.changes

    def with_flags(folder, cursor, **kwargs):
        page = asked(folder, cursor, **kwargs)
        return dataclasses.replace(page, flags=(MessageRef(folder, "1:1", seen=True),)) if folder == "inbox" else page
    provider.changes = with_flags
    assert idle_check.nothing_new(mailbox, provider, page_size=10) is False


def test_new_mail_in_a_named_folder_is_not_nothing_new(aws):
    """Guards against a named folder in `sync_folders` (not among the provider's role folders) being skipped by
    the check, so its mail waited for the heartbeat."""
    provider = FakeProvider({"inbox": 1, "sent": 0, "Projects": 1})
    provider.folders = lambda: ["inbox", "sent"]        # real providers list roles; names come from sync_folders
    mailbox = synced(provider, sync_folders=["inbox", "sent", "Projects"])
    assert stored(mailbox) == 2 and idle_check.nothing_new(mailbox, provider, page_size=10) is True
    provider.add("Projects", 1)
    assert idle_check.nothing_new(mailbox, provider, page_size=10) is False


def test_an_advanced_cursor_with_an_empty_page_is_not_written(aws, outcomes):
    """Guards against the check writing a cursor without the lease (Gmail's historyId moves with other labels)."""
    class Advancing(FakeProvider):
        """Cursor "<epoch>:<uid>:<n>": the provider hands out a new one on every call."""
        asked = 0

        def changes(self, folder, cursor, *, since, page_size):
            self.asked += 1
            base = ":".join(cursor.split(":")[:2]) if cursor else None
            page = super().changes(folder, base, since=since, page_size=page_size)
            return dataclasses.replace(page, previous_cursor=cursor, next_cursor=f"{page.next_cursor}:{self.asked}")

    provider = Advancing({"inbox": 1, "sent": 0})
    mailbox = synced(provider)
    before = cursor_field(mailbox, "inbox")
    with dynamodb_calls() as calls:
        run(mailbox, Factory(provider))
    assert outcomes[-1] == "idle" and writes(calls) == 0
    assert cursor_field(reload(mailbox), "inbox") == before


def test_the_heartbeat_runs_a_full_sync_that_records_success(aws, outcomes, monkeypatch):
    """Guards against `last_success_at` of an idle mailbox going stale for ever (GET …/sync must stay honest)."""
    provider = FakeProvider({"inbox": 1, "sent": 0})
    mailbox = synced(provider)
    old = isoformat(utcnow() - timedelta(hours=7))
    mailbox.update(actions=[Mailbox.last_success_at.set(old)])
    assert run(mailbox, Factory(provider))["batchItemFailures"] == []
    assert outcomes[-1] == "done" and reload(mailbox).last_success_at > old
    assert run(mailbox, Factory(provider))["batchItemFailures"] == []
    assert outcomes[-1] == "idle"                                   # and the next tick is idle again
    monkeypatch.setenv("MAILBRIDGE_IDLE_HEARTBEAT_SECONDS", "0")     # 0 turns the check off
    reset_settings()
    try:
        run(mailbox, Factory(provider))
        assert outcomes[-1] == "done"
    finally:
        monkeypatch.delenv("MAILBRIDGE_IDLE_HEARTBEAT_SECONDS")
        reset_settings()


def test_a_cleanly_synced_mailbox_is_eligible_for_scheduled_jobs(aws):
    """Guards against the check never applying (the tick would keep paying for the lease)."""
    mailbox = synced(FakeProvider({"inbox": 1, "sent": 0}))
    assert idle_check.eligible(mailbox, "schedule") is True


@pytest.mark.parametrize("state", ["push", "refresh", "follow_up", "error", "queued", "requested", "throttled",
                                   "legacy_cursors", "never_synced", "page_debt"])
def test_the_check_applies_only_to_scheduled_jobs_of_a_cleanly_synced_mailbox(aws, state):
    """Guards against the shortcut hiding a pending state write (error to clear, continuation, follow-up)."""
    mailbox = synced(FakeProvider({"inbox": 1, "sent": 0}))
    reason = state if state in ("push", "refresh", "follow_up") else "schedule"
    actions = {"error": [Mailbox.last_error.set({"code": "temporary", "detail": "x", "at": mailbox.last_success_at})],
               "queued": [Mailbox.sync_stage.set("queued")],
               "requested": [Mailbox.sync_requested.set(True)],
               "throttled": [Mailbox.not_before.set(1)],
               "legacy_cursors": [Mailbox.cursors.set({})],
               "never_synced": [Mailbox.last_success_at.remove()],
               "page_debt": [Mailbox.owed_pages.add({'{"at":"2026-01-01T00:00:00Z","ids":["msg_x"]}'})]}.get(state)
    if actions:
        mailbox.update(actions=actions)
    assert idle_check.eligible(reload(mailbox), reason) is False


def test_a_live_lease_is_coalesced_not_checked(aws, outcomes):
    """Guards against a scheduled job skipping silently while another worker syncs (its follow-up is owed)."""
    provider = FakeProvider({"inbox": 1, "sent": 0})
    mailbox = synced(provider)
    held, _ = lease.acquire(mailbox.tenant_id, mailbox.mailbox_id)
    factory = Factory(provider)
    run(mailbox, factory)
    assert outcomes[-1] == "coalesced" and factory.built == 0 and reload(mailbox).sync_requested is True
    assert lease.release(held) is True


@pytest.mark.parametrize("code,status", [(ErrorCode.AUTH_REVOKED, "auth_error"), (ErrorCode.THROTTLED, "active"),
                                         (ErrorCode.PERMANENT, "active")])
def test_a_mailbox_wide_error_in_the_check_is_recorded_without_asking_again(aws, outcomes, code, status):
    """Guards against an error met by the check going unrecorded, or a throttled provider being asked twice."""
    provider = FakeProvider({"inbox": 1, "sent": 0})
    mailbox = synced(provider)
    provider.changes_calls.clear()
    provider.fail_on[("changes", "inbox")] = [ProviderError(code, "refused", retry_after=60)]
    factory = Factory(provider)
    run(mailbox, factory)
    after = reload(mailbox)
    assert outcomes[-1] == ("throttled" if code == ErrorCode.THROTTLED else "failed")
    assert after.status == status and after.last_error["code"] == code.value and after.lease_owner is None
    assert provider.changes_calls == [("inbox", "1:1")] and factory.built == 1 and provider.closed


def test_an_invalid_cursor_met_by_the_check_runs_the_engines_bounded_resync(aws, outcomes):
    """Guards against a UIDVALIDITY change found by the check being recorded as an error instead of resynced."""
    provider = FakeProvider({"inbox": 2, "sent": 0})
    mailbox = synced(provider)
    provider.recreate("inbox")
    run(mailbox, Factory(provider))
    after = reload(mailbox)
    assert outcomes[-1] == "done" and after.resync_count == 1 and cursor_field(after, "inbox") == "2:2"
    assert stored(after) == 2 and after.last_error is None


def test_a_provider_that_cannot_be_built_is_recorded_like_a_sync_failure(aws, outcomes):
    """Guards against a factory failure (e.g. SSRF refusal) in the check escaping the error vocabulary."""
    provider = FakeProvider({"inbox": 1, "sent": 0})
    mailbox = synced(provider)
    calls = []

    def failing(box):
        calls.append(box.mailbox_id)
        raise ProviderError(ErrorCode.PERMANENT, "unreachable")
    run(mailbox, failing)
    assert outcomes[-1] == "failed" and reload(mailbox).last_error["code"] == "permanent" and len(calls) == 1


def test_a_push_during_the_check_is_not_lost(aws, outcomes):
    """Guards against mail that lands while the check runs (after its folder was asked) being missed."""
    provider = FakeProvider({"inbox": 1, "sent": 0})
    mailbox = synced(provider)

    def land(folder):
        if folder == "sent" and not provider.mail["inbox"].get(2):
            provider.add("inbox", 1)                         # inbox was already asked: the check says idle
            assert request_sync(mailbox.tenant_id, mailbox.mailbox_id, "push") == "queued"
    provider.before_changes = land
    run(mailbox, Factory(provider))
    assert outcomes[-1] == "idle" and stored(mailbox) == 1
    provider.before_changes = None
    event = receive_event(aws["sync_queue_url"], 10)
    assert [record["body"] for record in event["Records"]] and '"push"' in event["Records"][0]["body"]
    assert worker.handle_batch(event, FakeContext(), provider_factory=Factory(provider))["batchItemFailures"] == []
    assert outcomes[-1] == "done" and stored(mailbox) == 2


def test_an_account_changed_between_check_and_lease_gets_a_fresh_provider(aws, outcomes):
    """Guards against syncing the new account's cursors with a connection built for the old settings."""
    provider = FakeProvider({"inbox": 1, "sent": 0})
    mailbox = synced(provider)
    provider.add("inbox", 1)
    fresh = FakeProvider({"inbox": 2, "sent": 0})
    built = []

    def factory(box):
        built.append(box.secret_version)
        if len(built) == 1:                                # the API rotates the credentials meanwhile
            Mailbox(box.tenant_id, box.mailbox_id).update(actions=[Mailbox.secret_version.set(9)])
            return provider
        return fresh
    run(mailbox, factory)
    assert outcomes[-1] == "done" and built == [None, 9] and provider.closed and fresh.closed


def test_the_sync_status_says_how_often_an_idle_mailbox_records_success(aws):
    """Guards against GET …/sync implying a check every 30 min wrote `last_success_at` (it does not)."""
    mailbox = synced(FakeProvider({"inbox": 1, "sent": 0}))
    view = sync_status(mailbox)
    assert view["idle_heartbeat_seconds"] == get_settings().idle_heartbeat_seconds == 21600
    assert SyncStatus(**view).idle_heartbeat_seconds == 21600


def test_the_imap_tls_context_is_built_once_per_trust_store(monkeypatch):
    """Guards against every sync paying ~0.2 s of CPU to load the system trust store (most of an idle IMAP sync)."""
    from chalicelib.providers.imap.client import default_ssl_context
    first = default_ssl_context()
    assert default_ssl_context() is first
    assert first.minimum_version == ssl.TLSVersion.TLSv1_2 and first.check_hostname
    monkeypatch.setenv("SSL_CERT_FILE", certifi.where())           # another trust store: another context
    assert default_ssl_context() is not first


def test_a_crash_during_the_check_changes_nothing_and_the_redelivery_syncs(aws, outcomes):
    """Guards against a worker dying mid-check leaving a lease, a cursor or a stage behind."""
    provider = FakeProvider({"inbox": 1, "sent": 0})
    mailbox = synced(provider)
    provider.add("inbox", 1)

    def crash():
        raise RuntimeError("worker killed")
    provider.fail_on[("changes", "inbox")] = [crash]
    with dynamodb_calls() as calls:
        failures = run(mailbox, Factory(provider))["batchItemFailures"]
    assert len(failures) == 1 and writes(calls) == 0 and provider.closed
    after = reload(mailbox)
    assert after.lease_owner is None and after.sync_stage == "idle" and cursor_field(after, "inbox") == "1:1"
    assert run(mailbox, Factory(provider))["batchItemFailures"] == []       # the redelivery
    assert outcomes[-1] == "done" and stored(mailbox) == 2


def test_another_worker_taking_the_lease_during_the_check_is_not_disturbed(aws, outcomes):
    """Guards against the lease-free check writing over (or releasing) a sync that started meanwhile."""
    provider = FakeProvider({"inbox": 1, "sent": 0})
    mailbox = synced(provider)
    taken = []

    def other_worker(folder):
        if folder == "inbox" and not taken:
            taken.append(lease.acquire(mailbox.tenant_id, mailbox.mailbox_id))
    provider.before_changes = other_worker
    run(mailbox, Factory(provider))
    held, _ = taken[0]
    assert outcomes[-1] == "idle"
    assert reload(mailbox).lease_owner == held.owner and reload(mailbox).sync_stage == "syncing"
    assert lease.release(held) is False                      # no follow-up was requested by the check
