"""Guards the background machinery's promises under faults (audit of 2026-12-02, docs/reliability.md): the hourly
renewer and its sweeps keep going past one broken mailbox, item or delivery and stay within the Lambda timeout
(what does not fit is left, visibly, to the next run — oldest attempt first, so nothing is starved); a checkpoint
whose continuation was lost is recovered; a digest whose queue message was lost is not stuck forever."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest

from chalicelib.models.mailbox import Mailbox
from chalicelib.providers import kinds
from chalicelib.providers.base import ProviderContext, PushState, PushSubscriber
from chalicelib.sync import lease, renewer
from chalicelib.timeutil import isoformat, utcnow
from tests.sync_helpers import FakeProvider, drain, make_mailbox, reload


class PushingProvider(FakeProvider):
    """A provider kind with the push protocol; `on_call` runs at each registration call (a clock, a failure)."""

    def __init__(self, on_call=None):
        super().__init__({"inbox": 0})
        self.on_call = on_call or (lambda: None)

    def push_configured(self):
        return True

    def start_push(self):
        self.on_call()
        return PushState(expires_at=isoformat(utcnow() + timedelta(days=3)), resource={"subscription": "s-1"})

    def renew_push(self, state):
        self.on_call()
        return PushState(expires_at=isoformat(utcnow() + timedelta(days=3)), resource=state.resource)

    def stop_push(self, state):
        pass


PushSubscriber.register(PushingProvider)


@pytest.fixture
def push_kind(monkeypatch):
    """Installs the `pushkind` kind; `factories[mailbox_id]` builds that mailbox's provider (default: `default`)."""
    def install(default, factories=None):
        factories = factories or {}

        def build(context):
            return factories.get(context.mailbox_id, default)()

        monkeypatch.setitem(kinds._KINDS, "pushkind", kinds.ProviderKind(
            "pushkind", lambda mailbox, credentials, timeout: ProviderContext(mailbox.tenant_id, mailbox.mailbox_id,
                                                                               mailbox.email),
            build, oauth=True))
    return install


class Clock:
    """A monotonic clock the test moves; `context` answers the Lambda's remaining time from it."""

    def __init__(self, timeout: float):
        self.now, self.end = 1000.0, 1000.0 + timeout

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds

    @property
    def context(self):
        clock = self

        class Context:
            @staticmethod
            def get_remaining_time_in_millis():
                return int((clock.end - clock.now) * 1000)
        return Context()


def _expired_lease(mailbox) -> None:
    lease.acquire(mailbox.tenant_id, mailbox.mailbox_id, ttl=1)


# --- the renewer: one broken mailbox ---------------------------------------------------------------------------

def test_a_mailbox_whose_push_maintenance_raises_does_not_stop_the_renewer(aws, push_kind, monkeypatch):
    """A non-provider failure for one mailbox (its credentials cannot be opened, a DynamoDB error) aborted the
    whole run, every hour: the mailboxes after it, the stuck ones found so far and every sweep were starved."""
    broken = make_mailbox(mailbox_type="pushkind")
    healthy = make_mailbox(mailbox_type="pushkind")
    stuck = make_mailbox()
    _expired_lease(stuck)

    def unreadable():
        raise RuntimeError("KMS: AccessDeniedException")

    push_kind(PushingProvider, {broken.mailbox_id: unreadable})
    swept = []
    monkeypatch.setattr(renewer.outbox_delivery, "sweep", lambda **kw: swept.append("outbox") or 0)
    counts = renewer.run(now=time.time() + 30)
    assert counts["errors"] == 1 and counts["push_started"] == 1
    assert reload(healthy).push_state == {"subscription": "s-1"} and reload(broken).push_state is None
    assert [q["body"]["mailbox_id"] for q in drain(aws["sync_queue_url"])] == [stuck.mailbox_id]
    assert swept == ["outbox"]


