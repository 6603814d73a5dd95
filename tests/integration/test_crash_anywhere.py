"""Crash anywhere: a worker killed at any step between fetch, S3, DynamoDB, pairing, events and cursor loses
nothing and doubles nothing — neither messages nor what they cause (links, `message.created`, counts).

Each seeded trial kills the sync at the n-th call of one step (a BaseException, so no handler can swallow it,
as with a Lambda that times out), then lets syncs run again and the renewer's sweep complete what is owed,
and checks: the store equals the mailbox, every inbound message is paired (the mailbox is in `auto` mode and
the directory knows the senders' company; Sent copies go to the mailbox's own address and pair with nothing),
exactly one `message.created` per message (by event id), exact counts.

The same trials run per provider kind: `fake` (the in-memory FakeProvider), and the real provider code of
`imap` on Dovecot, `gmail` on the fake Google and `outlook` on the fake Microsoft — a fresh provider per sync,
built through the kinds registry as the worker builds it, each trial on a new account of the server.
Cut pages: in about half the trials the killed sync and the one after it run with a budget that cuts every
page after its first fetch batch (`time_budget.py`: what was fetched is stored, the cursor stays, the folder is
marked in `Mailbox.cut_folders`, the next run skips the page's stored refs), so a kill also lands in a cut page,
in its mark's write (the release, step `release`) and in the resumed page; no mark may outlive the last sync.

`CRASH_TRIALS` sets the number of trials per kind: without it, `make test` runs a guard (40 fake, 8 per real
kind); 100 for the figures recorded in docs/reliability.md
(`CRASH_TRIALS=100 .venv/bin/python -m pytest -q -s tests/integration/test_crash_anywhere.py`).
"""
from __future__ import annotations

import collections
import contextlib
import os
import random
import time
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib import aws as aws_clients
from chalicelib.models.event import Event
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.models.pairing import MessageLink
from chalicelib.pairing import context as pairing_context, directory
from chalicelib.providers.kinds import build_provider
from chalicelib.security.crypto import encrypt_secrets
from chalicelib.sync import cursors, effects, engine, renewer, store_page, time_budget
from chalicelib.sync.engine import SyncOptions
from chalicelib.sync.time_budget import TimeBudget
from infra import local_moto
from tests.gmail_fixtures import make_gmail_mailbox
from tests.graph_helpers import outlook_mailbox
from tests.mailfactory import make_message
from tests.sync_helpers import FakeProvider, counts_of, make_mailbox, reload

GUARD_TRIALS = {"fake": 40, "imap": 8, "gmail": 8, "outlook": 8}
STEPS = ("fetch", "s3_put", "item_put", "pair", "event_put", "event_enqueue", "settle", "cursor", "release")
TENANT = "tnt_crash"
RECENT = datetime.now(timezone.utc) - timedelta(days=1)
SINCE = (RECENT - timedelta(days=2)).date().isoformat()


def trials(kind: str) -> int:
    return int(os.environ.get("CRASH_TRIALS") or GUARD_TRIALS[kind])


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
    wrap(effects, "settle_debts", "settle")               # the page's events stored, then its debt cleared
    wrap(effects, "clear_debts", "settle")                # ... a kill between the two: events stored, debt open
    wrap(cursors, "save", "cursor")
    wrap(Mailbox, "update", "release")                   # the final state (a cut page's mark) and debt updates
    sqs = aws_clients.sqs()
    monkeypatch.setattr(aws_clients, "sqs", lambda: sqs)
    wrap(sqs, "send_message", "event_enqueue")


def killing_fetch(provider, killer: Killer):
    """Wraps the provider's fetch: the killer is consulted after each message the provider hands over."""
    fetch = provider.fetch

    def fetch_and_maybe_die(refs, *, max_bytes):
        for fetched in fetch(refs, max_bytes=max_bytes):
            killer.hit("fetch")
            yield fetched
    provider.fetch = fetch_and_maybe_die
    return provider


def inbound(kind: str, n: int, to: str) -> bytes:
    return make_message(subject=f"crash {kind} in {n}", from_=f"Sender {n} <s{n}@example.org>", to=to,
                        message_id=f"<crash-{kind}-in-{n}@example.org>", date=RECENT)


def sent(kind: str, n: int, address: str) -> bytes:
    return make_message(subject=f"crash {kind} sent {n}", from_=address, to=address,
                        message_id=f"<crash-{kind}-sent-{n}@example.org>", date=RECENT)


class FakeWorld:
    """The in-memory FakeProvider, one instance across the trial's syncs."""

    def __init__(self, request):
        self.provider = None

    def trial(self, trial: int, inbox: int, sent_count: int):
        self.provider = FakeProvider({"inbox": inbox, "sent": sent_count})
        return make_mailbox(TENANT, pairing_mode="auto")

    def provider_for(self, mailbox):
        return contextlib.nullcontext(self.provider)


class RealWorld:
    """A real provider kind: each trial a new account on its server; each sync a provider built as the worker
    builds it (`kinds.build_provider`)."""

    def provider_for(self, mailbox):
        return build_provider(mailbox)

    def trial(self, trial: int, inbox: int, sent_count: int):
        mailbox = self.account(trial)
        for n in range(inbox):
            self.add("inbox", inbound(self.kind, f"{trial}-{n}", mailbox.email))
        for n in range(sent_count):
            self.add("sent", sent(self.kind, f"{trial}-{n}", mailbox.email))
        return mailbox


