"""Microsoft Graph faults end to end: the worker on the sync queue (a DLQ after 3 receives,
`tests/fault_queue.py`) syncing an Outlook mailbox through the real Graph provider (MSAL + requests) while the
fake Microsoft answers 410 (delta token gone), 429 and 503 with Retry-After, 500 on a message's `$value`, and
`invalid_grant` on refresh — also from an MSAL cache whose access token has expired. Each run must end in
the state `sync/errors.py` and docs/api.md document, with every message stored once, one `message.created`
each and an exact `imported` count; throttling is re-queued with a delay, never fails a record, and never
reaches the DLQ. (Error translation: tests/unit/test_graph_errors.py; provider level:
tests/integration/test_graph_sync.py, test_graph_tokens.py.)"""
from __future__ import annotations

import json
import time

import pytest

from chalicelib.credentials.store import CredentialStore
from chalicelib.credentials.tokens import forget_warm_tokens
from chalicelib.models.message import Message
from chalicelib.notify import events
from chalicelib.providers.graph.tokens import CACHE_KEY
from tests.fault_queue import MAX_RECEIVE_COUNT, SyncQueue, assert_exactly, assert_healthy
from tests.graph_helpers import ADDRESS, consent_cache, outlook_mailbox, raw_mail
from tests.sync_helpers import reload


@pytest.fixture
def world(aws, fake_ms, monkeypatch):
    queue = SyncQueue(aws, monkeypatch)
    mailbox = outlook_mailbox(fake_ms, "tnt_graph_faults", import_since="2026-11-20")
    return queue, reload(mailbox)


def deliver(fake_ms, numbers, folder: str = "inbox") -> set[str]:
    for n in numbers:
        fake_ms.mail.add_message(ADDRESS, folder, raw_mail(n, subject=f"Fault {folder}"))
    return {f"graph-{n}-Fault{folder}@acme.example" for n in numbers}


def test_delta_token_gone_410_resyncs_without_duplicates(world, fake_ms):
    """Guards against: a 410 syncStateNotFound on a stored delta link failing the mailbox or re-importing
    stored messages, instead of a bounded resync from import_since."""
    queue, mailbox = world
    expected = deliver(fake_ms, range(3)) | deliver(fake_ms, range(2), "sentitems")
    queue.send(mailbox)
    queue.run_until_quiet()
    assert_exactly(mailbox, expected)
    expected |= deliver(fake_ms, range(3, 5))
    fake_ms.mail.drop_sync_state(ADDRESS, "inbox")
    queue.send(mailbox)
    queue.run_until_quiet()
    assert_exactly(mailbox, expected)
    assert_healthy(queue, mailbox)
    assert queue.failures == 0


@pytest.mark.parametrize("status", [429, 503])
def test_long_retry_after_requeues_with_the_delay_and_never_reaches_the_dlq(world, fake_ms, status):
    """Guards against: 429/503 with a long Retry-After being slept through in Lambda or failing the record
    (toward the DLQ after maxReceiveCount), or losing mail when the delayed job resumes."""
    queue, mailbox = world
    expected = deliver(fake_ms, range(4))
    rounds = MAX_RECEIVE_COUNT + 2
    fake_ms.throttle(status=status, retry_after=240, path="/delta", times=rounds)
    queue.send(mailbox)
    queue.run()
    throttled = reload(mailbox)
    assert throttled.sync_stage == "throttled" and throttled.last_error["code"] == "throttled"
    assert throttled.not_before > time.time() + 200 and queue.delays == [240]
    queue.run_until_quiet(rounds=rounds + 2)
    assert queue.delays == [240] * rounds and queue.failures == 0 and queue.sleeps == []
    assert_exactly(mailbox, expected)
    assert_healthy(queue, mailbox)


def test_short_retry_after_is_waited_inline_once(world, fake_ms):
    """Guards against: a short 429/503 Retry-After costing a re-queue (or ignored: hammering Graph)."""
    queue, mailbox = world
    expected = deliver(fake_ms, range(3))
    fake_ms.throttle(status=429, retry_after=2, path="/delta")
    fake_ms.throttle(status=503, retry_after=3, path="/$value")
    queue.send(mailbox)
    queue.run_until_quiet()
    assert sorted(queue.sleeps) == [2.0, 3.0] and queue.delays == [] and queue.failures == 0
    assert_exactly(mailbox, expected)
    assert_healthy(queue, mailbox)


def test_503_without_retry_after_is_throttled_not_failed(world, fake_ms):
    """Guards against: a bare 503 (no Retry-After) counted as a failure toward the DLQ."""
    queue, mailbox = world
    expected = deliver(fake_ms, range(2))
    fake_ms.inject(503, {"error": {"code": "ServiceUnavailable", "message": "busy"}}, path="/delta", times=6)
    queue.send(mailbox)
    queue.run_until_quiet()
    assert queue.failures == 0 and queue.dead() == [] and queue.delays
    assert_exactly(mailbox, expected)
    assert_healthy(queue, mailbox)


