"""The one sync engine: drives any `MailProvider` through its folders, page by page, into the message store.

Invariant (closeio ImapFolderInfo; twenty messaging-cursor.service): a folder's stored cursor (`sync/cursors.py`)
means "the store has incorporated every remote change up to at least this cursor". Hence, per page:

    changes(folder, cursor) → look up `changed` refs already stored → fetch `new` + unknown `changed` refs in
    bounded batches → store the fetched messages together (`store_page.save_page`: one batched existence
    read, parallel S3 PUTs, items + counts in transactions) → complete what the new messages owe together
    (`effects.complete_page`: one directory read for pairing, one queue message of `message.created` events)
    → restore the known `changed` refs that were marked removed at the source (`store.restore_removed`: one
    batched read) → record the read state reported for stored messages (`changed` and `flags` refs: one
    batched read, the changed ones written in transactions, `threads/unread.py`) → store.mark_removed → ONLY
    THEN persist next_cursor (one transaction conditioned on the lease). A folder's cursor after its last page
    is written with the run's next cursor write — another folder's, in the same transaction — or at the run's
    end (also when a later folder fails): later than its page, never before, and one mailbox update for several folders.
    The page debts a page's effects paid (their events stored) are removed in that same mailbox update
    (`effects.clears_deferred`), not in one of their own.

Bounded memory: fetched messages are held until `page_raw_bytes` (setting `MAILBRIDGE_PAGE_RAW_BYTES`, default
32 MiB) would be passed, then stored and dropped; a page stores in as many parts as its raw mail needs.

The cursor only moves forward: it is replaced only by the `next_cursor` of a page requested with the stored
cursor, and only by the lease holder. A crash anywhere before that write replays the page next time; the store
dedupes and the outbox on each message completes whatever it still owes, so nothing is duplicated or lost.

Checkpoint: at a page boundary, when the deadline (Lambda time left minus a safety margin) has passed or the next
page is not expected to finish in the invocation (the worker's `time_budget.TimeBudget`: the longest page measured
× 1.5), the engine persists what it has and returns outcome "continue"; the worker re-enqueues the mailbox. The
longest page of the run is returned in `final_actions` (`Mailbox.page_seconds`) for the next run's budget. A page
slower than an invocation is cut between fetch batches: what was fetched is stored, the cursor stays, and the
folder is recorded in `Mailbox.cut_folders` (with the cursor epoch: `time_budget.cut_folders`), so the next run
skips that page's refs already stored or refused (`Mailbox.cut_refused`: refused mail leaves no item); the mark
goes with the cursor write that completes the page.

CURSOR_INVALID (UIDVALIDITY changed, stale historyId, delta 410) → bounded resync: the folder's cursor is reset
to None and the folder re-listed since `import_since`; the store's natural keys make that duplicate-free. At
most `MAX_RESYNCS_PER_DAY` resyncs per mailbox in a rolling 24 h window (closeio MAX_UIDINVALID_RESYNCS);
beyond it the CURSOR_INVALID error propagates to `errors.handle_provider_error` (mailbox error, no retry).
`import_since` moved earlier than the date a folder's initial import used re-lists the folder the same way,
without counting as a resync. NOT_FOUND from `changes()` is a vanished folder (skipped, recorded); a mailbox-wide
failure arrives as another code (see `providers/base.py`) and fails the sync visibly.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Callable, Iterable, Sequence

from chalicelib.config import get_settings
from chalicelib.logs import logger
from chalicelib.models.mailbox import Mailbox, folders_to_sync
from chalicelib.providers.base import (PAGE_SIZE, ErrorCode, FetchedMessage, MailProvider, MessageRef,
                                       ProviderError)
from chalicelib.sync import cursors, effects, store_page as message_store
from chalicelib.sync.cursors import FolderState
from chalicelib.sync.lease import Lease, LeaseLost
from chalicelib.sync.time_budget import TimeBudget, cut_folders, cut_mark, cut_refused
from chalicelib.timeutil import isoformat, now_iso, parse_iso, utcnow

MAX_RESYNCS_PER_DAY = 3
MAX_PENDING_CURSORS = 20          # finished folders' cursors written together (a transaction takes 100 actions)
RESYNC_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class SyncOptions:
    page_size: int = PAGE_SIZE    # refs per ChangeSet (a page's fixed calls amortize over more messages)
    fetch_batch: int = 20         # refs per provider.fetch call


@dataclass
class SyncCounts:
    imported: int = 0
    skipped: int = 0
    removed: int = 0
    fetched: int = 0
    pages: int = 0
    known: int = 0                # changed refs already stored (not fetched again)
    read_state: int = 0           # stored messages whose read state at the source changed (threads/unread.py)
    restored: int = 0             # stored messages removed at the source that the provider lists again

    def add(self, other: "SyncCounts") -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class SyncResult:
    outcome: str                       # "done" | "continue"
    counts: SyncCounts
    folder_errors: dict[str, dict[str, str]] = field(default_factory=dict)
    resynced_folders: list[str] = field(default_factory=list)
    final_actions: list = field(default_factory=list)   # mailbox state to write when the lease is released


def _chunks(items: Sequence[MessageRef], size: int) -> Iterable[Sequence[MessageRef]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _error(code: str, detail: str) -> dict[str, str]:
    return {"code": code, "detail": detail[:500], "at": now_iso()}


class _Run:
    """One sync pass over one mailbox (state kept here so helpers stay small)."""

    def __init__(self, mailbox: Mailbox, provider: MailProvider, budget: TimeBudget, *, options: SyncOptions,
                 store, lease: Lease | None, clock: Callable[[], float], after_store: effects.Effects | None):
        self.mailbox, self.provider, self.budget = mailbox, provider, budget
        self.options, self.store, self.lease, self.clock = options, store, lease, clock
        self.after_store = after_store or effects.complete
        self.counts = SyncCounts()
        self.result = SyncResult("done", self.counts)
        self.since = date.fromisoformat(mailbox.import_since[:10])
        self.max_bytes = get_settings().max_message_bytes
        self.page_raw_bytes = get_settings().page_raw_bytes
        self.states = cursors.load_all(mailbox)
        # A folder's cursor after its LAST page is held here and written with the next cursor write of this
        # run (another folder's, in the same transaction) or at its end: a sync of several folders then pays
        # one lease-conditioned mailbox update for their final cursors, not one each.
        self.pending: dict[str, FolderState] = {}
        self.paid_debts: set[str] = set()        # page debts paid, removed with the next cursor write (`run`)
        # Folders whose page a run cut short (`time_budget.py`): their next page is the same one again, whose
        # refs already stored are skipped (`_resume_skips`). `cut_folders` is what the mailbox will record.
        self.cut_folders: set[str] = cut_folders(mailbox)
        self.resuming: set[str] = set(self.cut_folders)
        self.cut_refused: dict[str, set[str]] = cut_refused(mailbox)    # the refused refs of those pages
        self.page_refused: set[str] = set()      # refs of the current page the store refused (`_store_held`)
        self.done_marks: set[str] = set()        # marks of cut pages completed: removed with the next cursor write

    def _state(self, folder: str) -> FolderState:
        return self.states.setdefault(folder, FolderState(folder))

    def _persist(self, state: FolderState, actions: list | None = None) -> None:
        """Write `state` (and `actions`) with the cursors of finished folders still pending, the removal of
        the page debts already paid (`effects.clears_deferred`) and of the marks of the cut pages those cursors
        complete (a mark outlives its page by no write): one transaction."""
        debts, marks = sorted(self.paid_debts), set(self.done_marks)
        actions = list(actions or []) + ([Mailbox.owed_pages.delete(set(debts))] if debts else []) + \
            ([Mailbox.cut_folders.delete(marks)] if marks else [])
        cursors.save(self.mailbox, self.lease, state, actions, also=list(self.pending.values()))
        self.pending.clear()
        self.paid_debts.difference_update(debts)
        self.done_marks.difference_update(marks)

    def _flush_cursors(self) -> None:
        """Persist the finished folders' cursors still pending (one transaction, with the paid debts' removal),
        if any; paid debts without a cursor to ride on are removed by one update."""
        if self.pending:
            first = self.pending.pop(next(iter(self.pending)))      # written with the others (`_persist`)
            self._persist(first)
        if self.paid_debts:
            debts = sorted(self.paid_debts)
            effects.clear_debts(self.mailbox, debts)
            self.paid_debts.difference_update(debts)

    def _flush_after_failure(self) -> None:
        """A later folder failed: what the finished folders reached is still persisted (the failure is the one
        raised; a flush that fails too — a lost lease — is only logged)."""
        try:
            self._flush_cursors()
        except Exception:  # noqa: BLE001 - the original failure is what propagates
            logger.warning("pending folder cursors not persisted after a failure", exc_info=True)

    def _begin_resync(self, folder: str, error: ProviderError) -> None:
        """Reset the folder's cursor (bounded); raise the CURSOR_INVALID error once over the cap."""
        now = utcnow()
        recent = [stamp for state in self.states.values() for stamp in state.resyncs
                  if now - parse_iso(stamp) < RESYNC_WINDOW]
        if len(recent) >= MAX_RESYNCS_PER_DAY:
            logger.warning("resync limit reached", extra={"folder": folder, "resyncs_24h": len(recent)})
            raise ProviderError(ErrorCode.CURSOR_INVALID,
                                f"cursor of folder {folder!r} invalid again after {len(recent)} resyncs in 24 h "
                                f"({error.detail})")
        state = self._state(folder)
        kept = [s for s in state.resyncs if now - parse_iso(s) < RESYNC_WINDOW]
        state.cursor, state.since, state.resyncs = None, None, kept + [isoformat(now)]
        self.resuming.discard(folder)             # another listing than the cut page's
        self._persist(state, [Mailbox.resync_count.add(1)])
        self.result.resynced_folders.append(folder)
        logger.info("cursor invalid: resyncing folder", extra={"folder": folder, "detail": error.detail})

    # --- fetching and storing ------------------------------------------------------------------------------
    def _fetch(self, refs: Sequence[MessageRef]) -> Iterable[FetchedMessage]:
        """Fetch a batch; a batch-level NOT_FOUND falls back to one-by-one (a provider that cannot say which
        item vanished); per-item `vanished` results are recorded and skipped."""
        done: set[str] = set()
        try:
            for fetched in self.provider.fetch(refs, max_bytes=self.max_bytes):
                done.add(fetched.ref.provider_id)
                yield fetched
            return
        except ProviderError as exc:
            if exc.code != ErrorCode.NOT_FOUND:
                raise
        for ref in refs:
            if ref.provider_id in done:
                continue
            try:
                yield from self.provider.fetch([ref], max_bytes=self.max_bytes)
            except ProviderError as exc:
                if exc.code != ErrorCode.NOT_FOUND:
                    raise
                yield FetchedMessage(ref=ref, raw=None, vanished=True)

    def _store_page(self, refs: Sequence[MessageRef], delta: SyncCounts) -> bool:
        """Fetch and store the page's refs, holding at most `page_raw_bytes` of raw mail at a time: fetched
        messages are buffered and stored together (`_flush`) when the next one would pass the budget, and at
        the end of the page (a message larger than the budget is stored alone). False when the invocation's
        time ran out between two fetch batches (`TimeBudget.may_continue_page`): what was fetched is stored,
        the rest of the page is left to the next run."""
        held: list[FetchedMessage] = []
        held_bytes = 0
        step_started = self.clock()
        for index, batch in enumerate(_chunks(refs, self.options.fetch_batch)):
            if index and not self.budget.may_continue_page(self.clock()):
                if held:
                    self._flush(held, delta)
                return False
            for fetched in self._fetch(batch):
                if fetched.vanished:
                    self.result.folder_errors[fetched.ref.folder] = _error(
                        "not_found", f"message {fetched.ref.provider_id} vanished before it was fetched")
                    continue
                delta.fetched += 1
                size = len(fetched.raw or b"")
                if held and held_bytes + size > self.page_raw_bytes:
                    self._flush(held, delta)
                    held, held_bytes = [], 0
                held.append(fetched)
                held_bytes += size
            now = self.clock()
            self.budget.step_done(now - step_started)
            step_started = now
        if held:
            self._flush(held, delta)
        return True

    def _flush(self, held: Sequence[FetchedMessage], delta: SyncCounts) -> None:
        started = self.clock()
        self._store_held(held, delta)
        self.budget.flush_done(self.clock() - started)

    def _store_held(self, held: Sequence[FetchedMessage], delta: SyncCounts) -> None:
        save_page = getattr(self.store, "save_page", None)
        if save_page is not None:
            outcomes = save_page(self.mailbox, held, lease_owner=self.lease.owner if self.lease else None)
        else:
            outcomes = [self.store.save_fetched(self.mailbox, fetched) for fetched in held]
        for outcome in outcomes:
            if outcome.refused:
                self.page_refused.add(outcome.message.provider_id)
            if outcome.created:
                if outcome.message.skipped_reason:
                    delta.skipped += 1
                else:
                    delta.imported += 1
        owing = [outcome.message for outcome in outcomes if outcome.message.owed or outcome.debt]
        debts = sorted({outcome.debt for outcome in outcomes if outcome.debt})
        self._page_effects(owing, self.mailbox, debts=debts)

    def _page_effects(self, messages: Sequence, mailbox: Mailbox, *, debts: Sequence[str]) -> None:
        """Pay what a page owes through `after_store`'s page form; a one-message `after_store` (no `.page`) is
        called per message and the page's debts are then removed."""
        page_effects = getattr(self.after_store, "page", None)
        if page_effects is not None:
            page_effects(messages, mailbox, debts=debts)
            return
        for message in messages:
            self.after_store(message)
        effects.settle_debts(mailbox, debts)

    def _pay_debts(self) -> None:
        """What a dead sync of this mailbox left owing (page debts on the mailbox item) is paid before syncing,
        so a replay completes it even when every message of its page is already stored."""
        if self.mailbox.owed_pages:
            effects.pay_debts(self.mailbox, page_effects=self._page_effects)

    def _known(self, folder: str, refs: Sequence[MessageRef]) -> dict[str, str | None]:
        """{provider id: message id (None when the store cannot say)} of the refs the store already holds."""
        if not refs:
            return {}
        provider_ids = [ref.provider_id for ref in refs]
        lookup = getattr(self.store, "stored_message_ids", None)
        if lookup is None:
            return dict.fromkeys(self.store.stored_provider_ids(self.mailbox, folder, provider_ids))
        return lookup(self.mailbox, folder, provider_ids)

    def _restore(self, message_ids: Sequence[str]) -> int:
        """Known `changed` refs are listed in the folder again: one that was marked removed at the source (an
        untrashed Gmail message, a Graph message moved back) is back (`store.restore_removed`). Before the
        page's removals, so an id the provider removed again later is marked anew."""
        restore = getattr(self.store, "restore_removed", None)
        return restore(self.mailbox, message_ids) if restore is not None and message_ids else 0

    def _read_state(self, refs: Sequence[MessageRef], known: dict[str, str | None]) -> int:
        """Record the read state the provider reported for stored messages (`ChangeSet.changed` and `flags`)
        in one batch (`threads/unread.py`); the ones just fetched carried it into their new item."""
        apply = getattr(self.store, "apply_read_state", None)
        seen = {known[ref.provider_id]: ref.seen for ref in refs
                if ref.seen is not None and known.get(ref.provider_id)}
        if apply is None or not seen:
            return 0
        return apply(self.mailbox.tenant_id, seen)

    def _resume_skips(self, folder: str, new: Sequence[MessageRef], unknown: Sequence[MessageRef],
                      delta: SyncCounts) -> list[MessageRef]:
        """The first page of a folder whose page an earlier run cut short is that page again (asked with the
        cursor the cut left: a resync or a re-listing in between drops the folder from `resuming`): its refs
        already stored (the store's `by_provider_ref` index) or refused by the cut runs (`cut_refused`, counted
        as skipped then) are not fetched again — each run gets further into a page slower than an invocation.
        Any other page's refs are all fetched (the store dedupes). `unknown`: the page's `changed` refs the store
        does not hold (already looked up)."""
        refs = list(new) + list(unknown)
        if folder not in self.resuming or not refs:
            return refs
        self.resuming.discard(folder)
        stored = self._known(folder, new)
        refused = self.cut_refused.get(folder, set()) & {ref.provider_id for ref in refs}
        self.page_refused |= refused             # still this page's, should it be cut again
        delta.known += len(stored)
        return [ref for ref in refs if ref.provider_id not in stored and ref.provider_id not in refused]

    # --- the page loop -------------------------------------------------------------------------------------
    def _start_cursor(self, folder: str) -> str | None:
        """The cursor to continue from; None (initial import) when `import_since` moved before the date the
        folder's initial import used (the earlier mail is listed again; the store dedupes)."""
        state = self._state(folder)
        if state.cursor is not None and state.since and self.since.isoformat() < state.since:
            logger.info("import_since moved earlier: re-listing the folder", extra={"folder": folder})
            state.cursor = None
            self.resuming.discard(folder)         # another listing than the cut page's
        if state.cursor is None:
            state.since = self.since.isoformat()
        return state.cursor

    def sync_folder(self, folder: str) -> bool:
        """Sync one folder; False when the deadline stopped it with more pages pending."""
        cursor = self._start_cursor(folder)
        state = self._state(folder)
        while True:
            page_started = self.clock()
            self.page_refused = set()
            try:
                change_set = self.provider.changes(folder, cursor, since=self.since, page_size=self.options.page_size)
            except ProviderError as exc:
                if exc.code == ErrorCode.CURSOR_INVALID and cursor is not None:
                    self._begin_resync(folder, exc)
                    cursor = self._start_cursor(folder)
                    continue
                if exc.code == ErrorCode.NOT_FOUND:
                    self.result.folder_errors[folder] = _error("not_found", exc.detail)
                    logger.warning("folder not found; skipped", extra={"folder": folder})
                    return True
                raise
            if change_set.resynced:
                self.result.resynced_folders.append(folder)
            delta = SyncCounts(pages=1)
            listed = {ref.provider_id for ref in change_set.new}
            changed = [ref for ref in change_set.changed if ref.provider_id not in listed]
            listed |= {ref.provider_id for ref in changed}
            flagged = [ref for ref in change_set.flags if ref.seen is not None and ref.provider_id not in listed]
            known = self._known(folder, changed + flagged)
            unknown = [ref for ref in changed if ref.provider_id not in known]
            delta.known = len(changed) - len(unknown)
            if not self._store_page(self._resume_skips(folder, change_set.new, unknown, delta), delta):
                self.cut_folders.add(folder)              # the cursor stays: the next run reads this page again
                self.cut_refused[folder] = self.page_refused
                self.counts.add(delta)
                self.budget.page_done(self.clock() - page_started)    # a lower bound of the whole page's time
                logger.info("page cut short: continuing in a new invocation", extra={"folder": folder})
                return False
            if folder in self.cut_folders:
                self.cut_folders.discard(folder)
                self.cut_refused.pop(folder, None)
                self.done_marks.add(cut_mark(self.mailbox, folder))   # with this page's cursor (`_persist`)
            delta.restored = self._restore([known[ref.provider_id] for ref in changed if known.get(ref.provider_id)])
            delta.read_state = self._read_state(changed + flagged, known)
            if change_set.removed:
                delta.removed += self.store.mark_removed(self.mailbox, folder, list(change_set.removed))
            if change_set.has_more and change_set.next_cursor == cursor:
                raise ProviderError(ErrorCode.PERMANENT, f"provider did not advance the cursor of {folder!r}")
            if change_set.next_cursor != cursor or state.cursor is None:
                state.cursor = change_set.next_cursor
                if change_set.has_more or len(self.pending) >= MAX_PENDING_CURSORS:
                    self._persist(state)
                else:
                    self.pending[folder] = state          # the folder is done: written with the next one
            self.counts.add(delta)
            self.budget.page_done(self.clock() - page_started)
            cursor = change_set.next_cursor
            if not change_set.has_more:
                return True
            if not self.budget.may_start_page(self.clock()):
                return False

    def _page_time(self) -> list:
        """The longest page of this run, for the next run's budget, and the folders whose page is cut short
        (`time_budget.py`): what the release writes."""
        actions = [Mailbox.page_seconds.set(round(self.budget.measured, 1))] if self.budget.measured > 0 else []
        marks = {cut_mark(self.mailbox, folder) for folder in self.cut_folders}
        if marks != set(self.mailbox.cut_folders or ()):               # also drops an earlier epoch's marks
            actions.append(Mailbox.cut_folders.set(marks) if marks else Mailbox.cut_folders.remove())
        refused = {cut_mark(self.mailbox, folder): sorted(ids) for folder, ids in self.cut_refused.items()
                   if folder in self.cut_folders and ids}
        if refused != (self.mailbox.cut_refused or {}):
            actions.append(Mailbox.cut_refused.set(refused) if refused else Mailbox.cut_refused.remove())
        return actions

    def run(self) -> SyncResult:
        with effects.clears_deferred() as self.paid_debts:
            try:
                return self._run()
            except Exception:
                self._flush_after_failure()
                raise

    def _run(self) -> SyncResult:
        self._pay_debts()
        folders = folders_to_sync(self.mailbox, self.provider.folders())   # a missing named one → folder_errors
        for index, folder in enumerate(folders):
            finished = self.sync_folder(folder)
            out_of_time = not self.budget.may_start_page(self.clock()) and index < len(folders) - 1
            if not finished or out_of_time:
                self._flush_cursors()
                self.result.outcome = "continue"
                self.result.final_actions = [Mailbox.sync_stage.set("queued")] + self._page_time()
                logger.info("checkpoint: continuing in a new invocation",
                            extra={"folder": folder, "page_seconds": round(self.budget.measured, 1)})
                return self.result
        self._flush_cursors()
        actions = [Mailbox.sync_stage.set("idle"), Mailbox.last_success_at.set(now_iso()),
                   Mailbox.not_before.remove()] + self._page_time()
        if self.result.folder_errors:
            actions.append(Mailbox.last_error.set(next(iter(self.result.folder_errors.values()))))
        else:
            actions.append(Mailbox.last_error.remove())
        self.result.final_actions = actions
        return self.result


