"""Outlook sync through the one engine against the fake Microsoft Graph, via real MSAL and requests."""
from __future__ import annotations

import time

import boto3
import pytest

from chalicelib.credentials.store import CredentialStore
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.providers.base import ErrorCode, MessageRef, ProviderError, ThreadHint
from chalicelib.providers.kinds import provider_for
from chalicelib.sync.engine import SyncOptions, sync_mailbox
from tests.graph_helpers import ADDRESS, outlook_mailbox, raw_mail
from chalicelib.sync.worker import handle_batch
from tests.sync_helpers import FakeContext, cursor_field, job_event, reload

pytestmark = pytest.mark.usefixtures("aws")


def provider(mailbox, sleeps=None):
    mailbox = reload(mailbox)
    built = provider_for(mailbox, CredentialStore(mailbox.tenant_id, mailbox.mailbox_id).decode(mailbox))
    if sleeps is not None:
        built.client.sleep = sleeps.append
    return built


def sync(mailbox, page_size: int = 100):
    with provider(mailbox) as graph:
        return sync_mailbox(reload(mailbox), graph, time.monotonic() + 60, options=SyncOptions(page_size=page_size))


def stored(mailbox) -> dict[str, str]:
    return {m.provider_id: m.folder for m in Message.by_mailbox.query(mailbox.mailbox_id)}


def test_initial_sync_pages_through_both_folders_from_import_since(fake_ms):
    """Guards against: the first round ignoring import_since, losing nextLink pages or the sent folder."""
    for n in range(5):
        fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(n))
    old = fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(99, subject="Old"))
    fake_ms.mail.user(ADDRESS).messages[old].received = "2026-01-01T00:00:00Z"
    sent = fake_ms.mail.add_message(ADDRESS, "sentitems", raw_mail(50, sender=ADDRESS))
    mailbox = outlook_mailbox(fake_ms)
    result = sync(mailbox, page_size=2)
    assert result.counts.imported == 6 and result.counts.pages == 4
    messages = stored(mailbox)
    assert old not in messages and messages[sent] == "sent"
    assert fake_ms.missing_immutable_id == 0
    cursor = cursor_field(reload(mailbox), "inbox")
    assert cursor.startswith("d https://") and "$deltatoken=" in cursor


def test_idle_sync_costs_one_request_per_folder(fake_ms):
    """Guards against: an idle sync re-listing folders or calling Graph more than once per folder."""
    fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(1))
    mailbox = outlook_mailbox(fake_ms)
    sync(mailbox)
    before = len(fake_ms.requests_for(ADDRESS))
    result = sync(mailbox)
    calls = fake_ms.requests_for(ADDRESS)[before:]
    assert result.counts.imported == 0
    assert [path for _, path in calls] == ["/me/mailFolders/inbox/messages/delta",
                                          "/me/mailFolders/sentitems/messages/delta"]


def test_incremental_round_fetches_only_unknown_messages_and_marks_removals(fake_ms):
    """Guards against: delta re-listings (a read flag changed) refetched, or @removed entries ignored."""
    first = fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(1))
    gone = fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(2))
    mailbox = outlook_mailbox(fake_ms)
    sync(mailbox)
    fake_ms.mail.touch_message(ADDRESS, first)
    fake_ms.mail.remove_message(ADDRESS, gone)
    arrived = fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(3))
    graph = provider(mailbox)
    change_set = graph.changes("inbox", cursor_field(reload(mailbox), "inbox"), since=None, page_size=50)
    assert change_set.new == ()
    assert {ref.provider_id for ref in change_set.changed} == {first, arrived}
    assert change_set.removed == (gone,) and not change_set.has_more
    assert change_set.next_cursor.startswith("d ")
    before = len(fake_ms.requests_for(ADDRESS, "/$value"))
    result = sync(mailbox)
    assert (result.counts.removed, result.counts.imported, result.counts.known) == (1, 1, 1)
    assert fake_ms.requests_for(ADDRESS, "/$value")[before:] == [("GET", f"/me/messages/{arrived}/$value")]
    assert arrived in stored(mailbox)
    assert Message.get(next(m.message_id for m in Message.by_mailbox.query(mailbox.mailbox_id)
                            if m.provider_id == gone)).removed_at_source


def test_gone_sync_state_resyncs_without_duplicates(fake_ms):
    """Guards against: a 410 syncStateNotFound failing the mailbox or duplicating messages on resync."""
    for n in range(3):
        fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(n))
    mailbox = outlook_mailbox(fake_ms)
    sync(mailbox)
    fake_ms.mail.drop_sync_state(ADDRESS, "inbox")
    graph = provider(mailbox)
    with pytest.raises(ProviderError) as caught:
        graph.changes("inbox", cursor_field(reload(mailbox), "inbox"), since=None, page_size=10)
    assert caught.value.code == ErrorCode.CURSOR_INVALID
    result = sync(mailbox)
    assert result.resynced_folders == ["inbox"] and result.counts.imported == 0
    assert len(stored(mailbox)) == 3