def test_a_retention_sweep_error_in_one_mailbox_does_not_stop_the_others(aws, monkeypatch):
    from chalicelib.erasure import retention
    first, second = make_mailbox("tnt_ret"), make_mailbox("tnt_ret")
    monkeypatch.setattr(retention, "retention_days", lambda tenant_id: 30)
    visited = []

    def sweep_mailbox(mailbox, days, limit, now=None):
        visited.append(mailbox.mailbox_id)
        if len(visited) == 1:
            raise RuntimeError("DeleteObjects: SlowDown")
        return {"messages": 2}

    monkeypatch.setattr(retention, "sweep_mailbox", sweep_mailbox)
    total = retention.sweep([first, second])
    assert sorted(visited) == sorted([first.mailbox_id, second.mailbox_id])
    assert total.get("messages") == 2 and total.get("errors") == 1


def test_one_webhook_delivery_that_raises_does_not_stop_the_sweep(aws, monkeypatch):
    from chalicelib.notify import deliveries
    from chalicelib.models.webhook import WebhookDelivery
    keys = [WebhookDelivery("tnt_w", f"dlv_{n}") for n in range(3)]
    monkeypatch.setattr(WebhookDelivery.by_due, "query", lambda *a, **k: iter(keys))
    monkeypatch.setattr(deliveries, "get_delivery", lambda tenant_id, delivery_id: WebhookDelivery(tenant_id,
                                                                                                    delivery_id))
    attempted = []

    def attempt(delivery, now):
        attempted.append(delivery.delivery_id)
        if delivery.delivery_id == "dlv_0":
            raise RuntimeError("ProvisionedThroughputExceeded")
        return "delivered"

    monkeypatch.setattr(deliveries, "attempt", attempt)
    counts = deliveries.run_due()
    assert attempted == ["dlv_0", "dlv_1", "dlv_2"]
    assert counts["delivered"] == 2 and counts["errors"] == 1


# --- the renewer: thousands of renewals and the Lambda timeout --------------------------------------------------

def test_renewals_that_do_not_fit_the_timeout_are_left_to_the_next_run_and_the_sweeps_still_run(
        aws, push_kind, monkeypatch):
    """Each registration call costs seconds (token refresh, watch / subscription PATCH): mailboxes whose
    registrations were made together are due together, and the run hit the Lambda timeout before the stuck
    mailboxes were re-enqueued or any sweep ran — the same every hour."""
    clock = Clock(timeout=100)
    push_kind(lambda: PushingProvider(on_call=lambda: clock.tick(10)))
    due = [make_mailbox(mailbox_type="pushkind") for _ in range(12)]
    stuck = make_mailbox()
    _expired_lease(stuck)
    swept = []
    monkeypatch.setattr(renewer.outbox_delivery, "sweep", lambda **kw: swept.append("outbox") or 0)
    monkeypatch.setattr(renewer.deliveries, "run_due", lambda **kw: swept.append("webhooks") or {"due": 0})
    counts = renewer.run(now=time.time() + 30, context=clock.context, clock=clock)
    assert clock.now < clock.end                                      # finished within the timeout
    assert 0 < counts["push_started"] < len(due)
    assert counts["push_deferred"] == len(due) - counts["push_started"]
    assert swept == ["outbox", "webhooks"]
    assert [q["body"]["mailbox_id"] for q in drain(aws["sync_queue_url"])] == [stuck.mailbox_id]
    runs = 1
    while sum(1 for box in due if reload(box).push_state) < len(due):     # the rest in the next runs
        clock = Clock(timeout=100)
        push_kind(lambda: PushingProvider(on_call=lambda: clock.tick(10)))
        renewer.run(context=clock.context, clock=clock)
        runs += 1
        assert runs <= 4


def test_renewals_left_over_go_oldest_attempt_first(aws, push_kind):
    """A run that cannot renew everything must not spend its time on the same failing mailboxes every hour
    while the others lapse: the registrations attempted longest ago go first."""
    clock = Clock(timeout=100)
    push_kind(lambda: PushingProvider(on_call=lambda: clock.tick(10)))
    long_ago = isoformat(utcnow() - timedelta(days=2))
    failing_now = [make_mailbox(mailbox_type="pushkind", push_state={"subscription": "s-1"},
                                push_expires_at=isoformat(utcnow() + timedelta(hours=20)), push_renewed_at=long_ago,
                                push_error={"code": "throttled", "detail": "429", "at": isoformat(utcnow())})
                   for _ in range(6)]
    waiting = [make_mailbox(mailbox_type="pushkind", push_state={"subscription": "s-1"},
                            push_expires_at=isoformat(utcnow() + timedelta(hours=20)), push_renewed_at=long_ago)
               for _ in range(3)]
    counts = renewer.run(context=clock.context, clock=clock)
    assert counts["push_renewed"] >= len(waiting) and counts["push_deferred"] > 0
    assert all(reload(box).push_error is None for box in waiting)
    assert sum(1 for box in failing_now if reload(box).push_error is not None) == counts["push_deferred"]