class ImapWorld(RealWorld):
    kind = "imap"

    def __init__(self, request):
        self.dovecot = request.getfixturevalue("dovecot")

    def account(self, trial: int):
        self.user, password = self.dovecot.new_user("crash")
        box = make_mailbox(TENANT, pairing_mode="auto", import_since=SINCE,
                           imap={"host": "127.0.0.1", "port": self.dovecot.port, "security": "none",
                                 "username": self.user, "login_method": "plain"})
        box.update(actions=[type(box).secret_ciphertext.set(
            encrypt_secrets(box.tenant_id, box.mailbox_id, {"password": password}))])
        return reload(box)

    def add(self, folder: str, raw: bytes) -> None:
        self.dovecot.append(self.user, {"inbox": "INBOX", "sent": "Sent"}[folder], raw, date=RECENT)


class GmailWorld(RealWorld):
    kind = "gmail"

    def __init__(self, request):
        self.google = request.getfixturevalue("google")

    def account(self, trial: int):
        self.email = f"crash{trial}@gmail.example"
        return make_gmail_mailbox(self.google, TENANT, email=self.email, import_since=SINCE, pairing_mode="auto")

    def add(self, folder: str, raw: bytes) -> None:
        self.google.deliver(self.email, raw, labels=("INBOX", "UNREAD") if folder == "inbox" else ("SENT",),
                            received=RECENT)


class OutlookWorld(RealWorld):
    kind = "outlook"

    def __init__(self, request):
        self.fake = request.getfixturevalue("fake_ms")

    def account(self, trial: int):
        self.address = f"crash{trial}@contoso.example"
        self.fake.add_user(self.address)
        return reload(outlook_mailbox(self.fake, TENANT, address=self.address, import_since=SINCE,
                                      pairing_mode="auto"))

    def add(self, folder: str, raw: bytes) -> None:
        self.fake.mail.add_message(self.address, {"inbox": "inbox", "sent": "sentitems"}[folder], raw,
                                   received=RECENT)


WORLDS = {"fake": FakeWorld, "imap": ImapWorld, "gmail": GmailWorld, "outlook": OutlookWorld}


@pytest.fixture
def item_level_rollback():
    """moto backs each transaction up by deep-copying whole tables, so trials slowed down as the tables grew;
    the local stack's emulator patches (`infra/local_moto.py`: an item-level rollback, same outcomes; installed
    once per process) keep every trial as cheap."""
    local_moto.install()
    yield


class CutEveryPage(TimeBudget):
    """A budget under which no page goes past its first fetch batch: every page of more refs is cut."""

    def may_continue_page(self, now: float) -> bool:
        return False


def sync(world, mailbox, options: SyncOptions, killer: Killer | None = None, *, cut: bool = False) -> None:
    budget = CutEveryPage(end=float("inf"), deadline=float("inf"), cap=float("inf")) if cut else None
    with world.provider_for(mailbox) as provider:
        if killer is not None:
            killing_fetch(provider, killer)
        engine.sync_mailbox(mailbox, provider, float("inf"), options=options, budget=budget)


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(WORLDS))
def test_crash_anywhere_loses_and_doubles_nothing(kind, request, aws, item_level_rollback, monkeypatch):
    world = WORLDS[kind](request)
    tally = collections.Counter()
    directory.put_record(TENANT, "company", "c-1", {"name": "Senders", "domains": ["example.org"]})
    count = trials(kind)
    for seed in range(count):
        rng = random.Random(seed)
        killer = Killer(rng.choice(STEPS), rng.randint(1, 6))
        inbox, sent_count = rng.randint(3, 6), rng.randint(0, 2)
        mailbox = world.trial(seed, inbox, sent_count)
        expected = inbox + sent_count
        pairing_context.invalidate()
        cut = rng.random() < 0.5
        with monkeypatch.context() as patch:
            install(patch, killer)
            for _ in range(2 if cut else 1):       # a cut page, then its resumption (the kill may land in either)
                try:
                    sync(world, reload(mailbox), SyncOptions(page_size=2, fetch_batch=1 if cut else 2), killer,
                         cut=cut)
                except Killed:
                    tally["killed"] += 1
                    tally["killed_cut"] += cut
        for _ in range(2):
            sync(world, reload(mailbox), SyncOptions(page_size=2))
        renewer.run(now=time.time() + 3600)                       # the sweeper, once the dead sync is long gone
        messages = list(Message.by_mailbox.query(mailbox.mailbox_id))
        created = [event for event in Event.query(TENANT, filter_condition=Event.type == "message.created")
                   if event.payload["mailbox_id"] == mailbox.mailbox_id]
        linked = {link.message_id for message in messages for link in MessageLink.query(message.message_id)}
        problems = {
            "lost": expected - len(messages),
            "owing": sum(1 for m in messages if m.owed) + len(reload(mailbox).owed_pages or ()),
            "unpaired": sum(1 for m in messages if m.direction == "inbound" and m.message_id not in linked),
            "events": len(created) - len(messages),
            "duplicate_event_ids": len(created) - len({e.event_id for e in created}),
            "wrong_count": counts_of(reload(mailbox))["imported"] - len(messages),
            "cut_marks": len(time_budget.cut_folders(reload(mailbox))),
        }
        for name, value in problems.items():
            if value:
                tally[name] += 1
        assert all(value == 0 for value in problems.values()), (kind, seed, killer.step, killer.at, problems)
        reload(mailbox).update(actions=[type(mailbox).status.set("disabled")])   # the next renewer sees one mailbox
    print(f"\ncrash-anywhere [{kind}]: {count} trials, {tally['killed']} killed mid-sync "
          f"({tally['killed_cut']} with cut pages), problems: "
          f"{ {k: v for k, v in tally.items() if k not in ('killed', 'killed_cut')} or 'none'}")
    assert tally["killed"] >= count // 3          # the trials do kill (a kill step past the sync's calls does not)
