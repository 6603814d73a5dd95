"""Guards the sync engine against lost or duplicated mail, cursors that run ahead of the store, concurrent syncs
of one mailbox, retry storms, and a scheduler/refresh/status surface that misreports or over-enqueues."""
from __future__ import annotations

import json
import time

import pytest

from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.notify import events, notifier
from chalicelib.providers.base import ErrorCode, ProviderError
from chalicelib.sync import effects, engine, errors, lease, renewer, scheduler, store, store_page, worker
from chalicelib.sync.engine import SyncOptions
from chalicelib.sync.enqueue import enqueue_sync
from tests.sync_helpers import (FakeContext, FakeProvider, counts_of, cursor_field, drain, job_event, make_mailbox,
                                receive_event, reload)

FAR = float("inf")


def stored(mailbox) -> list[Message]:
    return list(Message.by_mailbox.query(mailbox.mailbox_id))


def run_worker(event, providers: dict, context=None, **options):
    return worker.handle_batch(event, context or FakeContext(), provider_factory=lambda m: providers[m.mailbox_id],
                               **options)


REAL_SAVE = store.save_fetched


class FailingStore:
    """The real store, failing on the n-th save (a crash mid-page)."""

    def __init__(self, fail_at: int):
        self.calls, self.fail_at = 0, fail_at

    def save_fetched(self, mailbox, fetched):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("store crashed")
        return REAL_SAVE(mailbox, fetched)

    def mark_removed(self, mailbox, folder, ids):
        return store.mark_removed(mailbox, folder, ids)


# --- engine ------------------------------------------------------------------------------------------------

def test_pages_through_every_folder_and_records_state(aws):
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 25, "sent": 4})
    result = engine.sync_mailbox(mailbox, provider, FAR, options=SyncOptions(page_size=10, fetch_batch=3),
                                 after_store=effects.announce_only)
    assert result.outcome == "done"
    assert (result.counts.imported, result.counts.pages) == (29, 4)   # inbox 10+10+5, sent 4
    assert len(stored(mailbox)) == 29
    fresh = reload(mailbox)
    assert cursor_field(fresh, "inbox", "cursor") == "1:25" and cursor_field(fresh, "sent", "cursor") == "1:4"
    assert counts_of(fresh) == {"imported": 29, "skipped": 0, "removed": 0}
    assert fresh.sync_stage == "idle" and fresh.last_success_at
    assert len(events.list_events(mailbox.tenant_id, "message.created")) == 29


def test_cursor_advances_only_after_the_page_is_stored(aws):
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 25})
    with pytest.raises(RuntimeError):
        engine.sync_mailbox(mailbox, provider, FAR, options=SyncOptions(page_size=10), store=FailingStore(fail_at=15),
                            after_store=effects.announce_only)
    fresh = reload(mailbox)
    assert cursor_field(fresh, "inbox", "cursor") == "1:10"          # page 2 was not fully stored → not persisted
    assert len(stored(mailbox)) == 14
    result = engine.sync_mailbox(fresh, provider, FAR, options=SyncOptions(page_size=10),
                                 after_store=effects.announce_only)
    assert provider.changes_calls[-3][1] == "1:10"              # resumed from the persisted cursor
    assert len(stored(mailbox)) == 25                           # nothing lost, nothing duplicated
    assert (result.counts.imported, result.counts.skipped) == (11, 0)   # the 4 already stored are not re-counted


def test_idle_sync_fetches_nothing_and_new_mail_only_is_imported(aws):
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 5, "sent": 0})
    engine.sync_mailbox(mailbox, provider, FAR, after_store=effects.announce_only)
    fetched_before = len(provider.fetched)
    stamp = cursor_field(reload(mailbox), "inbox", "updated_at")
    idle = engine.sync_mailbox(reload(mailbox), provider, FAR, after_store=effects.announce_only)
    assert len(provider.fetched) == fetched_before and idle.counts.pages == 2 and idle.counts.imported == 0
    assert cursor_field(reload(mailbox), "inbox", "updated_at") == stamp      # no write for an unchanged cursor
    provider.add("inbox", 3)
    provider.delete("inbox", 1)
    result = engine.sync_mailbox(reload(mailbox), provider, FAR, after_store=effects.announce_only)
    assert (result.counts.imported, result.counts.removed) == (3, 1)
    assert provider.fetched[fetched_before:] == ["1:6", "1:7", "1:8"]
    assert cursor_field(reload(mailbox), "inbox", "cursor") == "1:8"


