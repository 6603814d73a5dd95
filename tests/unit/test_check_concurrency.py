"""The check function checks the records of one SQS batch at once (chalicelib/sync/check.py): behaviour, not
timing — barriers that only concurrent records can pass, isolation of a failing record, log keys per record,
the concurrency bound, and the event loops Powertools runs the batch on."""
from __future__ import annotations

import asyncio
import contextvars
import threading
from collections import Counter

import pytest

from chalicelib.config import reset_settings
from chalicelib.logs import logger
from chalicelib.providers.graph.tokens import http_cache
from chalicelib.sync import check
from tests.log_capture import captured_lines
from tests.sync_helpers import FakeContext, FakeProvider, drain, job_event
from tests.unit.test_idle_check import Factory, synced

BARRIER_TIMEOUT = 10.0      # a batch run one record after another breaks the barrier instead of hanging


@pytest.fixture
def concurrency(monkeypatch):
    """Sets MAILBRIDGE_CHECK_CONCURRENCY for one test."""
    def set_to(value: int) -> None:
        monkeypatch.setenv("MAILBRIDGE_CHECK_CONCURRENCY", str(value))
        reset_settings()
    yield set_to
    monkeypatch.delenv("MAILBRIDGE_CHECK_CONCURRENCY", raising=False)
    reset_settings()


class Mailboxes:
    """`n` synced mailboxes, each with a provider of its own; `news` of them have a new message."""

    def __init__(self, n: int, news: int = 0):
        self.providers = {}
        self.boxes = []
        for index in range(n):
            provider = FakeProvider({"inbox": 1, "sent": 0})
            box = synced(provider)
            if index < news:
                provider.add("inbox", 1)
            self.providers[box.mailbox_id] = provider
            self.boxes.append(box)

    def event(self) -> dict:
        return job_event(*[(box.tenant_id, box.mailbox_id) for box in self.boxes], reason="schedule")


class Tracking:
    """A provider factory that counts the checks running at once (and waits at `barrier` when given one)."""

    def __init__(self, mailboxes: Mailboxes, barrier: threading.Barrier | None = None, fail: str | None = None):
        self.mailboxes, self.barrier, self.fail = mailboxes, barrier, fail
        self.lock = threading.Lock()
        self.running = self.most = 0
        self.order: list[str] = []

    def __call__(self, mailbox):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.order.append(mailbox.mailbox_id)
        try:
            if self.barrier is not None:
                self.barrier.wait(BARRIER_TIMEOUT)
            logger.info("provider built", extra={"built_for": mailbox.mailbox_id})
            if mailbox.mailbox_id == self.fail:
                raise RuntimeError("provider exploded")
            return Factory(self.mailboxes.providers[mailbox.mailbox_id])(mailbox)
        finally:
            with self.lock:
                self.running -= 1


def forwarded_mailboxes(aws) -> Counter:
    return Counter(m["body"]["mailbox_id"] for m in drain(aws["sync_queue_url"]))


def test_the_records_of_a_batch_are_checked_at_once(aws, concurrency):
    """Guards against the batch's waits running one after another (each billed): a barrier of all the records
    is passed only if every record's check is running at the same time."""
    concurrency(10)
    boxes = Mailboxes(4)
    factory = Tracking(boxes, threading.Barrier(4))
    assert check.handle_batch(boxes.event(), FakeContext(), provider_factory=factory) == {"batchItemFailures": []}
    assert factory.most == 4 and all(p.closed for p in boxes.providers.values())
    assert forwarded_mailboxes(aws) == Counter()


def test_a_concurrency_of_one_checks_the_records_one_after_another_in_order(aws, concurrency):
    """Guards against MAILBRIDGE_CHECK_CONCURRENCY=1 not restoring the sequential check."""
    concurrency(1)
    boxes = Mailboxes(3, news=1)
    factory = Tracking(boxes)
    assert check.handle_batch(boxes.event(), FakeContext(), provider_factory=factory) == {"batchItemFailures": []}
    assert factory.most == 1 and factory.order == [box.mailbox_id for box in boxes.boxes]
    assert forwarded_mailboxes(aws) == Counter({boxes.boxes[0].mailbox_id: 1})


def test_the_bound_is_respected_and_reached(aws, concurrency):
    """Guards against a batch opening more provider connections at once than configured (or fewer: a barrier
    of two must be passed by pairs of concurrent records)."""
    concurrency(2)
    boxes = Mailboxes(6)
    factory = Tracking(boxes, threading.Barrier(2))
    assert check.handle_batch(boxes.event(), FakeContext(), provider_factory=factory) == {"batchItemFailures": []}
    assert factory.most == 2 and len(factory.order) == 6


def test_a_failing_record_fails_alone_while_the_others_run_beside_it(aws, concurrency):
    """Guards against one record's failure failing (or re-forwarding) its concurrent neighbours, and against a
    malformed body failing instead of being dropped."""
    concurrency(10)
    boxes = Mailboxes(4, news=4)
    failing = boxes.boxes[1].mailbox_id
    factory = Tracking(boxes, threading.Barrier(4), fail=failing)
    event = boxes.event()
    malformed = dict(event["Records"][0], messageId="msg-malformed", body="{not json")
    event["Records"].append(malformed)
    result = check.handle_batch(event, FakeContext(), provider_factory=factory)
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    assert forwarded_mailboxes(aws) == Counter({box.mailbox_id: 1 for box in boxes.boxes if box.mailbox_id != failing})