# --- stuck checkpoints ----------------------------------------------------------------------------------------

def test_a_checkpoint_whose_continuation_was_lost_is_recovered_by_the_renewer(aws):
    """The worker's checkpoint releases the lease with `sync_stage = queued` and then sends the continuation;
    when that send failed (or the job was lost), the renewer's `is_stuck` — documented as covering `queued` —
    ignored it because the lease was already released."""
    box = make_mailbox()
    held, _ = lease.acquire(box.tenant_id, box.mailbox_id)
    lease.release(held, [Mailbox.sync_stage.set("queued")])
    assert renewer.run(now=time.time() + 60)["stuck"] == 0                # just checkpointed: its job is on the way
    drain(aws["sync_queue_url"])
    counts = renewer.run(now=time.time() + renewer.SWEEP_AFTER.total_seconds() + 60)
    assert counts["stuck"] == 1
    assert [(q["body"]["mailbox_id"], q["body"]["reason"]) for q in drain(aws["sync_queue_url"])] == \
        [(box.mailbox_id, "recover")]


def test_a_throttled_mailbox_is_not_a_stuck_one(aws):
    box = make_mailbox(sync_stage="throttled", not_before=time.time() + 3600)
    assert renewer.run(now=time.time() + 7200)["stuck"] == 0
    assert reload(box).sync_stage == "throttled"


# --- the worker and the check function under a throttle, a failed re-queue, a deletion ---------------------------

def _throttled(mailbox, seconds: float) -> None:
    Mailbox(mailbox.tenant_id, mailbox.mailbox_id).update(actions=[
        Mailbox.sync_stage.set("throttled"), Mailbox.not_before.set(time.time() + seconds)])


def test_scheduled_ticks_during_a_throttle_window_add_no_jobs(aws, monkeypatch):
    """A Retry-After of hours (Graph and Gmail send them) kept the mailbox's own delayed job; every :00/:30 tick
    meanwhile was forwarded by the check and re-queued by the worker in 900 s hops, so when the window ended
    several jobs arrived together and the provider that had asked for quiet got a sync and its follow-up."""
    from chalicelib.sync import check, worker
    from chalicelib.sync.enqueue import SyncJob
    from tests.sync_helpers import FakeContext, job_event
    from tests.unit.test_idle_check import Factory, synced
    provider = FakeProvider({"inbox": 1, "sent": 0})
    mailbox = synced(provider)
    _throttled(mailbox, 3 * 3600)
    sent = []
    monkeypatch.setattr(check, "send_job", sent.append)
    assert check.check_job(SyncJob(mailbox.tenant_id, mailbox.mailbox_id, "schedule"), Factory(provider)) == \
        "throttled"
    assert sent == []
    requeued = []
    monkeypatch.setattr(worker, "enqueue_sync", lambda tenant_id, mailbox_id, reason, delay_seconds=0:
                        requeued.append((reason, delay_seconds)))
    event = job_event((mailbox.tenant_id, mailbox.mailbox_id), reason="schedule")
    assert worker.handle_batch(event, FakeContext(), provider_factory=Factory(provider)) == {"batchItemFailures": []}
    assert requeued == []
    for reason in ("throttled", "push"):                     # the window's own job, and news, still wait for it
        event = job_event((mailbox.tenant_id, mailbox.mailbox_id), reason=reason)
        assert worker.handle_batch(event, FakeContext(), provider_factory=Factory(provider)) == \
            {"batchItemFailures": []}
        assert requeued.pop()[0] == reason and requeued == []
    assert reload(mailbox).lease_owner is None


