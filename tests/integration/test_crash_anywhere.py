"""Crash anywhere: a worker killed at any step between fetch, S3, DynamoDB, pairing, events and cursor loses
nothing and doubles nothing — neither messages nor what they cause (links, `message.created`, counts).

Each seeded trial kills the sync at the n-th call of one step (a BaseException, so no handler can swallow it,
as with a Lambda that times out), then lets syncs run again and the renewer's sweep complete what is owed,
and checks: the store equals the mailbox, every inbound message is paired (the mailbox is in `auto` mode and
the directory knows the senders' company; Sent copies go to the mailbox's own address and pair with nothing),
exactly one `message.created` per message (by event id), exact counts.
`CRASH_TRIALS` sets the number of trials: 40 in `make test` (a guard), 100+ for the figures recorded in
docs/reliability.md (`CRASH_TRIALS=100 .venv/bin/python -m pytest -q -s tests/integration/test_crash_anywhere.py`).
"""
from __future__ import annotations

import collections
import os
import random
import time

import pytest

from chalicelib import aws as aws_clients
from chalicelib.models.event import Event
from chalicelib.models.message import Message
from chalicelib.models.pairing import MessageLink
from chalicelib.pairing import context as pairing_context, directory
from chalicelib.sync import cursors, effects, engine, renewer, store_page
from chalicelib.sync.engine import SyncOptions
from tests.sync_helpers import FakeProvider, counts_of, make_mailbox, reload

TRIALS = int(os.environ.get("CRASH_TRIALS", "40"))
STEPS = ("fetch", "s3_put", "item_put", "pair", "event_put", "event_enqueue", "settle", "cursor")


class Killed(BaseException):
    """The worker process died (not an Exception: nothing in the code under test may catch it)."""


class Killer:
    def __init__(self, step: str, at: int):
        self.step, self.at, self.calls = step, at, collections.Counter()
        self.fired = False

    def hit(self, step: str) -> None:
        self.calls[step] += 1
        if not self.fired and step == self.step and self.calls[step] == self.at:
            self.fired = True
            raise Killed(f"{step} #{self.at}")


def install(monkeypatch, killer: Killer) -> None:
    def wrap(target, name, step):
        original = getattr(target, name)

        def wrapped(*args, **kwargs):
            killer.hit(step)
            return original(*args, **kwargs)
        monkeypatch.setattr(target, name, wrapped)

    s3 = aws_clients.s3()
    monkeypatch.setattr(aws_clients, "s3", lambda: s3)
    wrap(s3, "put_object", "s3_put")
    wrap(Message, "save", "item_put")
    wrap(store_page, "insert_items", "item_put")          # the page's items + counts, one transaction
    wrap(effects, "pair_message", "pair")
    wrap(effects, "pair_page", "pair")
    wrap(Event, "save", "event_put")
    wrap(effects, "_settle", "settle")
    wrap(effects, "_settle_page", "settle")               # the page's events stored + debts cleared
    wrap(cursors, "save", "cursor")
    sqs = aws_clients.sqs()
    monkeypatch.setattr(aws_clients, "sqs", lambda: sqs)
    wrap(sqs, "send_message", "event_enqueue")


class KilledFetch(FakeProvider):
    def __init__(self, killer: Killer, folders):
        super().__init__(folders)
        self.killer = killer

    def fetch(self, refs, *, max_bytes):
        for fetched in super().fetch(refs, max_bytes=max_bytes):
            self.killer.hit("fetch")
            yield fetched


@pytest.mark.slow
def test_crash_anywhere_loses_and_doubles_nothing(aws, monkeypatch):
    tally = collections.Counter()
    directory.put_record("tnt_crash", "company", "c-1", {"name": "Senders", "domains": ["example.org"]})
    for seed in range(TRIALS):
        rng = random.Random(seed)
        killer = Killer(rng.choice(STEPS), rng.randint(1, 6))
        mailbox = make_mailbox("tnt_crash", pairing_mode="auto")
        pairing_context.invalidate()
        provider = KilledFetch(killer, {"inbox": rng.randint(3, 6), "sent": rng.randint(0, 2)})
        with monkeypatch.context() as patch:
            install(patch, killer)
            try:
                engine.sync_mailbox(mailbox, provider, float("inf"), options=SyncOptions(page_size=2, fetch_batch=2))
            except Killed:
                tally["killed"] += 1
        for _ in range(2):
            engine.sync_mailbox(reload(mailbox), provider, float("inf"), options=SyncOptions(page_size=2))
        renewer.run(now=time.time() + 3600)                       # the sweeper, once the dead sync is long gone
        expected = sum(len(mail) for mail in provider.mail.values())
        messages = list(Message.by_mailbox.query(mailbox.mailbox_id))
        created = [event for event in Event.query("tnt_crash", filter_condition=Event.type == "message.created")
                   if event.payload["mailbox_id"] == mailbox.mailbox_id]
        linked = {link.message_id for message in messages for link in MessageLink.query(message.message_id)}
        problems = {
            "lost": expected - len(messages),
            "owing": sum(1 for m in messages if m.owed),
            "unpaired": sum(1 for m in messages if m.direction == "inbound" and m.message_id not in linked),
            "events": len(created) - len(messages),
            "duplicate_event_ids": len(created) - len({e.event_id for e in created}),
            "wrong_count": counts_of(reload(mailbox))["imported"] - len(messages),
        }
        for name, value in problems.items():
            if value:
                tally[name] += 1
        assert all(value == 0 for value in problems.values()), (seed, killer.step, killer.at, problems)
        reload(mailbox).update(actions=[type(mailbox).status.set("disabled")])   # the next renewer sees one mailbox
    print(f"\ncrash-anywhere: {TRIALS} trials, {tally['killed']} killed mid-sync, problems: "
          f"{ {k: v for k, v in tally.items() if k != 'killed'} or 'none'}")
    assert tally["killed"] >= TRIALS // 2