def test_stale_lease_holder_cannot_move_the_cursor(aws):
    mailbox = make_mailbox()
    old, _ = lease.acquire(mailbox.tenant_id, mailbox.mailbox_id, ttl=1)
    new, _ = lease.acquire(mailbox.tenant_id, mailbox.mailbox_id, now=time.time() + 5)   # old lease expired
    provider = FakeProvider({"inbox": 3})
    with pytest.raises(engine.LeaseLost):
        engine.sync_mailbox(reload(mailbox), provider, FAR, lease=old, after_store=effects.announce_only)
    assert cursor_field(reload(mailbox), "inbox") is None
    assert lease.release(old) is False and reload(mailbox).lease_owner == new.owner


def test_cursor_invalid_resyncs_without_duplicates_and_is_bounded(aws):
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 6, "sent": 0})
    engine.sync_mailbox(mailbox, provider, FAR, after_store=effects.announce_only)
    for round_number in range(1, engine.MAX_RESYNCS_PER_DAY + 1):
        provider.recreate("inbox")
        result = engine.sync_mailbox(reload(mailbox), provider, FAR, after_store=effects.announce_only)
        assert result.resynced_folders == ["inbox"]
        assert (result.counts.imported, result.counts.skipped, result.counts.fetched) == (0, 0, 6)
        assert cursor_field(reload(mailbox), "inbox", "cursor") == f"{round_number + 1}:6"
    assert len(stored(mailbox)) == 6 and reload(mailbox).resync_count == engine.MAX_RESYNCS_PER_DAY
    provider.recreate("inbox")
    with pytest.raises(ProviderError) as caught:
        engine.sync_mailbox(reload(mailbox), provider, FAR, after_store=effects.announce_only)
    assert caught.value.code == ErrorCode.CURSOR_INVALID
    errors.handle_provider_error(reload(mailbox), caught.value)
    fresh = reload(mailbox)
    assert fresh.sync_stage == "error" and fresh.last_error["code"] == "cursor_invalid"
    assert fresh.status == "active"


def test_missing_folder_and_vanished_message_are_skipped_with_a_recorded_error(aws):
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 4, "sent": 2})
    provider.fail_on[("changes", "sent")] = [ProviderError(ErrorCode.NOT_FOUND, "no Sent folder")]
    original_fetch = provider.fetch

    def fetch(refs, *, max_bytes):
        if len(refs) > 1:          # the batch hits a vanished uid; the engine retries one by one
            raise ProviderError(ErrorCode.NOT_FOUND, "uid 2 vanished")
        if refs[0].provider_id == "1:2":
            raise ProviderError(ErrorCode.NOT_FOUND, "uid 2 vanished")
        return original_fetch(refs, max_bytes=max_bytes)

    provider.fetch = fetch
    result = engine.sync_mailbox(mailbox, provider, FAR, after_store=effects.announce_only)
    assert result.outcome == "done" and result.counts.imported == 3
    assert set(result.folder_errors) == {"inbox", "sent"}
    assert reload(mailbox).last_error["code"] == "not_found"


