"""Guards the worker's time budget: a sync stops between pages early enough for its slowest page, so a mailbox
whose pages are slow ends its invocation with a continuation instead of running into the Lambda timeout (which
fails the whole batch: every record is redelivered and counts toward the DLQ's maxReceiveCount)."""
from __future__ import annotations

import dataclasses

import pytest

from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.privacy import lists
from chalicelib.providers.base import ErrorCode, ProviderError
from chalicelib.sync import engine, time_budget, worker
from chalicelib.sync.engine import SyncOptions
from tests.sync_helpers import FakeProvider, counts_of, cursor_field, drain, job_event, make_mailbox, reload

TIMEOUT = 300.0           # the worker's Lambda timeout in every stage (.chalice/config.json)


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class ClockContext:
    """A Lambda context whose remaining time runs down with the fake clock: the invocation ends at `end`."""

    def __init__(self, clock: Clock, end: float):
        self.clock, self.end = clock, end
        self.function_name, self.aws_request_id = "worker", "test"

    def get_remaining_time_in_millis(self) -> int:
        return int(max(0.0, self.end - self.clock()) * 1000)


class SlowProvider(FakeProvider):
    """Each fetched message costs `seconds_per_message` of the fake clock (large mail, a slow server)."""

    def __init__(self, clock: Clock, seconds_per_message: float, folders: dict[str, int]):
        super().__init__(folders)
        self.clock, self.seconds_per_message = clock, seconds_per_message

    def fetch(self, refs, *, max_bytes):
        for fetched in super().fetch(refs, max_bytes=max_bytes):
            self.clock.t += self.seconds_per_message
            yield fetched


def run(event, providers: dict, clock: Clock, end: float):
    return worker.handle_batch(event, ClockContext(clock, end), provider_factory=lambda m: providers[m.mailbox_id],
                               clock=clock, options=SyncOptions(page_size=10))


def test_slow_pages_end_the_invocation_early_with_a_continuation(aws):
    """Pages of 110 s under a 300 s timeout: the fixed margin (60 s) let a third page start at t=220 and run to
    t=330 — past the timeout. The budget now keeps back the longest page seen (× 1.5) and stops after two."""
    clock = Clock()
    mailbox = make_mailbox()
    provider = SlowProvider(clock, 11.0, {"inbox": 50})
    result = run(job_event((mailbox.tenant_id, mailbox.mailbox_id)), {mailbox.mailbox_id: provider}, clock, TIMEOUT)
    assert result == {"batchItemFailures": []}
    assert clock.t <= TIMEOUT - time_budget.FINAL_RESERVE_SECONDS, clock.t
    fresh = reload(mailbox)
    assert cursor_field(fresh, "inbox") == "1:20" and fresh.sync_stage == "queued" and fresh.lease_owner is None
    assert fresh.page_seconds == 110.0             # what the next invocation starts from
    assert [q["body"]["reason"] for q in drain(aws["sync_queue_url"])] == ["continue"]


def test_a_late_record_does_not_start_a_page_it_cannot_finish(aws):
    """Records of a batch share one invocation: after a first mailbox used 220 s, the second (pages of 110 s,
    recorded by its last sync) started its first page with 80 s left — the fixed margin only bounds pages
    after the first — and the batch timed out. It now hands its turn to a continuation without asking the
    provider; in a fresh invocation it syncs."""
    clock = Clock()
    first, second = make_mailbox(), make_mailbox(page_seconds=110.0)
    providers = {first.mailbox_id: SlowProvider(clock, 11.0, {"inbox": 20}),
                 second.mailbox_id: SlowProvider(clock, 11.0, {"inbox": 50})}
    event = job_event((first.tenant_id, first.mailbox_id), (second.tenant_id, second.mailbox_id))
    assert run(event, providers, clock, TIMEOUT) == {"batchItemFailures": []}
    assert clock.t == 220.0                        # the first mailbox's two pages, nothing of the second's
    assert providers[second.mailbox_id].changes_calls == []
    assert reload(second).sync_stage == "queued" and reload(second).lease_owner is None
    assert [q["body"]["reason"] for q in drain(aws["sync_queue_url"])] == ["continue"]
    clock.t = 1000.0                               # a fresh invocation
    run(job_event((second.tenant_id, second.mailbox_id), reason="continue"), providers, clock, 1000.0 + TIMEOUT)
    assert cursor_field(reload(second), "inbox") == "1:20"


