"""Duplicate delivery: SQS is at-least-once, so every sync job may arrive 2–5 times, in any order, and two
workers may take the same mailbox at once. For each provider kind — IMAP on real Dovecot, Gmail on the fake
Google, Outlook on the fake Microsoft — each round's job for one mailbox is delivered 2–5 times, in batches
of random size and receive counts, with new mail arriving between rounds and one round run by two worker
threads at once; then
every follow-up job is run. Guards: 0 duplicated and 0 lost messages, exactly one `message.created` per
message, an exact `imported` count.

moto does not make DynamoDB conditional writes atomic across threads, so the two workers' AWS calls are
serialized (each call whole, as DynamoDB applies it); their provider I/O runs in parallel."""
from __future__ import annotations

import random
import threading
from datetime import datetime, timedelta, timezone

import botocore.client
import pytest

from chalicelib.models.message import Message
from chalicelib.notify import events
from chalicelib.security.crypto import encrypt_secrets
from chalicelib.sync import worker
from tests.gmail_fixtures import EMAIL, make_gmail_mailbox
from tests.graph_helpers import ADDRESS, outlook_mailbox
from tests.mailfactory import make_message
from tests.sync_helpers import FakeContext, counts_of, drain, job_event, make_mailbox, receive_event, reload

ROUNDS = 3
NEW_PER_ROUND = 3
RECENT = datetime.now(timezone.utc) - timedelta(days=1)


def raw(tag: str, n: int) -> bytes:
    return make_message(subject=f"dup {tag} {n}", message_id=f"<dup-{tag}-{n}@acme.example>", date=RECENT)


class ImapWorld:
    def __init__(self, dovecot):  # noqa: F811
        self.dovecot = dovecot
        self.user, password = dovecot.new_user()
        box = make_mailbox("tnt_dup_imap", import_since=(RECENT - timedelta(days=2)).date().isoformat(),
                           imap={"host": "127.0.0.1", "port": dovecot.port, "security": "none",
                                 "username": self.user, "login_method": "plain"})
        box.update(actions=[type(box).secret_ciphertext.set(
            encrypt_secrets(box.tenant_id, box.mailbox_id, {"password": password}))])
        self.mailbox = reload(box)

    def add(self, n: int) -> None:
        self.dovecot.append(self.user, "INBOX", raw("imap", n), date=RECENT)


class GmailWorld:
    def __init__(self, google):  # noqa: F811
        self.google = google
        self.mailbox = make_gmail_mailbox(google, "tnt_dup_gmail",
                                          import_since=(RECENT - timedelta(days=2)).date().isoformat())

    def add(self, n: int) -> None:
        self.google.deliver(EMAIL, raw("gmail", n), received=RECENT)


class OutlookWorld:
    def __init__(self, fake_ms):  # noqa: F811
        self.fake = fake_ms
        self.mailbox = outlook_mailbox(fake_ms, "tnt_dup_outlook",
                                       import_since=(RECENT - timedelta(days=2)).date().isoformat())

    def add(self, n: int) -> None:
        self.fake.mail.add_message(ADDRESS, "inbox", raw("outlook", n), received=RECENT)


@pytest.fixture
def serialized_aws(monkeypatch):
    """Each AWS call runs whole before another starts (as DynamoDB applies conditional writes atomically)."""
    lock = threading.RLock()
    original = botocore.client.BaseClient._make_api_call

    def one_at_a_time(self, operation_name, api_params):
        with lock:
            return original(self, operation_name, api_params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", one_at_a_time)


def deliver_shuffled(mailbox, rng: random.Random) -> None:
    """Two jobs (e.g. the schedule's and a push's), each 2–5 times, in batches of 1–10 records."""
    key = (mailbox.tenant_id, mailbox.mailbox_id)
    records = [key] * rng.randint(2, 5) + [key] * rng.randint(2, 5)
    while records:
        size = rng.randint(1, 10)
        batch, records = records[:size], records[size:]
        worker.handle_batch(job_event(*batch, receive_count=rng.randint(1, 3)), FakeContext())


def two_workers_at_once(mailbox) -> None:
    key = (mailbox.tenant_id, mailbox.mailbox_id)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run():
        try:
            barrier.wait(timeout=10)
            worker.handle_batch(job_event(key), FakeContext())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == [] and not any(thread.is_alive() for thread in threads)


def run_follow_ups(aws) -> None:
    """The jobs the workers queued themselves (continue / follow-up), until none is left."""
    for _ in range(20):
        event = receive_event(aws["sync_queue_url"], 10)
        if not event["Records"]:
            return
        worker.handle_batch(event, FakeContext())
    raise AssertionError("follow-up jobs kept coming")


def check(world, expected: set[str]) -> None:
    mailbox = reload(world.mailbox)
    stored = list(Message.by_mailbox.query(mailbox.mailbox_id))
    message_ids = [m.rfc_message_id for m in stored]
    assert sorted(message_ids) == sorted(expected), "lost or duplicated messages"
    created = [e for e in events.list_events(mailbox.tenant_id, "message.created", limit=1000)
               if e.payload.get("mailbox_id") == mailbox.mailbox_id]
    per_message = sorted(e.payload["message_id"] for e in created)
    assert per_message == sorted(m.message_id for m in stored), "message.created lost or doubled"
    assert counts_of(mailbox)["imported"] == len(expected)


@pytest.mark.parametrize("kind", ["imap", "gmail", "outlook"])
def test_jobs_delivered_two_to_five_times_and_two_workers_lose_and_double_nothing(kind, request, aws,
                                                                                 serialized_aws):
    world = {"imap": lambda: ImapWorld(request.getfixturevalue("dovecot")),
             "gmail": lambda: GmailWorld(request.getfixturevalue("google")),
             "outlook": lambda: OutlookWorld(request.getfixturevalue("fake_ms"))}[kind]()
    rng = random.Random(f"dup-{kind}")
    expected: set[str] = set()
    n = 0
    for round_number in range(ROUNDS):
        for _ in range(NEW_PER_ROUND):
            world.add(n)
            expected.add(f"dup-{kind}-{n}@acme.example")
            n += 1
        if round_number == 1:
            two_workers_at_once(world.mailbox)
        deliver_shuffled(world.mailbox, rng)
    run_follow_ups(aws)
    drain(aws["sync_queue_url"])
    check(world, expected)