def test_pairing_failure_keeps_the_message_and_what_it_owes(aws, monkeypatch):
    """Guards against a failed pairing losing the message, or its pairing and event for good."""
    mailbox = make_mailbox()

    def broken_pairing(message):
        raise RuntimeError("pairing exploded")

    monkeypatch.setattr(effects, "pair_message", broken_pairing)
    monkeypatch.setattr(effects, "pair_page", lambda messages, mailbox: {m.message_id: None for m in messages})
    result = engine.sync_mailbox(mailbox, FakeProvider({"inbox": 2}), FAR)
    assert result.counts.imported == 2 and len(stored(mailbox)) == 2
    assert counts_of(reload(mailbox))["imported"] == 2               # counted with the insert, exactly once
    debts = [effects.read_debt(key) for key in reload(mailbox).owed_pages]       # what they owe is kept
    assert sorted(i for debt in debts for i in debt.message_ids) == sorted(m.message_id for m in stored(mailbox))
    assert events.list_events(mailbox.tenant_id, "message.created") == []
    monkeypatch.undo()
    assert effects.pay_debts(reload(mailbox)) == 2                         # the sweep pays it
    assert not reload(mailbox).owed_pages
    assert len(events.list_events(mailbox.tenant_id, "message.created")) == 2
    assert counts_of(reload(mailbox))["imported"] == 2


def test_checkpoint_near_the_deadline_persists_and_continues(aws):
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 30, "sent": 2})
    clock = {"t": 0.0}
    provider.before_changes = lambda folder: clock.update(t=clock["t"] + 50)
    enqueue_sync(mailbox.tenant_id, mailbox.mailbox_id, "test")
    event = receive_event(aws["sync_queue_url"], 1)
    # remaining 100 s: page 1 took 50 s (t=50); a second would be expected to take 75 s and end past the
    # invocation's end (less the 10 s kept for the final writes) → checkpoint (tests/unit/test_worker_time_budget.py)
    result = run_worker(event, {mailbox.mailbox_id: provider}, FakeContext(100), clock=lambda: clock["t"],
                        options=SyncOptions(page_size=10))
    assert result == {"batchItemFailures": []}
    fresh = reload(mailbox)
    assert cursor_field(fresh, "inbox", "cursor") == "1:10" and cursor_field(fresh, "sent") is None
    assert fresh.sync_stage == "queued" and fresh.lease_owner is None
    queued = drain(aws["sync_queue_url"])
    assert [q["body"]["reason"] for q in queued] == ["continue"]
    clock["t"] = 0.0
    provider.before_changes = None
    run_worker(job_event((mailbox.tenant_id, mailbox.mailbox_id), reason="continue"), {mailbox.mailbox_id: provider})
    fresh = reload(mailbox)
    assert cursor_field(fresh, "inbox", "cursor") == "1:30" and cursor_field(fresh, "sent", "cursor") == "1:2"
    assert len(stored(mailbox)) == 32 and fresh.sync_stage == "idle"
    assert drain(aws["sync_queue_url"]) == []


def test_no_time_left_re_enqueues_without_syncing(aws):
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 2})
    run_worker(job_event((mailbox.tenant_id, mailbox.mailbox_id)), {mailbox.mailbox_id: provider}, FakeContext(5))
    assert provider.changes_calls == [] and reload(mailbox).sync_stage == "queued"
    assert [q["body"]["reason"] for q in drain(aws["sync_queue_url"])] == ["continue"]


# --- worker ------------------------------------------------------------------------------------------------

class RecordingSqs:
    def __init__(self, real):
        self.real, self.visibility = real, []

    def change_message_visibility(self, **kwargs):
        self.visibility.append(kwargs)
        return self.real.change_message_visibility(**kwargs)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_temporary_error_fails_only_its_record_with_backoff(aws, monkeypatch):
    from chalicelib import aws as aws_clients
    recorder = RecordingSqs(aws_clients.sqs())
    monkeypatch.setattr(errors.aws, "sqs", lambda: recorder)
    boxes = [make_mailbox() for _ in range(3)]
    providers = {m.mailbox_id: FakeProvider({"inbox": 2}) for m in boxes}
    flaky = boxes[1]
    providers[flaky.mailbox_id].fail_on[("changes", "inbox")] = [
        ProviderError(ErrorCode.TEMPORARY, "server busy", retry_after=120)]
    for m in boxes:
        enqueue_sync(m.tenant_id, m.mailbox_id, "schedule")
    event = receive_event(aws["sync_queue_url"], 3)
    ids = {json.loads(r["body"])["mailbox_id"]: r["messageId"] for r in event["Records"]}
    assert len(set(ids.values())) == 3
    result = run_worker(event, providers)
    assert result == {"batchItemFailures": [{"itemIdentifier": ids[flaky.mailbox_id]}]}
    assert [len(stored(m)) for m in boxes] == [2, 0, 2]
    fresh = reload(flaky)
    assert fresh.sync_stage == "retrying" and fresh.last_error["code"] == "temporary"
    assert fresh.lease_owner is None
    assert [v["VisibilityTimeout"] for v in recorder.visibility] == [120]