def test_a_failed_re_queue_of_a_throttled_sync_releases_the_lease(aws, monkeypatch):
    """THROTTLED acknowledges the record and queues a delayed job; when SQS refused that job the record failed
    (right: it is redelivered) but the lease stayed held until it expired, so pushes and refreshes in those
    minutes were parked on a sync that no longer ran."""
    from chalicelib.providers.base import ErrorCode, ProviderError
    from chalicelib.sync import errors, worker
    from tests.sync_helpers import FakeContext, job_event
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 2, "sent": 0})
    provider.fail_on[("changes", "inbox")] = [ProviderError(ErrorCode.THROTTLED, "429", retry_after=120)]

    def refused(*args, **kwargs):
        raise RuntimeError("SQS: ServiceUnavailable")

    monkeypatch.setattr(errors, "enqueue_sync", refused)
    event = job_event((mailbox.tenant_id, mailbox.mailbox_id), reason="push")
    result = worker.handle_batch(event, FakeContext(), provider_factory=lambda m: provider)
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    fresh = reload(mailbox)
    assert fresh.lease_owner is None and fresh.not_before is not None


def test_a_mailbox_deleted_mid_sync_stops_the_sync_without_failing_or_requeueing(aws):
    from chalicelib.sync import worker
    from tests.sync_helpers import FakeContext, job_event
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 3, "sent": 2})
    provider.before_changes = lambda folder: Mailbox(mailbox.tenant_id, mailbox.mailbox_id).delete() \
        if folder == "sent" else None
    event = job_event((mailbox.tenant_id, mailbox.mailbox_id), reason="push")
    assert worker.handle_batch(event, FakeContext(), provider_factory=lambda m: provider) == {"batchItemFailures": []}
    assert drain(aws["sync_queue_url"]) == []


# --- the scheduler's fan-out ------------------------------------------------------------------------------------

def test_entries_sqs_keeps_refusing_are_retried_after_a_pause_named_in_an_error_and_synced_next_tick(
        aws, monkeypatch):
    """SendMessageBatch may fail some entries while accepting the others (SQS API reference, SendMessageBatch
    "Failed"). They were re-sent at once — into the same throttle — and a mailbox still refused after the
    attempts was only a count in an INFO line: nothing said which mailbox missed its tick."""
    from chalicelib import aws as aws_clients
    from chalicelib.sync import enqueue, scheduler
    from tests.log_capture import captured_lines
    refused = make_mailbox("tnt_refused")
    others = [make_mailbox("tnt_ok") for _ in range(3)]
    pauses: list[float] = []
    monkeypatch.setattr(enqueue, "pause", pauses.append)
    real_sqs = aws_clients.sqs()

    class PartlyFailingSqs:
        def send_message_batch(self, QueueUrl, Entries):
            failed = [e for e in Entries if refused.mailbox_id in e["MessageBody"]]
            accepted = [e for e in Entries if e not in failed]
            if accepted:
                real_sqs.send_message_batch(QueueUrl=QueueUrl, Entries=accepted)
            return {"Successful": [{"Id": e["Id"]} for e in accepted],
                    "Failed": [{"Id": e["Id"], "Code": "ServiceUnavailable", "SenderFault": False} for e in failed]}

    monkeypatch.setattr(aws_clients, "sqs", lambda: PartlyFailingSqs())
    with captured_lines() as lines:
        counts = scheduler.run_tick(jitter_seconds=0)
    assert (counts["enqueued"], counts["failed"]) == (3, 1)
    assert len(pauses) == enqueue.BATCH_ATTEMPTS - 1 and pauses == sorted(pauses) and pauses[0] > 0
    [line] = [line for line in lines if line["message"] == "scheduler tick"]
    assert line["level"] == "ERROR" and line["failed_mailboxes"] == [refused.mailbox_id]
    assert {q["body"]["mailbox_id"] for q in drain(aws["sync_queue_url"])} == {box.mailbox_id for box in others}
    monkeypatch.setattr(aws_clients, "sqs", lambda: real_sqs)              # SQS is back: the next tick
    assert scheduler.run_tick(jitter_seconds=0)["failed"] == 0
    assert refused.mailbox_id in {q["body"]["mailbox_id"] for q in drain(aws["sync_queue_url"])}