def test_a_page_slower_than_any_margin_still_runs_in_a_fresh_invocation(aws):
    """A recorded page time beyond what any invocation could keep back must not stop the mailbox for good:
    a fresh invocation always starts one page."""
    clock = Clock()
    mailbox = make_mailbox(page_seconds=1000.0)
    provider = SlowProvider(clock, 1.0, {"inbox": 5})
    run(job_event((mailbox.tenant_id, mailbox.mailbox_id)), {mailbox.mailbox_id: provider}, clock, TIMEOUT)
    fresh = reload(mailbox)
    assert cursor_field(fresh, "inbox") == "1:5" and fresh.sync_stage == "idle" and fresh.page_seconds == 5.0


def test_a_page_slower_than_the_whole_invocation_is_cut_and_resumed_without_fetching_twice(aws):
    """One page of 30 messages at 11 s each (330 s) cannot finish in a 300 s invocation: it ran into the
    timeout in every invocation, forever (then the DLQ). It is now cut between fetch batches — what was fetched
    is stored, the cursor stays — and the next run reads the page again, skipping what is stored."""
    clock = Clock()
    mailbox = make_mailbox()
    provider = SlowProvider(clock, 11.0, {"inbox": 30})
    options = SyncOptions(page_size=30, fetch_batch=5)
    assert worker.handle_batch(job_event((mailbox.tenant_id, mailbox.mailbox_id)), ClockContext(clock, TIMEOUT),
                               provider_factory=lambda m: provider, clock=clock, options=options) == \
        {"batchItemFailures": []}
    assert clock.t <= TIMEOUT - time_budget.FINAL_RESERVE_SECONDS, clock.t
    cut = reload(mailbox)
    assert cursor_field(cut, "inbox") is None and time_budget.cut_folders(cut) == {"inbox"} and cut.lease_owner is None
    assert cut.page_seconds == 220.0      # the cut page's time so far: a late batch slot will not start it
    assert len(provider.fetched) == 20 and counts_of(cut)["imported"] == 20
    assert [q["body"]["reason"] for q in drain(aws["sync_queue_url"])] == ["continue"]
    clock.t = 1000.0
    worker.handle_batch(job_event((mailbox.tenant_id, mailbox.mailbox_id), reason="continue"),
                        ClockContext(clock, 1000.0 + TIMEOUT), provider_factory=lambda m: provider, clock=clock,
                        options=options)
    done = reload(mailbox)
    assert cursor_field(done, "inbox") == "1:30" and done.cut_folders is None and done.sync_stage == "idle"
    assert len(provider.fetched) == 30 and len(set(provider.fetched)) == 30     # nothing fetched twice
    assert counts_of(done)["imported"] == 30


class CutEveryPage(time_budget.TimeBudget):
    """A budget that never lets a page go past its first fetch batch (every page is cut)."""

    def may_continue_page(self, now: float) -> bool:
        return False


def cutting_budget() -> CutEveryPage:
    return CutEveryPage(end=float("inf"), deadline=float("inf"), cap=float("inf"))


def test_a_cut_mark_does_not_outlive_an_account_change(aws):
    """A folder marked cut under one account made the next run skip the stored refs of its first page — also
    after the mailbox moved to another IMAP account (cursor epoch bumped), whose UIDs and UIDVALIDITY can equal
    the old ones (many servers start UIDVALIDITY at 1): the new account's messages at those UIDs were never
    fetched, and the cursor then moved past them (lost)."""
    mailbox = make_mailbox()
    old = FakeProvider({"inbox": 3})
    options = SyncOptions(page_size=3, fetch_batch=1)
    engine.sync_mailbox(mailbox, old, float("inf"), options=options, budget=cutting_budget())
    assert time_budget.cut_folders(reload(mailbox)) == {"inbox"} and old.fetched == ["1:1"]
    mailbox.update(actions=[Mailbox.cursor_epoch.add(1)])   # another account (mailboxes.service._reconnect_actions)
    new = FakeProvider({"inbox": 0})
    new.add("inbox", 3, tag=" (new account)")                # the same UIDs, other messages
    engine.sync_mailbox(reload(mailbox), new, float("inf"), options=options)
    assert new.fetched == ["1:1", "1:2", "1:3"]
    fresh = reload(mailbox)
    assert counts_of(fresh)["imported"] == 4 and not fresh.cut_folders
    assert cursor_field(fresh, "inbox") == "1:3"