def test_backoff_grows_with_receive_count_and_honours_retry_after():
    temporary = ProviderError(ErrorCode.TEMPORARY, "busy")
    assert 30 <= errors.backoff_seconds(temporary, 1) <= 36
    assert 120 <= errors.backoff_seconds(temporary, 3) <= 144
    assert errors.backoff_seconds(temporary, 30) == errors.BACKOFF_MAX_SECONDS
    assert errors.backoff_seconds(ProviderError(ErrorCode.TEMPORARY, "x", retry_after=7.2), 5) == 7


def test_auth_revoked_marks_the_mailbox_and_emits_once(aws):
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 1})
    provider.fail_on[("changes", "inbox")] = [ProviderError(ErrorCode.AUTH_REVOKED, "LOGIN failed")]
    result = run_worker(job_event((mailbox.tenant_id, mailbox.mailbox_id)), {mailbox.mailbox_id: provider})
    assert result == {"batchItemFailures": []}                 # no retry storm
    fresh = reload(mailbox)
    assert (fresh.status, fresh.status_reason, fresh.sync_stage) == ("auth_error", "LOGIN failed", "error")
    assert fresh.lease_owner is None
    emitted = events.list_events(mailbox.tenant_id, "mailbox.status_changed")
    assert [e.payload["status"] for e in emitted] == ["auth_error"]
    assert emitted[0].payload["previous_status"] == "active"
    # the next job finds the mailbox inactive and does nothing
    run_worker(job_event((mailbox.tenant_id, mailbox.mailbox_id)), {mailbox.mailbox_id: FakeProvider({"inbox": 1})})
    assert len(stored(mailbox)) == 0 and len(events.list_events(mailbox.tenant_id, "mailbox.status_changed")) == 1


def test_needs_admin_consent_and_permanent(aws):
    consent, broken = make_mailbox(), make_mailbox()
    providers = {consent.mailbox_id: FakeProvider({"inbox": 1}), broken.mailbox_id: FakeProvider({"inbox": 1})}
    providers[consent.mailbox_id].fail_on[("changes", "inbox")] = [
        ProviderError(ErrorCode.NEEDS_ADMIN_CONSENT, "admin must consent")]
    providers[broken.mailbox_id].fail_on[("changes", "inbox")] = [ProviderError(ErrorCode.PERMANENT, "bad config")]
    event = job_event((consent.tenant_id, consent.mailbox_id), (broken.tenant_id, broken.mailbox_id))
    assert run_worker(event, providers) == {"batchItemFailures": []}
    assert reload(consent).status == "needs_admin_consent"
    fresh = reload(broken)
    assert (fresh.status, fresh.sync_stage, fresh.last_error["code"]) == ("active", "error", "permanent")


def test_deleted_or_inactive_mailbox_is_skipped_silently(aws):
    paused = make_mailbox(status="disabled")
    event = job_event(("tnt_test", "mbx_gone"), (paused.tenant_id, paused.mailbox_id))
    assert run_worker(event, {}) == {"batchItemFailures": []}
    assert Mailbox.count("tnt_test") == 1                       # no phantom item created by a lease write