def test_500_on_a_message_retries_and_stores_every_message_once(world, fake_ms):
    """Guards against: a 500 while fetching one message losing it or storing its siblings twice on the retry."""
    queue, mailbox = world
    expected = deliver(fake_ms, range(6))
    fake_ms.inject(500, {"error": {"code": "InternalServerError", "message": "oops"}}, path="/$value")
    queue.send(mailbox)
    queue.once()
    assert queue.failures == 1
    box = reload(mailbox)
    assert (box.status, box.sync_stage, box.last_error["code"]) == ("active", "retrying", "temporary")
    queue.run_until_quiet()
    assert_exactly(mailbox, expected)
    assert_healthy(queue, mailbox)


def test_revoked_grant_invalid_grant_is_auth_error_once(world, fake_ms):
    """Guards against: a revoked grant (Graph 401, then `invalid_grant` on refresh) retried toward the DLQ or
    announced more than once, instead of one auth_error with its `mailbox.status_changed` event."""
    queue, mailbox = world
    deliver(fake_ms, range(2))
    fake_ms.identity.revoke(ADDRESS)
    for _ in range(2):
        queue.send(mailbox)
        queue.run_until_quiet()
    box = reload(mailbox)
    assert (box.status, box.sync_stage, box.last_error["code"]) == ("auth_error", "error", "auth_revoked")
    assert len(events.list_events(box.tenant_id, "mailbox.status_changed")) == 1
    assert fake_ms.identity.token_requests[-1] == "refresh_token"
    assert queue.failures == 0 and queue.dead() == []
    assert list(Message.by_mailbox.query(mailbox.mailbox_id)) == []


def expire_cached_access_tokens(mailbox) -> None:
    """An hour without a sync: the process's access token has expired, and so has any access token the stored
    MSAL cache holds (a cache stored before access tokens were left out of it)."""
    forget_warm_tokens()
    store = CredentialStore(mailbox.tenant_id, mailbox.mailbox_id)
    credentials = store.load()
    cache = json.loads(credentials.secrets[CACHE_KEY])
    if cache.get("AccessToken"):
        past = str(int(time.time()) - 60)
        for entry in cache["AccessToken"].values():
            entry["expires_on"] = entry["extended_expires_on"] = past
        store.save({**credentials.secrets, CACHE_KEY: json.dumps(cache)}, credentials.version)


@pytest.mark.parametrize("stored", ["as stored now", "whole, with its access token"])
def test_an_expired_msal_cache_refreshes_and_the_stored_refresh_token_keeps_working(world, fake_ms, stored):
    """Guards against: a cache whose access token has expired failing the sync, on the first refresh or on a
    later one from the same stored cache (its refresh token is written back only every 12 h) — also a cache
    stored before access tokens were left out of it (MSAL's whole serialization)."""
    queue, mailbox = world
    if stored.startswith("whole"):
        store = CredentialStore(mailbox.tenant_id, mailbox.mailbox_id)
        credentials = store.load()
        store.save({**credentials.secrets, CACHE_KEY: consent_cache(fake_ms, whole=True)}, credentials.version)
    expected = deliver(fake_ms, range(2))
    expire_cached_access_tokens(mailbox)
    queue.send(mailbox)
    queue.run_until_quiet()
    assert fake_ms.identity.token_requests[-1] == "refresh_token"
    expected |= deliver(fake_ms, range(2, 4))
    expire_cached_access_tokens(mailbox)
    queue.send(mailbox)
    queue.run_until_quiet()
    assert fake_ms.identity.token_requests.count("refresh_token") == 2
    assert_exactly(mailbox, expected)
    assert_healthy(queue, mailbox)


def test_an_expired_msal_cache_whose_refresh_token_expired_is_auth_error(world, fake_ms):
    """Guards against: an expired cache whose refresh token has also expired (AADSTS700082 `invalid_grant`)
    being retried until the DLQ instead of asking the user to consent again (auth_error + event)."""
    queue, mailbox = world
    deliver(fake_ms, range(2))
    expire_cached_access_tokens(mailbox)
    fake_ms.identity.refresh_tokens.clear()                    # the refresh token's lifetime is over
    queue.send(mailbox)
    queue.run_until_quiet()
    box = reload(mailbox)
    assert (box.status, box.last_error["code"]) == ("auth_error", "auth_revoked")
    assert "consent" in box.status_reason.lower() or "invalid_grant" in box.status_reason
    assert [e.payload["status"] for e in events.list_events(box.tenant_id, "mailbox.status_changed")] == \
        ["auth_error"]
    assert queue.failures == 0 and queue.dead() == []
