"""The check function (chalicelib/sync/check.py): scheduled jobs run the idle check in a small function and only
mailboxes with something to do reach the worker, checked once, with nothing lost."""
from __future__ import annotations

import datetime as dt
import json
import os

import boto3
import pytest

from chalicelib.config import get_settings, reset_settings
from chalicelib.models.mailbox import Mailbox
from chalicelib.providers.base import ErrorCode, ProviderError
from chalicelib.sync import check, enqueue, scheduler, worker
from chalicelib.timeutil import isoformat, utcnow
from tests.sync_helpers import (FakeContext, FakeProvider, cursor_field, drain, dynamodb_calls, receive_event,
                                reload)
from tests.unit.test_idle_check import WRITES, Factory, synced


@pytest.fixture
def check_queue(aws):
    url = boto3.client("sqs").create_queue(QueueName="mbtest-check")["QueueUrl"]
    os.environ["MAILBRIDGE_CHECK_QUEUE_URL"] = url
    reset_settings()
    yield url
    os.environ.pop("MAILBRIDGE_CHECK_QUEUE_URL", None)
    reset_settings()


def tick_and_check(factory) -> dict:
    """One scheduler tick, then the check function over what it enqueued (as its event source mapping would)."""
    scheduler.run_tick(jitter_seconds=0)
    event = receive_event(get_settings().check_queue_url, 10)
    assert event["Records"], "the tick enqueued nothing on the check queue"
    return check.handle_batch(event, FakeContext(), provider_factory=factory)


def forwarded(aws) -> list[dict]:
    return [m["body"] for m in drain(aws["sync_queue_url"])]


def run_worker(aws, factory) -> dict:
    return worker.handle_batch(receive_event(aws["sync_queue_url"], 10), FakeContext(), provider_factory=factory)


def test_scheduled_jobs_go_to_the_check_queue_and_an_idle_mailbox_never_reaches_the_worker(aws, check_queue):
    """Guards against idle ticks still running in (and being billed at) the 1.5 GB worker."""
    provider = FakeProvider({"inbox": 2, "sent": 0})
    mailbox = synced(provider)
    factory = Factory(provider)
    with dynamodb_calls() as calls:
        assert tick_and_check(factory)["batchItemFailures"] == []
    assert not set(calls) & WRITES, calls
    assert factory.built == 1 and provider.closed
    assert forwarded(aws) == []
    assert reload(mailbox).last_success_at == mailbox.last_success_at


def test_news_is_forwarded_checked_and_the_worker_syncs_it_without_asking_again(aws, check_queue):
    """Guards against a change found by the check being dropped, or checked a second time in the worker."""
    provider = FakeProvider({"inbox": 1, "sent": 0})
    mailbox = synced(provider)
    provider.add("inbox", 2)
    assert tick_and_check(Factory(provider))["batchItemFailures"] == []
    jobs = drain(aws["sync_queue_url"])
    assert [j["body"]["checked"] for j in jobs] == [True] and "check_error" not in jobs[0]["body"]
    boto3.client("sqs").send_message(QueueUrl=aws["sync_queue_url"], MessageBody=jobs[0]["message"]["Body"])
    provider.changes_calls.clear()
    factory = Factory(provider)
    assert run_worker(aws, factory)["batchItemFailures"] == []
    after = reload(mailbox)
    assert cursor_field(after, "inbox") == "1:3" and after.lease_owner is None
    assert factory.built == 1
    assert [folder for folder, _ in provider.changes_calls].count("inbox") == 1   # the engine's question only


def test_a_due_heartbeat_is_forwarded_without_asking_the_provider(aws, check_queue):
    """Guards against the check function opening a provider connection for a job it hands on anyway."""
    provider = FakeProvider({"inbox": 1, "sent": 0})
    mailbox = synced(provider)
    old = utcnow() - dt.timedelta(seconds=get_settings().idle_heartbeat_seconds + 60)
    mailbox.update(actions=[Mailbox.last_success_at.set(isoformat(old))])
    factory = Factory(provider)
    assert tick_and_check(factory)["batchItemFailures"] == []
    assert factory.built == 0
    assert [body["checked"] for body in forwarded(aws)] == [True]


def test_a_throttle_met_by_the_check_is_recorded_by_the_worker_without_asking_again(aws, check_queue):
    """Guards against a throttled provider being asked twice (check, then the worker's sync)."""
    provider = FakeProvider({"inbox": 1, "sent": 0})
    mailbox = synced(provider)
    provider.fail_on[("changes", "inbox")] = [ProviderError(ErrorCode.THROTTLED, "slow down", retry_after=120)]
    assert tick_and_check(Factory(provider))["batchItemFailures"] == []
    jobs = drain(aws["sync_queue_url"])
    error = jobs[0]["body"]["check_error"]
    assert error["code"] == "throttled" and error["retry_after"] == 120 and error["account"] == mailbox.updated_at
    boto3.client("sqs").send_message(QueueUrl=aws["sync_queue_url"], MessageBody=jobs[0]["message"]["Body"])
    factory = Factory(provider)
    assert run_worker(aws, factory)["batchItemFailures"] == []
    assert factory.built == 0
    after = reload(mailbox)
    assert after.not_before is not None and after.lease_owner is None


def test_a_check_error_for_a_since_changed_mailbox_runs_a_normal_sync(aws, check_queue):
    """Guards against an error the check met being recorded over credentials the user fixed meanwhile."""
    provider = FakeProvider({"inbox": 1, "sent": 0})
    mailbox = synced(provider)
    job = enqueue.SyncJob(mailbox.tenant_id, mailbox.mailbox_id, "schedule", checked=True,
                          check_error={"code": "auth_revoked", "detail": "bad password", "retry_after": None,
                                       "account": "2000-01-01T00:00:00Z"})
    enqueue.send_job(job)
    factory = Factory(provider)
    assert run_worker(aws, factory)["batchItemFailures"] == []
    assert factory.built == 1 and not reload(mailbox).last_error


def test_a_failed_forward_leaves_the_job_for_redelivery(aws, check_queue, monkeypatch):
    """Guards against a scheduled job lost when the sync queue refuses the forward (the record must fail)."""
    provider = FakeProvider({"inbox": 1, "sent": 0})
    synced(provider)
    provider.add("inbox", 1)

    def refuse(job):
        raise RuntimeError("SQS unavailable")
    monkeypatch.setattr(check, "send_job", refuse)
    scheduler.run_tick(jitter_seconds=0)
    event = receive_event(check_queue, 10)
    result = check.handle_batch(event, FakeContext(), provider_factory=Factory(provider))
    assert result["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]


def test_without_a_check_queue_scheduled_jobs_go_to_the_worker(aws):
    """Guards against stages without the check function losing their scheduled syncs."""
    provider = FakeProvider({"inbox": 1, "sent": 0})
    synced(provider)
    scheduler.run_tick(jitter_seconds=0)
    bodies = forwarded(aws)
    assert [(b["reason"], b.get("checked")) for b in bodies] == [("schedule", None)]


def test_the_checker_is_wired_to_the_check_queue_in_app_py():
    """Guards against the check function existing in code but never subscribed to its queue."""
    import app
    sources = {source.name: source for source in app.app.event_sources}
    assert sources["checker"].queue.endswith("-check")
    assert json.loads(open(".chalice/config.json").read())["stages"]["prod"]["lambda_functions"]["checker"][
        "lambda_memory_size"] == 256