def test_redelivered_message_duplicates_nothing(aws):
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 7})
    event = job_event((mailbox.tenant_id, mailbox.mailbox_id))
    run_worker(event, {mailbox.mailbox_id: provider})
    run_worker(event, {mailbox.mailbox_id: provider})           # the same SQS message again
    assert len(stored(mailbox)) == 7
    assert counts_of(reload(mailbox))["imported"] == 7
    assert len(events.list_events(mailbox.tenant_id, "message.created")) == 7


def test_internal_crash_fails_the_record_and_loses_nothing(aws, monkeypatch):
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 25})
    event = job_event((mailbox.tenant_id, mailbox.mailbox_id))
    calls = {"n": 0}
    real_prepare = store_page.prepare

    def failing_prepare(box, fetched):          # the 12th message of the page store crashes (page 2)
        calls["n"] += 1
        if calls["n"] == 12:
            raise RuntimeError("store crashed")
        return real_prepare(box, fetched)
    monkeypatch.setattr(store_page, "prepare", failing_prepare)
    result = run_worker(event, {mailbox.mailbox_id: provider}, options=SyncOptions(page_size=10))
    assert result["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]
    fresh = reload(mailbox)
    assert fresh.lease_owner is None and fresh.last_error["code"] == "internal"
    assert cursor_field(fresh, "inbox", "cursor") == "1:10"
    monkeypatch.undo()
    run_worker(event, {mailbox.mailbox_id: provider}, options=SyncOptions(page_size=10))
    assert len(stored(mailbox)) == 25 and reload(mailbox).sync_stage == "idle"


def test_lease_prevents_concurrent_sync_and_coalesces_to_one_follow_up(aws):
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 3})
    other = FakeProvider({"inbox": 3})
    calls = {"n": 0}

    def concurrent_jobs(folder):
        calls["n"] += 1
        if calls["n"] == 1:   # while the first sync holds the lease, three more jobs arrive
            event = job_event(*[(mailbox.tenant_id, mailbox.mailbox_id)] * 3, reason="push")
            assert run_worker(event, {mailbox.mailbox_id: other}) == {"batchItemFailures": []}
            assert reload(mailbox).sync_requested is True

    provider.before_changes = concurrent_jobs
    run_worker(job_event((mailbox.tenant_id, mailbox.mailbox_id)), {mailbox.mailbox_id: provider})
    assert other.changes_calls == []                             # never two syncs at once
    queued = drain(aws["sync_queue_url"])
    assert [q["body"]["reason"] for q in queued] == ["follow_up"]
    fresh = reload(mailbox)
    assert fresh.lease_owner is None and fresh.sync_requested is False


def test_expired_lease_is_taken_over(aws):
    mailbox = make_mailbox()
    first = lease.acquire(mailbox.tenant_id, mailbox.mailbox_id)
    assert first is not None and lease.acquire(mailbox.tenant_id, mailbox.mailbox_id) is None
    later = time.time() + lease.lease_seconds() + 1
    second = lease.acquire(mailbox.tenant_id, mailbox.mailbox_id, now=later)
    assert second is not None and second[0].owner != first[0].owner
    assert lease.renew(first[0]) is False and lease.renew(second[0]) is True


# --- scheduler, renewer, notifier ----------------------------------------------------------------------------

def test_scheduler_enqueues_every_active_mailbox_via_the_gsi(aws, monkeypatch):
    def no_scan(*args, **kwargs):
        raise AssertionError("the scheduler must not scan")

    monkeypatch.setattr(Mailbox, "scan", no_scan)
    expected = set()
    for index in range(25):
        tenant = "tnt_a" if index % 2 else "tnt_b"
        status = "active" if index >= 3 else ("auth_error", "disabled", "pending_auth")[index]
        box = make_mailbox(tenant, status=status)
        if status == "active":
            expected.add((tenant, box.mailbox_id))
    counts = scheduler.run_tick(jitter_seconds=0)
    assert counts["enqueued"] == 22 and counts["failed"] == 0
    queued = drain(aws["sync_queue_url"])
    assert {(q["body"]["tenant_id"], q["body"]["mailbox_id"]) for q in queued} == expected
    assert len(queued) == 22 and {q["body"]["reason"] for q in queued} == {"schedule"}


