"""Gmail faults end to end: the worker on the sync queue (a DLQ after 3 receives, `tests/fault_queue.py`)
syncing a mailbox through the real Gmail provider while the fake Google answers 404 (history too old),
403 (rate limits vs. forbidden), 429, 500 on `messages.get` — as per-part errors inside a 200 batch — and on the
batch endpoint, and `invalid_grant` on token refresh. Each run must end in the state `sync/errors.py` and
docs/api.md document, with every message stored once, one `message.created` each and an exact `imported`
count; throttling is re-queued with a delay and never fails a record, so it never reaches the DLQ.
(Provider-level translation is in tests/unit/test_gmail_errors.py and tests/integration/test_gmail_sync.py.)"""
from __future__ import annotations

import pytest

from chalicelib.models.message import Message
from chalicelib.notify import events
from chalicelib.providers.gmail.errors import DEFAULT_THROTTLE_SECONDS
from tests.fault_queue import MAX_RECEIVE_COUNT, SyncQueue, assert_exactly, assert_healthy
from tests.gmail_fixtures import EMAIL, days_ago, mail, make_gmail_mailbox
from tests.sync_helpers import reload


@pytest.fixture
def world(aws, google, monkeypatch):
    queue = SyncQueue(aws, monkeypatch)
    mailbox = make_gmail_mailbox(google)
    return queue, mailbox


def deliver(google, numbers) -> set[str]:
    for n in numbers:
        google.deliver(EMAIL, mail(n), received=days_ago(1))
    return {f"gmail-{n}@acme.example" for n in numbers}


def test_history_too_old_404_resyncs_the_labels_without_duplicates(world, google):
    """Guards against: a 404 on history.list (startHistoryId older than Google keeps) failing the mailbox or
    re-importing what is already stored, instead of a bounded full resync."""
    queue, mailbox = world
    expected = deliver(google, range(1, 4))
    queue.send(mailbox)
    queue.run_until_quiet()
    assert_exactly(mailbox, expected)
    expected |= deliver(google, range(4, 6))
    google.forget_history(EMAIL)
    google.calls.clear()
    queue.send(mailbox)
    queue.run_until_quiet()
    assert google.calls["messages.list"] >= 2                 # the labels were listed again from import_since
    assert_exactly(mailbox, expected)
    assert_healthy(queue, mailbox)
    assert queue.failures == 0