def test_throttling_honours_retry_after_with_the_injected_sleep(fake_ms):
    """Guards against: ignoring Retry-After (hammering a throttled mailbox) or failing on one 429/503."""
    fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(1))
    mailbox = outlook_mailbox(fake_ms)
    fake_ms.throttle(status=429, retry_after=7, path="/delta")
    fake_ms.throttle(status=503, retry_after=3, path="/delta")
    sleeps: list[float] = []
    graph = provider(mailbox, sleeps)
    change_set = graph.changes("inbox", None, since=__import__("datetime").date(2026, 11, 20), page_size=10)
    assert len(change_set.new) == 1 and sleeps == [7.0, 3.0]
    fake_ms.throttle(status=429, retry_after=600, path="/delta")
    with pytest.raises(ProviderError) as caught:
        graph.changes("inbox", None, since=__import__("datetime").date(2026, 11, 20), page_size=10)
    assert caught.value.code == ErrorCode.THROTTLED and caught.value.retry_after == 600.0
    assert sleeps == [7.0, 3.0]      # a long wait is the engine's (re-queue), not a blocked worker


def test_never_more_than_four_concurrent_requests_per_mailbox(fake_ms):
    """Guards against: unbounded parallel fetches tripping Outlook's 4-concurrent-requests limit."""
    ids = [fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(n)) for n in range(12)]
    mailbox = outlook_mailbox(fake_ms)
    fake_ms.latency = 0.05
    graph = provider(mailbox)
    fetched = list(graph.fetch([MessageRef("inbox", i) for i in ids] * 2, max_bytes=10_000))
    assert len(fetched) == 24 and all(f.raw for f in fetched)
    assert fake_ms.max_concurrency[ADDRESS] == 4


def test_fetch_marks_a_vanished_message_and_skips_oversize(fake_ms):
    """Guards against: one deleted message failing a whole page, or over-limit MIME being stored."""
    kept = fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(1))
    mailbox = outlook_mailbox(fake_ms)
    graph = provider(mailbox)
    out = list(graph.fetch([MessageRef("inbox", kept), MessageRef("inbox", "AAkALgGone")], max_bytes=10_000))
    assert out[0].raw == raw_mail(1) and out[1].vanished
    assert list(graph.fetch([MessageRef("inbox", kept)], max_bytes=10))[0].skipped_reason


def test_batch_holds_at_most_twenty_requests(fake_ms):
    """Guards against: sending a $batch Graph rejects (more than 20 sub-requests)."""
    ids = [fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(n)) for n in range(3)]
    graph = provider(outlook_mailbox(fake_ms))
    answers = graph.client.batch([{"id": str(i), "method": "GET", "url": f"/me/messages/{m}/$value"}
                                  for i, m in enumerate(ids)])
    assert answers["0"]["status"] == 200 and answers["2"]["body"]
    with pytest.raises(ValueError):
        graph.client.batch([{"id": str(i), "method": "GET", "url": "/me"} for i in range(21)])


def test_send_uses_sendmail_and_reply_with_mime(fake_ms):
    """Guards against: sending through createReply (needs Mail.ReadWrite) or losing envelope recipients."""
    original = fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(1))
    graph = provider(outlook_mailbox(fake_ms))
    raw = f"From: {ADDRESS}\r\nTo: jan@acme.example\r\nSubject: Offer\r\n\r\nHi\r\n".encode()
    assert graph.send(raw, sender=ADDRESS, recipients=["jan@acme.example", "boss@acme.example"]).provider_message_id \
        is None
    graph.send(raw, sender=ADDRESS, recipients=["jan@acme.example"],
               thread=ThreadHint(mode="reply", provider_message_id=original))
    sent = fake_ms.mail.user(ADDRESS).sent
    assert [s["action"] for s in sent] == ["sendMail", "reply"]
    assert b"Bcc: boss@acme.example" in sent[0]["raw"] and sent[1]["message_id"] == original
    assert sent[1]["raw"] == raw