def test_log_keys_of_one_record_never_label_another_records_lines(aws, concurrency):
    """Guards against per-record log keys (tenant, mailbox, provider) leaking between records checked at once,
    into the caller's lines, or into the next batch on the same reused threads."""
    concurrency(3)
    boxes = Mailboxes(3, news=1)

    def caller() -> dict:
        logger.thread_safe_append_keys(request_id="outer")
        factory = Tracking(boxes, threading.Barrier(3))
        assert check.handle_batch(boxes.event(), FakeContext(), provider_factory=factory)["batchItemFailures"] == []
        malformed = dict(boxes.event()["Records"][0], messageId="msg-malformed", body="[]")
        assert check.handle_batch({"Records": [malformed] * 3}, FakeContext(),
                                  provider_factory=factory)["batchItemFailures"] == []
        logger.info("after the batches")
        return dict(logger.thread_safe_get_current_keys())

    with captured_lines() as lines:
        outer_keys = contextvars.Context().run(caller)     # the caller's keys: none but its own (no other test's)
    built = [line for line in lines if line["message"] == "provider built"]
    assert sorted(line["built_for"] for line in built) == sorted(box.mailbox_id for box in boxes.boxes)
    for line in built:
        assert line["mailbox_id"] == line["built_for"] and line["provider"] == "imap"
        assert line["request_id"] == "outer"                      # the caller's keys reach the record's lines
    by_mailbox = {box.mailbox_id: box for box in boxes.boxes}
    outcomes = [line for line in lines if line["message"] == "scheduled check"]
    assert len(outcomes) == 3 and all(line["mailbox_id"] in by_mailbox for line in outcomes)
    assert Counter(line["outcome"] for line in outcomes) == Counter({"idle": 2, "forwarded": 1})
    assert [line["mailbox_id"] for line in outcomes if line["outcome"] == "forwarded"] == [boxes.boxes[0].mailbox_id]
    dropped = [line for line in lines if line["message"].startswith("discarding a malformed")]
    assert len(dropped) == 3 and not any("mailbox_id" in line or "provider" in line for line in dropped)
    after = [line for line in lines if line["message"] == "after the batches"]
    assert "mailbox_id" not in after[0] and after[0]["request_id"] == "outer"
    assert outer_keys == {"request_id": "outer"}


def in_new_thread(call):
    """`call()` on a fresh thread (no event loop set, none running); its result or its exception."""
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome["error"] = exc
    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def test_in_lambda_a_thread_without_a_loop_and_a_closed_loop_both_work(aws, concurrency, monkeypatch):
    """Guards against the synchronous Lambda handler failing for want of an event loop: Powertools (with
    LAMBDA_TASK_ROOT set) runs the batch on the thread's current loop, creating one when there is none, and a
    loop left closed must be replaced."""
    concurrency(10)
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    boxes = Mailboxes(2, news=1)

    def twice_then_closed():
        results = [check.handle_batch(boxes.event(), FakeContext(), provider_factory=Tracking(boxes))]
        loop = asyncio.get_event_loop_policy().get_event_loop()        # the one Powertools created and kept
        results.append(check.handle_batch(boxes.event(), FakeContext(), provider_factory=Tracking(boxes)))
        assert asyncio.get_event_loop_policy().get_event_loop() is loop
        loop.close()
        results.append(check.handle_batch(boxes.event(), FakeContext(), provider_factory=Tracking(boxes)))
        asyncio.get_event_loop_policy().get_event_loop().close()
        return results

    assert in_new_thread(twice_then_closed) == [{"batchItemFailures": []}] * 3
    assert forwarded_mailboxes(aws) == Counter({boxes.boxes[0].mailbox_id: 3})


@pytest.mark.parametrize("lambda_env", [False, True])
def test_a_caller_running_an_event_loop_can_still_call_the_handler(aws, concurrency, monkeypatch, lambda_env):
    """Guards against `run_until_complete`/`asyncio.run` refusing to run inside a thread whose loop is running
    (a synchronous call from async code, e.g. a local harness)."""
    concurrency(10)
    if lambda_env:
        monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    boxes = Mailboxes(2, news=2)

    async def caller():
        return check.handle_batch(boxes.event(), FakeContext(), provider_factory=Tracking(boxes, threading.Barrier(2)))

    assert in_new_thread(lambda: asyncio.run(caller())) == {"batchItemFailures": []}
    assert forwarded_mailboxes(aws) == Counter({box.mailbox_id: 1 for box in boxes.boxes})


def test_msal_http_cache_is_one_per_thread():
    """Guards against MSAL clients of several mailboxes sharing one HTTP cache from concurrent check threads (MSAL
    locks it per client while changing its expiry index in place)."""
    mine = http_cache()
    assert http_cache() is mine and in_new_thread(http_cache) is not mine