def test_scheduler_jitter_and_failed_batch_isolation(aws, monkeypatch):
    from chalicelib import aws as aws_clients
    for _ in range(12):
        make_mailbox()
    sent: list[list[dict]] = []

    class FlakySqs:
        def send_message_batch(self, QueueUrl, Entries):
            sent.append(Entries)
            if len(Entries) == 10:       # batches go out concurrently: fail one by its content, not its turn
                raise RuntimeError("throttled")
            return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    monkeypatch.setattr(aws_clients, "sqs", lambda: FlakySqs())
    counts = scheduler.run_tick(jitter_seconds=120)
    assert (counts["enqueued"], counts["failed"], counts["failed_tenants"]) == (2, 10, 1)
    assert sorted(len(batch) for batch in sent) == [2, 10]
    assert all(0 <= e["DelaySeconds"] <= 120 for batch in sent for e in batch if "DelaySeconds" in e)


def test_scheduler_reads_tenants_per_page_and_sends_batches_concurrently(aws, monkeypatch):
    """Guards the fan-out cost: a GetItem per tenant and one SendMessageBatch at a time would not finish a
    tick over 100,000 mailboxes within a minute (docs/benchmarks.md, fan-out)."""
    import threading
    import time as clock
    from chalicelib import aws as aws_clients
    from chalicelib.models.tenant import Tenant
    for index in range(45):
        make_mailbox(f"tnt_{index % 15}")
    monkeypatch.setattr(Tenant, "get", classmethod(lambda cls, *a, **k: (_ for _ in ()).throw(
        AssertionError("the tick reads tenants in batches"))))
    lock, state = threading.Lock(), {"now": 0, "max": 0, "calls": 0}

    class SlowSqs:
        def send_message_batch(self, QueueUrl, Entries):
            with lock:
                state["now"] += 1
                state["calls"] += 1
                state["max"] = max(state["max"], state["now"])
            clock.sleep(0.2)
            with lock:
                state["now"] -= 1
            return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    monkeypatch.setattr(aws_clients, "sqs", lambda: SlowSqs())
    counts = scheduler.run_tick(jitter_seconds=0)
    assert counts["enqueued"] == 45 and counts["skipped_tenants"] == 0
    assert state["calls"] == 5 and state["max"] > 1


def test_batch_send_retries_only_failed_entries(aws, monkeypatch):
    from chalicelib import aws as aws_clients
    from chalicelib.sync.enqueue import SyncJob, send_batch
    calls = []

    class PartialSqs:
        def send_message_batch(self, QueueUrl, Entries):
            calls.append([json.loads(e["MessageBody"])["mailbox_id"] for e in Entries])
            failed = [{"Id": e["Id"], "Code": "InternalError", "SenderFault": False} for e in Entries
                      if len(calls) == 1 and e["Id"] == "1"]
            return {"Successful": [], "Failed": failed}

    monkeypatch.setattr(aws_clients, "sqs", lambda: PartialSqs())
    result = send_batch([SyncJob("t", f"m{i}", "x") for i in range(3)])
    assert calls == [["m0", "m1", "m2"], ["m1"]] and result.sent == 3 and result.failed == []


def test_renewer_re_enqueues_only_stuck_mailboxes(aws):
    stuck, busy, idle = make_mailbox(), make_mailbox(), make_mailbox()
    lease.acquire(stuck.tenant_id, stuck.mailbox_id, ttl=1)
    lease.acquire(busy.tenant_id, busy.mailbox_id)
    counts = renewer.run(now=time.time() + 30)
    assert {key: counts[key] for key in ("stuck", "enqueued", "failed")} == {"stuck": 1, "enqueued": 1, "failed": 0}
    queued = drain(aws["sync_queue_url"])
    assert [(q["body"]["mailbox_id"], q["body"]["reason"]) for q in queued] == [(stuck.mailbox_id, "recover")]
    assert idle.mailbox_id not in {q["body"]["mailbox_id"] for q in queued}