def test_a_resumed_page_does_not_fetch_or_count_again_the_mail_it_refused(aws):
    """Refused mail (a never-import list names it; an erased person) is not stored, so a run resuming a cut page
    did not skip it: it was fetched again and counted once more in `skipped_count` on every resumption — a
    drift a crash replay could cause rarely, a cut page every time (and a prefix of slow refused mail could
    fill a whole invocation again, with no progress)."""
    mailbox = make_mailbox()
    lists.put_list(mailbox.tenant_id, lists.TENANT_SCOPE, ["s1@example.org", "s2@example.org"], [])
    provider = FakeProvider({"inbox": 4})
    options = SyncOptions(page_size=4, fetch_batch=2)
    engine.sync_mailbox(mailbox, provider, float("inf"), options=options, budget=cutting_budget())
    assert counts_of(reload(mailbox)) == {"imported": 0, "skipped": 2, "removed": 0}
    engine.sync_mailbox(reload(mailbox), provider, float("inf"), options=options)
    fresh = reload(mailbox)
    assert provider.fetched == ["1:1", "1:2", "1:3", "1:4"]
    assert counts_of(fresh) == {"imported": 2, "skipped": 2, "removed": 0} and not fresh.cut_folders


def test_a_re_listed_folder_is_not_resumed_as_the_cut_page(aws):
    """Only the page asked again with the cursor the cut left is the cut page: a folder re-listed instead (import
    window moved earlier here; a resync likewise) lists its mail again, and what the cut page refused under lists
    changed since must be fetched and judged again, as without a cut — not skipped as refused."""
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 4})
    options = SyncOptions(page_size=8, fetch_batch=2)
    engine.sync_mailbox(mailbox, provider, float("inf"), options=options)
    provider.add("inbox", 4)
    lists.put_list(mailbox.tenant_id, lists.TENANT_SCOPE, ["s5@example.org", "s6@example.org"], [])
    engine.sync_mailbox(reload(mailbox), provider, float("inf"), options=options, budget=cutting_budget())
    assert time_budget.cut_folders(reload(mailbox)) == {"inbox"} and counts_of(reload(mailbox))["skipped"] == 2
    lists.put_list(mailbox.tenant_id, lists.TENANT_SCOPE, [], [])
    mailbox.update(actions=[Mailbox.import_since.set("2026-11-01")])
    engine.sync_mailbox(reload(mailbox), provider, float("inf"), options=options)
    fresh = reload(mailbox)
    assert sorted(m.provider_id for m in Message.by_mailbox.query(mailbox.mailbox_id)) == \
        [f"1:{uid}" for uid in range(1, 9)]
    assert not fresh.cut_folders and not fresh.cut_refused


class DeltaLike(FakeProvider):
    """Lists every message as `changed`, as a Graph delta round after the initial one does (new and changed
    messages are indistinguishable there)."""

    def changes(self, folder, cursor, *, since, page_size):
        page = super().changes(folder, cursor, since=since, page_size=page_size)
        return dataclasses.replace(page, new=(), changed=page.new)


def test_a_resumed_delta_page_does_not_fetch_or_count_again_the_mail_it_refused(aws):
    """The same for a page whose messages come as `changed` refs (Graph delta): its unstored refs were filtered
    by the store lookup, but the refused ones, never stored, were fetched and counted again."""
    mailbox = make_mailbox()
    lists.put_list(mailbox.tenant_id, lists.TENANT_SCOPE, ["s1@example.org", "s2@example.org"], [])
    provider = DeltaLike({"inbox": 4})
    options = SyncOptions(page_size=4, fetch_batch=2)
    engine.sync_mailbox(mailbox, provider, float("inf"), options=options, budget=cutting_budget())
    engine.sync_mailbox(reload(mailbox), provider, float("inf"), options=options)
    assert provider.fetched == ["1:1", "1:2", "1:3", "1:4"]
    assert counts_of(reload(mailbox)) == {"imported": 2, "skipped": 2, "removed": 0}


def test_a_cut_mark_is_removed_with_the_cursor_write_that_completes_the_page(aws):
    """The mark of a resumed page was removed only by the run's release: when a later page failed (or the
    invocation died) after the completed page's cursor was written, the mark — and the refused ids riding on
    it — stayed and were applied to whatever page the folder listed next."""
    mailbox = make_mailbox()
    provider = FakeProvider({"inbox": 6})
    options = SyncOptions(page_size=3, fetch_batch=1)
    engine.sync_mailbox(mailbox, provider, float("inf"), options=options, budget=cutting_budget())
    assert time_budget.cut_folders(reload(mailbox)) == {"inbox"}
    provider.fail_on[("changes", "inbox")] = [lambda: None, ProviderError(ErrorCode.PERMANENT, "the next page")]
    with pytest.raises(ProviderError):
        engine.sync_mailbox(reload(mailbox), provider, float("inf"), options=options)
    fresh = reload(mailbox)
    assert cursor_field(fresh, "inbox") == "1:3" and not fresh.cut_folders