def sync_mailbox(mailbox: Mailbox, provider: MailProvider, deadline: float, *, lease: Lease | None = None,
                 options: SyncOptions = SyncOptions(), clock: Callable[[], float] = time.monotonic,
                 store=message_store, after_store: effects.Effects | None = None,
                 budget: TimeBudget | None = None) -> SyncResult:
    """Bring `mailbox` up to date from `provider` until done or `deadline` (a `clock()` value) passes — or, with
    the worker's `budget` (whose own deadline is `deadline`), until the next page could not finish in the
    invocation.

    `lease` (from `sync.lease.acquire`) makes every state write conditional on still owning the mailbox; the
    final state is returned in `SyncResult.final_actions` for the caller to write with `lease.release` (without
    a lease it is written here). `after_store` pays what a new message owes (default `effects.complete`:
    pairing per the mailbox's mode, then `message.created`). Raises ProviderError for the caller's error
    handler (`errors.handle_provider_error`) and LeaseLost.
    """
    if budget is None:
        budget = TimeBudget(end=math.inf, deadline=deadline, cap=math.inf)
    run = _Run(mailbox, provider, budget, options=options, store=store, lease=lease, clock=clock,
               after_store=after_store)
    result = run.run()
    if lease is None:
        mailbox.update(actions=result.final_actions, condition=Mailbox.mailbox_id.exists())
    return result


__all__ = ["sync_mailbox", "SyncOptions", "SyncResult", "SyncCounts", "LeaseLost", "MAX_RESYNCS_PER_DAY"]