def test_two_overlapping_ticks_store_and_announce_each_message_once(aws):
    """EventBridge delivers a scheduled event at least once, and a late tick may overlap the next: every
    mailbox then gets two jobs. Held: the lease and the store make the second a no-op for the data."""
    from chalicelib.notify import events
    from chalicelib.sync import scheduler, worker
    from tests.sync_helpers import FakeContext, receive_event
    from tests.unit.test_idle_check import Factory, synced
    provider = FakeProvider({"inbox": 2, "sent": 0})
    mailbox = synced(provider)
    provider.add("inbox", 3)
    scheduler.run_tick(jitter_seconds=0)
    scheduler.run_tick(jitter_seconds=0)
    for _ in range(3):
        event = receive_event(aws["sync_queue_url"], 10)
        if event["Records"]:
            assert worker.handle_batch(event, FakeContext(), provider_factory=Factory(provider)) == \
                {"batchItemFailures": []}
    from chalicelib.models.message import Message
    assert len(list(Message.by_mailbox.query(mailbox.mailbox_id))) == 5
    created = events.list_events(mailbox.tenant_id, "message.created")
    assert len(created) == len({e.event_id for e in created}) == 5
    fresh = reload(mailbox)
    assert fresh.lease_owner is None and int(fresh.imported_count) == 5


def test_a_checkpoint_whose_continuation_cannot_be_sent_fails_the_record_and_is_recovered(aws, monkeypatch):
    """Held: the Lambda's time runs out, the worker checkpoints (lease released, `queued`) and the continuation's
    SendMessage fails — the record fails, so SQS redelivers it; were that lost too, the renewer re-enqueues."""
    from chalicelib.sync import worker
    from tests.sync_helpers import FakeContext, job_event
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 2})

    def refused(tenant_id, mailbox_id, reason, delay_seconds=0):
        raise RuntimeError("SQS: ServiceUnavailable")

    monkeypatch.setattr(worker, "enqueue_sync", refused)
    event = job_event((mailbox.tenant_id, mailbox.mailbox_id), reason="push")
    result = worker.handle_batch(event, FakeContext(5), provider_factory=lambda m: provider)
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    fresh = reload(mailbox)
    assert fresh.lease_owner is None and fresh.sync_stage == "queued"
    counts = renewer.run(now=time.time() + renewer.SWEEP_AFTER.total_seconds() + 60)
    assert counts["stuck"] == 1 and counts["enqueued"] == 1


def test_a_retry_after_beyond_the_sqs_delay_limit_is_waited_out_in_hops_without_asking_the_provider(
        aws, monkeypatch):
    """Held: a Retry-After of two hours (SQS delays are ≤ 900 s) — the mailbox keeps `not_before`, its job is
    re-queued in hops of at most 900 s without calling the provider, the record always succeeds, and the sync
    runs once the window is over."""
    from chalicelib.providers.base import ErrorCode, ProviderError
    from chalicelib.sync import errors, worker
    from tests.sync_helpers import FakeContext, job_event
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 2, "sent": 0})
    provider.fail_on[("changes", "inbox")] = [ProviderError(ErrorCode.THROTTLED, "429", retry_after=7200)]
    queued = []
    record = lambda tenant_id, mailbox_id, reason, delay_seconds=0: queued.append((reason, delay_seconds))  # noqa: E731
    monkeypatch.setattr(worker, "enqueue_sync", record)
    monkeypatch.setattr(errors, "enqueue_sync", record)
    run = lambda reason: worker.handle_batch(  # noqa: E731
        job_event((mailbox.tenant_id, mailbox.mailbox_id), reason=reason, receive_count=1), FakeContext(),
        provider_factory=lambda m: provider)
    assert run("push") == {"batchItemFailures": []}
    assert queued == [("throttled", 7200)]            # enqueue_sync caps DelaySeconds at 900 (enqueue.send_job)
    assert 7100 < reload(mailbox).not_before - time.time() <= 7200
    calls = len(provider.changes_calls)
    queued.clear()
    assert run("throttled") == {"batchItemFailures": []}          # a hop arriving early: re-queued, no call
    assert len(queued) == 1 and queued[0][0] == "throttled" and len(provider.changes_calls) == calls
    Mailbox(mailbox.tenant_id, mailbox.mailbox_id).update(actions=[Mailbox.not_before.set(time.time() - 1)])
    queued.clear()
    assert run("throttled") == {"batchItemFailures": []}
    fresh = reload(mailbox)
    assert len(provider.changes_calls) > calls and int(fresh.imported_count) == 2 and fresh.sync_stage == "idle"
    from chalicelib.sync.enqueue import MAX_DELAY_SECONDS, SyncJob
    params = {}
    monkeypatch.setattr("chalicelib.aws.sqs", lambda: type("S", (), {"send_message": lambda self, **kw:
                                                                     params.update(kw)})())
    from chalicelib.sync.enqueue import send_job
    send_job(SyncJob(mailbox.tenant_id, mailbox.mailbox_id, "throttled", 7200))
    assert params["DelaySeconds"] == MAX_DELAY_SECONDS