def test_notifier_consumes_stored_events(aws):
    events.emit("tnt_test", "mailbox.status_changed", {"mailbox_id": "mbx_1", "status": "auth_error"})
    event = receive_event(aws["events_queue_url"], 1)
    event["Records"].append({**event["Records"][0], "messageId": "bogus", "body": "not json"})
    assert notifier.handle_batch(event, None) == {"batchItemFailures": []}
    assert notifier.consume(type("R", (), {"body": event["Records"][0]["body"], "message_id": "m"})) == "consumed"


def test_app_wiring_calls_the_worker_with_the_raw_event(aws):
    import app as application
    mailbox = make_mailbox(mailbox_type="nonexistent-kind")
    event = job_event((mailbox.tenant_id, mailbox.mailbox_id))
    assert application.worker(event, FakeContext()) == {"batchItemFailures": []}
    fresh = reload(mailbox)
    assert fresh.sync_stage == "error" and "unknown mail provider" in fresh.last_error["detail"]


# --- API: refresh and status --------------------------------------------------------------------------------

def test_refresh_is_limited_to_once_per_interval(api, tenant, aws):
    mailbox = make_mailbox(tenant["id"])
    path = f"/v1/mailboxes/{mailbox.mailbox_id}/refresh"
    first = api("POST", path, key=tenant["key"])
    assert first.status == 202 and first.json == {"queued": True, "coalesced": False}
    second = api("POST", path, key=tenant["key"])
    assert second.status == 429 and 295 <= int(second.headers["retry-after"]) <= 300
    assert second.headers["content-type"] == "application/problem+json"
    assert [q["body"]["reason"] for q in drain(aws["sync_queue_url"])] == ["refresh"]
    mailbox.update(actions=[Mailbox.last_refresh_at.set(time.time() - 301)])
    assert api("POST", path, key=tenant["key"]).status == 202


def test_refresh_during_a_sync_coalesces(api, tenant, aws):
    mailbox = make_mailbox(tenant["id"])
    lease.acquire(mailbox.tenant_id, mailbox.mailbox_id)
    result = api("POST", f"/v1/mailboxes/{mailbox.mailbox_id}/refresh", key=tenant["key"])
    assert result.status == 202 and result.json["coalesced"] is True
    assert drain(aws["sync_queue_url"]) == [] and reload(mailbox).sync_requested is True


def test_refresh_access_rules(api, tenant, other_tenant, aws):
    mailbox = make_mailbox(tenant["id"])
    path = f"/v1/mailboxes/{mailbox.mailbox_id}/refresh"
    assert api("POST", path, key=other_tenant["key"]).status == 404
    assert api("POST", path, key=tenant["key"], user="u-stranger").status == 404
    inactive = make_mailbox(tenant["id"], status="auth_error")
    assert api("POST", f"/v1/mailboxes/{inactive.mailbox_id}/refresh", key=tenant["key"]).status == 409


def test_sync_status_endpoint(api, tenant, aws):
    mailbox = make_mailbox(tenant["id"])
    engine.sync_mailbox(mailbox, FakeProvider({"inbox": 3, "sent": 1}), FAR, after_store=effects.announce_only)
    result = api("GET", f"/v1/mailboxes/{mailbox.mailbox_id}/sync", key=tenant["key"])
    assert result.status == 200, result
    body = result.json
    assert body["stage"] == "idle" and body["last_success_at"] and body["last_error"] is None
    assert body["counts"] == {"imported": 4, "skipped": 0, "removed": 0}
    assert {c["folder"]: c["has_cursor"] for c in body["cursors"]} == {"inbox": True, "sent": True}
    assert all(c["age_seconds"] is not None and c["age_seconds"] < 60 for c in body["cursors"])
    assert body["lease_held"] is False
    raw_cursor = cursor_field(reload(mailbox), "inbox", "cursor")
    assert raw_cursor == "1:3" and f'"{raw_cursor}"' not in result.body     # raw cursors stay internal
    assert all(set(c) == {"folder", "has_cursor", "updated_at", "age_seconds"} for c in body["cursors"])
    lease.acquire(mailbox.tenant_id, mailbox.mailbox_id)
    assert api("GET", f"/v1/mailboxes/{mailbox.mailbox_id}/sync", key=tenant["key"]).json["lease_held"] is True
    assert api("GET", f"/v1/mailboxes/{mailbox.mailbox_id}/sync", key=tenant["key"],
               user="u-stranger").status == 404