@pytest.mark.parametrize("endpoint,status,reason,retry_after,delay", [
    ("messages.list", 429, None, 120, 120),
    ("messages.list", 403, "rateLimitExceeded", None, int(DEFAULT_THROTTLE_SECONDS)),
    ("history.list", 403, "userRateLimitExceeded", 300, 300),
    ("messages.get", 429, None, 60, 60),                        # a throttled part inside a 200 batch
])
def test_rate_limits_requeue_with_a_delay_and_never_reach_the_dlq(world, google, endpoint, status, reason,
                                                                  retry_after, delay):
    """Guards against: a rate limit (429, 403 rate reasons) failing the record toward the DLQ, being slept
    through inside Lambda, or losing/duplicating mail when the delayed job resumes."""
    queue, mailbox = world
    expected = deliver(google, range(1, 4))
    if endpoint == "history.list":                             # an incremental sync is throttled
        queue.send(mailbox)
        queue.run_until_quiet()
        expected |= deliver(google, range(4, 6))
    rounds = MAX_RECEIVE_COUNT + 2                              # throttled more often than maxReceiveCount
    google.fail(endpoint, status, reason=reason, retry_after=retry_after, times=rounds)
    queue.send(mailbox)
    queue.run()
    throttled = reload(mailbox)
    assert throttled.sync_stage == "throttled" and throttled.last_error["code"] == "throttled"
    assert throttled.not_before and queue.delays == [delay]
    queue.run_until_quiet(rounds=rounds + 2)
    parts = 3 if endpoint == "messages.get" else 1               # a batch's parts each take one injected 429
    assert queue.delays == [delay] * -(-rounds // parts) and queue.failures == 0
    assert all(s <= 10 for s in queue.sleeps)                  # no long wait inside the worker
    assert_exactly(mailbox, expected)
    assert_healthy(queue, mailbox)


@pytest.mark.parametrize("reason", ["insufficientPermissions", "forbidden"])
def test_forbidden_403_is_auth_error_not_a_retry(world, google, reason):
    """Guards against: a 403 that is not a rate limit being retried (a storm toward the DLQ) or throttled,
    instead of turning the mailbox auth_error with a `mailbox.status_changed` event."""
    queue, mailbox = world
    deliver(google, range(1, 3))
    google.fail("messages.list", 403, reason=reason, times=5)
    queue.send(mailbox)
    queue.run_until_quiet()
    box = reload(mailbox)
    assert (box.status, box.sync_stage, box.last_error["code"]) == ("auth_error", "error", "auth_revoked")
    assert [e.payload["status"] for e in events.list_events(box.tenant_id, "mailbox.status_changed")] == ["auth_error"]
    assert queue.failures == 0 and queue.delays == [] and queue.dead() == []


@pytest.mark.parametrize("endpoint", ["messages.get", "batch"])
def test_server_errors_retry_then_recover_without_duplicates(world, google, endpoint):
    """Guards against: a 500 — per part inside a 200 batch response, or on the batch endpoint — losing the
    messages of the batch, storing some twice on the retry, or failing the mailbox for good."""
    queue, mailbox = world
    expected = deliver(google, range(1, 6))
    attempts = 3                                                # the client's attempts: then the job fails once
    google.fail(endpoint, 500, reason="backendError", times=attempts * (len(expected) if endpoint == "messages.get"
                                                                         else 1))
    queue.send(mailbox)
    queue.once()
    assert queue.failures == 1                                  # redelivered by SQS (TEMPORARY), not dropped
    box = reload(mailbox)
    assert box.status == "active" and box.last_error["code"] == "temporary"
    assert google.calls["batch"] >= 3
    queue.run_until_quiet()
    assert_exactly(mailbox, expected)
    assert_healthy(queue, mailbox)
    assert queue.dead() == []


def test_one_failing_part_in_a_batch_is_retried_alone(world, google):
    """Guards against: one part's transient 500 inside a 200 batch re-fetching (or losing) the other parts."""
    queue, mailbox = world
    expected = deliver(google, range(1, 6))
    google.fail("messages.get:raw", 500, reason="backendError", times=1)
    queue.send(mailbox)
    queue.run_until_quiet()
    assert google.gets["raw"] == len(expected) + 1   # the failed part once more, the others once
    assert queue.failures == 0 and queue.sleeps                # retried inline after a short backoff
    assert_exactly(mailbox, expected)
    assert_healthy(queue, mailbox)


def test_a_batch_whose_parts_answer_404_429_and_500_keeps_the_others_and_drops_nothing(world, google):
    """Guards against: per-part failures inside one 200 batch (developers.google.com/gmail/api/guides/batch:
    each part is answered on its own) dropping or re-fetching the parts that succeeded, or a throttled part's
    Retry-After ignored; a part's 404 (the message deleted between list and get) is skipped visibly."""
    queue, mailbox = world
    ids = {f"gmail-{n}@acme.example": google.deliver(EMAIL, mail(n), received=days_ago(1)) for n in range(1, 7)}
    google.fail("messages.get:raw", 404, reason="notFound", times=1)
    google.fail("messages.get:raw", 429, retry_after=2, times=1)
    google.fail("messages.get:raw", 500, reason="backendError", times=1)
    queue.send(mailbox)
    queue.once()
    assert google.gets["raw"] == len(ids) + 2       # the 429 and 500 parts once more, alone
    assert 2 in queue.sleeps and queue.failures == 0               # the part's Retry-After, waited inline
    stored = {m.rfc_message_id for m in Message.by_mailbox.query(mailbox.mailbox_id)}
    [gone] = set(ids) - stored                                     # only the 404 part is missing …
    assert reload(mailbox).last_error["code"] == "not_found"       # … and it shows
    google.delete(EMAIL, ids[gone])                                # as a 404 says: it was deleted
    queue.send(mailbox)
    queue.run_until_quiet()
    assert_exactly(mailbox, set(ids) - {gone})
    assert_healthy(queue, mailbox)


def test_persistent_5xx_dead_letters_after_max_receive_count_with_the_error_visible(world, google):
    """Guards against: a mailbox whose Gmail keeps answering 500 being retried forever (or silently dropped):
    after maxReceiveCount its job sits in the DLQ and the mailbox shows `retrying` with the error."""
    queue, mailbox = world
    deliver(google, range(1, 3))
    google.fail("messages.list", 500, reason="backendError", times=3 * (MAX_RECEIVE_COUNT + 1))
    queue.send(mailbox)
    queue.run()
    assert queue.failures == MAX_RECEIVE_COUNT
    assert [job["mailbox_id"] for job in queue.dead()] == [mailbox.mailbox_id]
    box = reload(mailbox)
    assert (box.status, box.sync_stage, box.last_error["code"]) == ("active", "retrying", "temporary")


def test_invalid_grant_on_refresh_is_auth_error_once(world, google):
    """Guards against: a revoked/expired refresh token (`invalid_grant`, RFC 6749 §5.2) retried until the DLQ,
    or announced more than once, instead of one auth_error with its event."""
    queue, mailbox = world
    deliver(google, range(1, 3))
    google.revoke(EMAIL)
    for _ in range(2):                                          # the schedule keeps sending jobs
        queue.send(mailbox)
        queue.run_until_quiet()
    box = reload(mailbox)
    assert (box.status, box.last_error["code"]) == ("auth_error", "auth_revoked")
    assert len(events.list_events(box.tenant_id, "mailbox.status_changed")) == 1
    assert queue.failures == 0 and queue.dead() == []
    assert list(Message.by_mailbox.query(mailbox.mailbox_id)) == []
    assert google.calls["token"] == 1                            # no retry until the owner consents again


def test_token_endpoint_5xx_is_temporary_not_auth_error(world, google):
    """Guards against: an outage of Google's token endpoint being taken for a revoked grant (auth_error)."""
    queue, mailbox = world
    expected = deliver(google, range(1, 3))
    google.fail("token", 503, times=1)
    queue.send(mailbox)
    queue.run_until_quiet()
    assert reload(mailbox).status == "active"
    assert_exactly(mailbox, expected)
    assert_healthy(queue, mailbox)