def test_worker_requeues_a_throttled_mailbox_and_marks_a_revoked_one(aws, fake_ms):
    """Guards against: Graph throttling dead-lettering a mailbox, or a revoked grant retried forever."""
    mailbox = outlook_mailbox(fake_ms)
    fake_ms.throttle(status=429, retry_after=120, path="/delta")
    assert handle_batch(job_event((mailbox.tenant_id, mailbox.mailbox_id)), FakeContext()) == \
        {"batchItemFailures": []}
    throttled = reload(mailbox)
    assert throttled.sync_stage == "throttled" and throttled.not_before > time.time() + 60
    attributes = boto3.client("sqs").get_queue_attributes(QueueUrl=aws["sync_queue_url"],
                                                          AttributeNames=["ApproximateNumberOfMessagesDelayed"])
    assert attributes["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"     # a delayed re-queue
    throttled.update(actions=[Mailbox.not_before.remove()])          # the throttling window has passed
    fake_ms.identity.revoke(ADDRESS)
    handle_batch(job_event((mailbox.tenant_id, mailbox.mailbox_id)), FakeContext())
    assert reload(mailbox).status == "auth_error"


def test_a_message_moved_out_and_back_is_restored_not_left_removed(fake_ms):
    """Guards against: a message moved out of the inbox and back (same immutable id, re-listed by the inbox
    delta as a known `changed` ref) staying `removed_at_source` — hidden from lists, threads and search."""
    kept = fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(1))
    mailbox = outlook_mailbox(fake_ms)
    sync(mailbox)
    fake_ms.mail.move_message(ADDRESS, kept, "archive")
    assert sync(mailbox).counts.removed == 1
    fake_ms.mail.move_message(ADDRESS, kept, "inbox")
    result = sync(mailbox)
    assert (result.counts.imported, result.counts.removed) == (0, 0)
    [message] = list(Message.by_mailbox.query(mailbox.mailbox_id))
    assert message.provider_id == kept and message.removed_at_source is None and message.conversation_id
    assert int(reload(mailbox).imported_count) == 1
    assert int(reload(mailbox).removed_count) == 0      # the count is of messages removed now, not of removals


def test_a_crash_between_restoring_and_rethreading_is_mended_by_the_replayed_page(fake_ms, monkeypatch):
    """Guards against: a worker that dies after clearing a message's removed mark but before it rejoins its
    conversation and the search index leaving it out of both for good (the replay finds it unmarked)."""
    from chalicelib.threads import derived
    kept = fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(1))
    mailbox = outlook_mailbox(fake_ms)
    sync(mailbox)
    fake_ms.mail.move_message(ADDRESS, kept, "archive")
    sync(mailbox)
    fake_ms.mail.move_message(ADDRESS, kept, "inbox")

    def dies(*args, **kwargs):
        raise RuntimeError("worker killed")

    remember = derived.remember
    monkeypatch.setattr(derived, "remember", dies)
    with pytest.raises(RuntimeError):
        sync(mailbox)
    [message] = list(Message.by_mailbox.query(mailbox.mailbox_id))
    assert message.removed_at_source is None and not message.conversation_id      # the gap
    monkeypatch.setattr(derived, "remember", remember)
    sync(mailbox)                                                                   # the page, replayed
    [message] = list(Message.by_mailbox.query(mailbox.mailbox_id))
    assert message.removed_at_source is None and message.conversation_id


def test_a_message_that_does_not_parse_is_stored_with_its_raw_bytes(fake_ms):
    """Guards against: a message whose MIME cannot be parsed being dropped (or failing the page) instead of
    stored byte-exact with its parse errors named."""
    from chalicelib.sync.store import load_raw
    broken = b"\xff\xfe\x00garbage without any header\r\n--\r\n\x00" + bytes(range(256))
    fake_ms.mail.add_message(ADDRESS, "inbox", broken)
    fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(2))
    mailbox = outlook_mailbox(fake_ms)
    assert sync(mailbox).counts.imported == 2
    [odd] = [m for m in Message.by_mailbox.query(mailbox.mailbox_id) if m.rfc_message_id is None]
    assert odd.parse_errors and load_raw(odd) == broken and odd.skipped_reason is None


def test_an_oversize_message_is_skipped_without_being_downloaded(fake_ms, monkeypatch):
    """Guards against: a message over MAILBRIDGE_MAX_MESSAGE_BYTES (Exchange takes up to 150 MB) read whole
    into the worker's memory — four at once — before being skipped (docs/operations.md: "not downloaded")."""
    import requests
    big = fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(1) + b"x" * 3_000_000)
    small = fake_ms.mail.add_message(ADDRESS, "inbox", raw_mail(2))
    graph = provider(outlook_mailbox(fake_ms))
    graph.client.tokens.access_token()                                 # warm: MSAL reads its own answers
    monkeypatch.setattr(requests.Response, "content", property(lambda self: pytest.fail("body read whole")))
    out = list(graph.fetch([MessageRef("inbox", big), MessageRef("inbox", small)], max_bytes=1_000_000))
    assert out[0].raw is None and out[0].skipped_reason.startswith("size 3000")
    assert out[1].raw == raw_mail(2)