def test_oversize_messages_are_counted_as_skipped_and_recorded(aws, monkeypatch):
    """Guards against oversize mail vanishing silently or being counted as imported."""
    monkeypatch.setenv("MAILBRIDGE_MAX_MESSAGE_BYTES", "10")
    from chalicelib.config import reset_settings
    reset_settings()
    mailbox = make_mailbox()
    result = engine.sync_mailbox(mailbox, FakeProvider({"inbox": 3, "sent": 0}), FAR, after_store=effects.announce_only)
    assert (result.counts.imported, result.counts.skipped) == (0, 3)
    kept = stored(mailbox)
    assert len(kept) == 3 and all(m.skipped_reason and m.raw_s3_key is None for m in kept)
    assert counts_of(reload(mailbox))["skipped"] == 3


def test_finished_folders_cursors_share_one_transaction(aws, monkeypatch):
    """Guards the WRU a sync of several folders pays for its cursors: the folders' final cursors go in ONE
    lease-conditioned transaction (one mailbox update), not one each — and only after their pages are stored."""
    from chalicelib.sync import cursors
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 3, "sent": 2})
    saves: list[list[str]] = []
    real_save = cursors.save

    def counting(mailbox, lease, state, mailbox_actions=None, also=()):
        saves.append(sorted([state.scope] + [other.scope for other in also]))
        assert len(stored(mailbox)) == 5                  # after both folders' pages were stored
        return real_save(mailbox, lease, state, mailbox_actions, also)
    monkeypatch.setattr(cursors, "save", counting)
    engine.sync_mailbox(mailbox, provider, FAR, options=SyncOptions(page_size=10),
                        after_store=effects.announce_only)
    assert saves == [["inbox", "sent"]]
    assert len(stored(mailbox)) == 5
    assert cursor_field(reload(mailbox), "inbox") == "1:3" and cursor_field(reload(mailbox), "sent") == "1:2"


def test_a_finished_folder_keeps_its_cursor_when_a_later_folder_fails(aws):
    """Guards against a pending cursor (written with the next one) being lost when the next folder fails."""
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 3, "sent": 2})
    provider.fail_on[("changes", "sent")] = [ProviderError(ErrorCode.TEMPORARY, "connection reset")]
    with pytest.raises(ProviderError):
        engine.sync_mailbox(mailbox, provider, FAR, options=SyncOptions(page_size=10),
                            after_store=effects.announce_only)
    assert cursor_field(reload(mailbox), "inbox") == "1:3" and cursor_field(reload(mailbox), "sent") is None


def test_paid_page_debts_leave_with_the_cursor_write(aws, monkeypatch):
    """Guards the mailbox writes of a sync: a page's paid debt is removed in the cursor transaction the sync
    writes anyway (after the page's events are stored), not by an update of its own."""
    from chalicelib.models.event import Event
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 3, "sent": 1})
    own_updates: list = []
    monkeypatch.setattr(effects, "clear_debts", lambda *args, **kwargs: own_updates.append(args))
    engine.sync_mailbox(mailbox, provider, FAR, options=SyncOptions(page_size=10),
                        after_store=effects.announce_only)
    assert own_updates == [] and not reload(mailbox).owed_pages
    assert len([e for e in Event.query(mailbox.tenant_id) if e.type == "message.created"]) == 4
