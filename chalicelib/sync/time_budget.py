"""How much of a Lambda invocation a sync may use, page by page.

Lambda stops an invocation at its timeout wherever it is (https://docs.aws.amazon.com/lambda/latest/dg/
configuration-timeout.html); for an SQS batch that means the whole batch is redelivered and each record's receive
count grows toward the DLQ's maxReceiveCount — for a mailbox that is merely large. Nothing is lost (the engine
replays from its persisted cursors), but the mailbox looks failing. So a sync starts a page only when that page can
finish, with `FINAL_RESERVE_SECONDS` left for the final writes (cursors, lease release, the continuation's enqueue):

- a fixed floor, `safety_margin` (20 % of the time left when the record starts, 10-60 s), kept back as before;
- and the longest page measured (changes + fetch + store + effects + cursor write) × `PAGE_TIME_FACTOR` — a page of
  the same mailbox may be that slow again (a page holds up to `PAGE_SIZE` refs; IMAP FETCH of large messages, a
  Gmail batch of 100 raw messages, a throttled server can each take minutes).

A single page may be slower than any invocation (a page of `PAGE_SIZE` large messages from a slow server), so a
page is also cut between fetch batches when the next batch (the longest one measured, with the longest store of
held messages, × `PAGE_TIME_FACTOR`) would not finish: what was fetched is stored, the folder's cursor stays, and
the folder is marked (`Mailbox.cut_folders`, per cursor epoch: `cut_folders`) so the next run, reading the same
page again, skips the refs already stored — and those the store refused (`cut_refused`) — instead of fetching them
again: each run gets further into the page, none repeats another's work. The mark goes with the cursor write
that completes the page.

The longest page of a run is recorded on the mailbox (`Mailbox.page_seconds`, written with the lease release) and
seeds the next run's budget, so a record that starts late in a batch (records of one batch share one invocation)
does not start a page it cannot finish; it hands its turn to a continuation instead. A recorded time larger than
any invocation could keep back is capped (`cap_seconds`): a fresh invocation always starts one page, so a mailbox
with huge pages still progresses. Each run replaces the recorded time with its own measurement.
"""
from __future__ import annotations

from dataclasses import dataclass

from chalicelib.models.mailbox import Mailbox

PAGE_TIME_FACTOR = 1.5          # a page may take half again as long as the slowest one seen
FINAL_RESERVE_SECONDS = 10.0    # cursor flush + lease release + continuation enqueue (a few DynamoDB/SQS calls)


def _epoch_prefix(mailbox: Mailbox) -> str:
    return f"{int(mailbox.cursor_epoch or 0)}:"


def cut_mark(mailbox: Mailbox, folder: str) -> str:
    """How `Mailbox.cut_folders` (and the keys of `Mailbox.cut_refused`) name a folder's cut page:
    "<cursor epoch>:<folder>"."""
    return _epoch_prefix(mailbox) + folder


def cut_folders(mailbox: Mailbox) -> set[str]:
    """The folders whose page a run cut short, of the mailbox's current cursor epoch. A mark of an earlier epoch
    names a page of another account (`sync/cursors.py`: the epoch moves when the account or server changes), whose
    provider ids may equal the new account's (IMAP UIDVALIDITY and UIDs restart at small numbers on many
    servers): skipping the new account's refs that match the old one's stored messages would lose them. Such a
    mark is ignored, and dropped by the run's release (`engine._Run._page_time`)."""
    prefix = _epoch_prefix(mailbox)
    return {mark[len(prefix):] for mark in mailbox.cut_folders or () if mark.startswith(prefix)}


def cut_refused(mailbox: Mailbox) -> dict[str, set[str]]:
    """{folder: provider ids of its cut page the store refused} (`Mailbox.cut_refused`, current epoch): refused
    mail (`privacy.lists.refusal`) leaves no item, so without them the resumed page would fetch it again and
    count it once more in `skipped_count`."""
    prefix = _epoch_prefix(mailbox)
    return {mark[len(prefix):]: set(ids) for mark, ids in (mailbox.cut_refused or {}).items()
            if mark.startswith(prefix)}


def safety_margin(remaining_seconds: float) -> float:
    """The fixed floor kept back for the last page, storing and releasing: 20 % of what is left, 10-60 s."""
    return max(10.0, min(60.0, remaining_seconds * 0.2))


def cap_seconds(timeout_seconds: float) -> float:
    """The most a page's expected time may keep back: what a fresh invocation of `timeout_seconds` allows for its
    first page (so a fresh invocation always starts one)."""
    return max(0.0, timeout_seconds - safety_margin(timeout_seconds) - FINAL_RESERVE_SECONDS)


@dataclass
class TimeBudget:
    """One record's share of the invocation, in `clock()` values."""
    end: float                       # when Lambda stops the invocation (start + remaining time)
    deadline: float                  # end - safety_margin: no page starts after it
    cap: float                       # `cap_seconds` of the function's timeout
    expected: float = 0.0            # seconds a page is expected to take (recorded, then measured, longest)
    measured: float = 0.0            # the longest page of this run (recorded on the mailbox at release)
    step: float = 0.0                # the longest fetch batch of this run (with the stores it caused)
    flush: float = 0.0               # the longest store of held messages (`engine._flush`) of this run

    @classmethod
    def start(cls, now: float, remaining: float, timeout: float, recorded: float | None = None) -> "TimeBudget":
        return cls(end=now + remaining, deadline=now + remaining - safety_margin(remaining), cap=cap_seconds(timeout),
                   expected=float(recorded or 0.0))

    def page_done(self, seconds: float) -> None:
        self.measured = max(self.measured, seconds)
        self.expected = max(self.expected, seconds)

    def may_start_page(self, now: float) -> bool:
        """Whether a page started now is expected to finish with the final writes' reserve left."""
        need = min(self.expected * PAGE_TIME_FACTOR, self.cap)
        return now < self.deadline and now + need <= self.end - FINAL_RESERVE_SECONDS

    def step_done(self, seconds: float) -> None:
        self.step = max(self.step, seconds)

    def flush_done(self, seconds: float) -> None:
        self.flush = max(self.flush, seconds)

    def may_continue_page(self, now: float) -> bool:
        """Whether another fetch batch of the page (and storing what is then held) is expected to finish with the
        final writes' reserve left; when not, the page is cut (`engine._store_page`)."""
        return now + (self.step + self.flush) * PAGE_TIME_FACTOR <= self.end - FINAL_RESERVE_SECONDS