def test_a_registration_renewed_or_a_mailbox_disabled_since_the_pass_is_not_renewed_again(aws, push_kind):
    """The renewals run after the pass over every mailbox (minutes on a large deployment): what the pass read may
    be stale by then — renewed meanwhile (a lifecycle event settled by the worker), or the mailbox disconnected.
    A second `subscribe` for the same mailbox leaves a second set of subscriptions behind at the provider."""
    long_ago = isoformat(utcnow() - timedelta(days=2))
    first, second, third = (make_mailbox(mailbox_type="pushkind", push_state={"subscription": "s-1"},
                                         push_expires_at=isoformat(utcnow() + timedelta(hours=40)),
                                         push_renewed_at=long_ago) for _ in range(3))
    calls = []

    def meanwhile():
        calls.append(1)
        if len(calls) == 1:
            for box in (first, second, third):
                Mailbox(box.tenant_id, box.mailbox_id).update(actions=[Mailbox.push_renewed_at.set(
                    isoformat(utcnow()))] if box is not third else [Mailbox.status.set("disabled")])

    push_kind(lambda: PushingProvider(on_call=meanwhile))
    counts = renewer.run()
    assert len(calls) == 1 and counts["push_renewed"] == 1


def test_the_retention_budget_is_not_spent_on_the_same_mailboxes_every_run(aws, monkeypatch):
    """The run's deletion budget (`retention.PER_RUN`) went to the mailboxes first in the index every hour: after
    a tenant shortened its period, ten mailboxes with a long backlog took the whole budget for weeks and the
    mailboxes after them were never swept."""
    from chalicelib.erasure import retention
    boxes = [make_mailbox("tnt_ret") for _ in range(12)]
    monkeypatch.setattr(retention, "retention_days", lambda tenant_id: 30)
    swept: set[str] = set()

    def backlog(mailbox, days, limit, now=None):            # every mailbox has more than it may delete
        swept.add(mailbox.mailbox_id)
        return {"messages": limit}

    monkeypatch.setattr(retention, "sweep_mailbox", backlog)
    assert retention.PER_RUN // retention.PER_MAILBOX == 10
    hour = 3600 * int(time.time() // 3600)
    for run in range(3):                                     # three hourly runs
        renewer.run(now=hour + run * 3600 + 5)
    assert swept == {box.mailbox_id for box in boxes}


# --- the check function and its Lambda timeout ------------------------------------------------------------------

def test_a_slow_idle_check_is_forwarded_before_the_check_function_times_out(aws, monkeypatch):
    """The records of a check batch share one invocation (120 s): a mail server answering each command just
    inside the 30 s socket timeout kept its check running past it, and the timed-out invocation failed every
    record of the batch — each redelivery raising their receive counts toward the DLQ. The check now gives up
    asking at its deadline and forwards the job (the worker, with its own 300 s, syncs in full)."""
    from chalicelib.sync import check
    from chalicelib.sync.enqueue import SyncJob
    from tests.unit.test_idle_check import Factory, synced
    provider = FakeProvider({"inbox": 1, "sent": 1, "archive": 1})
    mailbox = synced(provider)
    clock = Clock(timeout=check.CHECK_MARGIN_SECONDS + 40)
    provider.before_changes = lambda folder: clock.tick(35)          # each folder's answer takes 35 s
    sent = []
    monkeypatch.setattr(check, "send_job", sent.append)
    outcome = check.check_job(SyncJob(mailbox.tenant_id, mailbox.mailbox_id, "schedule"), Factory(provider),
                              deadline=clock.end - check.CHECK_MARGIN_SECONDS, clock=clock)
    assert outcome == "forwarded" and len(provider.changes_calls) - 3 <= 2    # 3: the first sync's
    assert clock.now < clock.end and provider.closed
    assert [(job.reason, job.checked, job.check_error) for job in sent] == [("schedule", True, None)]


def test_the_check_function_derives_each_records_deadline_from_the_lambda_context(aws, monkeypatch):
    from chalicelib.sync import check
    from tests.sync_helpers import FakeContext, job_event
    from tests.unit.test_idle_check import Factory, synced
    provider = FakeProvider({"inbox": 1, "sent": 0})
    mailbox = synced(provider)
    sent = []
    monkeypatch.setattr(check, "send_job", sent.append)
    asked = len(provider.changes_calls)
    event = job_event((mailbox.tenant_id, mailbox.mailbox_id), reason="schedule")
    assert check.handle_batch(event, FakeContext(check.CHECK_MARGIN_SECONDS - 1), provider_factory=Factory(
        provider)) == {"batchItemFailures": []}
    assert len(provider.changes_calls) == asked and len(sent) == 1            # no time to ask: forwarded
    assert check.handle_batch(event, FakeContext(120), provider_factory=Factory(provider)) == \
        {"batchItemFailures": []}
    assert len(provider.changes_calls) == asked + 2 and len(sent) == 1        # time enough: idle, not forwarded


def test_the_workers_own_idle_check_keeps_to_the_records_time_too(aws):
    """Without a check queue the worker runs the idle check itself; a record that starts with almost no time left
    asked the provider anyway (up to a socket timeout per folder) before checkpointing."""
    from chalicelib.sync import worker
    from tests.sync_helpers import FakeContext, job_event
    from tests.unit.test_idle_check import Factory, synced
    provider = FakeProvider({"inbox": 1, "sent": 0})
    mailbox = synced(provider)
    asked = len(provider.changes_calls)
    event = job_event((mailbox.tenant_id, mailbox.mailbox_id), reason="schedule")
    assert worker.handle_batch(event, FakeContext(5), provider_factory=Factory(provider)) == {"batchItemFailures": []}
    assert len(provider.changes_calls) == asked
    assert [q["body"]["reason"] for q in drain(aws["sync_queue_url"])] == ["continue"]


def test_lease_contention_is_retried_after_its_short_delay_not_the_visibility_timeout(aws, monkeypatch):
    """`RetryLater("lease contention", 5)` failed the record without setting its visibility, so SQS redelivered
    it after the queue's visibility timeout (1,800 s) instead of seconds."""
    from chalicelib import aws as aws_clients
    from chalicelib.sync import errors, worker
    from tests.sync_helpers import FakeContext, receive_event
    from chalicelib.sync.enqueue import enqueue_sync
    mailbox = make_mailbox()
    monkeypatch.setattr(lease, "acquire", lambda tenant_id, mailbox_id: None)       # lost every time ...
    monkeypatch.setattr(lease, "flag_follow_up", lambda tenant_id, mailbox_id: False)   # ... and lapsed again
    changed = []
    real = aws_clients.sqs()

    class Recording:
        def change_message_visibility(self, **kwargs):
            changed.append(kwargs["VisibilityTimeout"])
            return real.change_message_visibility(**kwargs)

        def __getattr__(self, name):
            return getattr(real, name)

    monkeypatch.setattr(errors.aws, "sqs", lambda: Recording())
    enqueue_sync(mailbox.tenant_id, mailbox.mailbox_id, "push")
    event = receive_event(aws["sync_queue_url"], 1)
    result = worker.handle_batch(event, FakeContext(), provider_factory=lambda m: FakeProvider())
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert changed == [5]
