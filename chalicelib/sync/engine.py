"""The one sync engine: drives any `MailProvider` through its folders, page by page, into the message store.

Invariant (closeio ImapFolderInfo; twenty messaging-cursor.service): `mailbox.cursors[folder]["cursor"]` means
"the store has incorporated every remote change up to at least this cursor". Hence, per page:

    changes(folder, cursor) → fetch the new refs in bounded batches → store.save_fetched each (idempotent)
    → pair + `message.created` for each new one → store.mark_removed
    → ONLY THEN persist next_cursor (+ counts) in one conditional update.

The cursor only moves forward: it is replaced only by the `next_cursor` of a page requested with the stored
cursor, and only by the lease holder (the write is conditional on `lease_owner`). A crash anywhere before that
write replays the page next time; the store dedupes, so nothing is duplicated and nothing is lost.

Checkpoint: when the deadline (Lambda time left minus a safety margin) has passed at a page boundary, the
engine persists what it has and returns outcome "continue"; the worker re-enqueues the mailbox.

CURSOR_INVALID (UIDVALIDITY changed, stale historyId, delta 410) → bounded resync: the folder's cursor is
reset to None and the folder re-listed since `import_since`; the store's natural keys make that duplicate-free.
At most `MAX_RESYNCS_PER_DAY` resyncs per mailbox in a rolling 24 h window (closeio MAX_UIDINVALID_RESYNCS);
beyond it the CURSOR_INVALID error propagates to `errors.handle_provider_error` (mailbox error, no retry).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Callable, Iterable, Sequence

from pynamodb.exceptions import UpdateError

from chalicelib.config import get_settings
from chalicelib.logs import logger
from chalicelib.models.mailbox import Mailbox
from chalicelib.notify.events import emit
from chalicelib.providers.base import ErrorCode, FetchedMessage, MailProvider, MessageRef, ProviderError
from chalicelib.timeutil import isoformat, now_iso, parse_iso, utcnow

MAX_RESYNCS_PER_DAY = 3
RESYNC_WINDOW = timedelta(hours=24)
DEFAULT_PAGE_SIZE = 100
DEFAULT_FETCH_BATCH = 20


class LeaseLost(Exception):
    """Another worker owns the mailbox now (our lease expired); stop without writing more sync state."""


@dataclass
class SyncCounts:
    imported: int = 0
    skipped: int = 0
    removed: int = 0
    fetched: int = 0
    pages: int = 0

    def stored_delta(self) -> dict[str, int]:
        return {"imported": self.imported, "skipped": self.skipped, "removed": self.removed}


@dataclass
class SyncResult:
    outcome: str                       # "done" | "continue"
    counts: SyncCounts
    folder_errors: dict[str, dict[str, str]] = field(default_factory=dict)
    resynced_folders: list[str] = field(default_factory=list)


def _default_store():
    from chalicelib.sync import store  # imported on use: store → pairing → models would cycle at import
    return store


def _pairing_hook() -> Callable[[Any], Any]:
    from chalicelib.pairing.engine import pair_message
    return pair_message


def _chunks(items: Sequence[MessageRef], size: int) -> Iterable[Sequence[MessageRef]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _error(code: str, detail: str) -> dict[str, str]:
    return {"code": code, "detail": detail[:500], "at": now_iso()}


class _Run:
    """One sync pass over one mailbox (state kept here so helpers stay small)."""

    def __init__(self, mailbox: Mailbox, provider: MailProvider, deadline: float, *, page_size: int,
                 fetch_batch: int, store, lease, clock: Callable[[], float], pair):
        self.mailbox, self.provider, self.deadline = mailbox, provider, deadline
        self.page_size, self.fetch_batch = page_size, fetch_batch
        self.store, self.lease, self.clock, self.pair = store, lease, clock, pair
        self.counts = SyncCounts()
        self.result = SyncResult("done", self.counts)
        self.since = date.fromisoformat(mailbox.import_since[:10])
        self.max_bytes = get_settings().max_message_bytes

    # --- persistence (every write is conditional on still holding the lease) ---------------------------
    def _update(self, actions: list) -> None:
        condition = Mailbox.mailbox_id.exists()
        if self.lease is not None:
            condition = condition & (Mailbox.lease_owner == self.lease.owner)
            actions = actions + [Mailbox.lease_expires_at.set(time.time() + _lease_seconds())]
        try:
            self.mailbox.update(actions=actions, condition=condition)
        except UpdateError as exc:
            if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
                raise LeaseLost(self.mailbox.mailbox_id) from None
            raise

    def _cursor_entry(self, folder: str) -> dict[str, Any]:
        return dict((self.mailbox.cursors or {}).get(folder) or {})

    def _persist_page(self, folder: str, next_cursor: str, delta: SyncCounts) -> None:
        cursors = dict(self.mailbox.cursors or {})
        entry = self._cursor_entry(folder)
        entry.update(cursor=next_cursor, updated_at=now_iso())
        cursors[folder] = entry
        counts = dict(self.mailbox.counts or {})
        for key, value in delta.stored_delta().items():
            counts[key] = int(counts.get(key, 0)) + value
        self._update([Mailbox.cursors.set(cursors), Mailbox.counts.set(counts)])

    def _begin_resync(self, folder: str, error: ProviderError) -> None:
        """Reset the folder's cursor (bounded); raise the CURSOR_INVALID error once over the cap."""
        now = utcnow()
        cursors = dict(self.mailbox.cursors or {})
        recent = [stamp for entry in cursors.values() for stamp in (entry or {}).get("resyncs", [])
                  if now - parse_iso(stamp) < RESYNC_WINDOW]
        if len(recent) >= MAX_RESYNCS_PER_DAY:
            logger.warning("resync limit reached", extra={"folder": folder, "resyncs_24h": len(recent)})
            raise ProviderError(ErrorCode.CURSOR_INVALID,
                                f"cursor of folder {folder!r} invalid again after {len(recent)} resyncs in 24 h "
                                f"({error.detail})")
        entry = self._cursor_entry(folder)
        kept = [s for s in entry.get("resyncs", []) if now - parse_iso(s) < RESYNC_WINDOW]
        entry.update(cursor=None, updated_at=isoformat(now), resyncs=kept + [isoformat(now)])
        cursors[folder] = entry
        self._update([Mailbox.cursors.set(cursors), Mailbox.resync_count.add(1)])
        self.result.resynced_folders.append(folder)
        logger.info("cursor invalid: resyncing folder", extra={"folder": folder, "detail": error.detail})

    # --- the page loop -----------------------------------------------------------------------------------
    def _fetch(self, refs: Sequence[MessageRef]) -> Iterable[FetchedMessage]:
        """Fetch a batch; if one ref vanished (NOT_FOUND), fall back to one-by-one and skip the missing."""
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
                self.result.folder_errors[ref.folder] = _error("not_found", f"message vanished: {exc.detail}")

    def _store_page(self, refs: Sequence[MessageRef], delta: SyncCounts) -> None:
        for batch in _chunks(refs, self.fetch_batch):
            for fetched in self._fetch(batch):
                delta.fetched += 1
                outcome = self.store.save_fetched(self.mailbox, fetched)
                if not outcome.created:
                    continue  # already stored (redelivery, resync): nothing new to count or pair
                if outcome.message.skipped_reason:
                    delta.skipped += 1
                    continue
                delta.imported += 1
                self._pair(outcome.message)
                self._announce(outcome.message)

    def _pair(self, message) -> None:
        if self.pair is None:
            return
        try:
            self.pair(message)
        except Exception:  # noqa: BLE001 - the stored message stays; pairing can be redone by hand
            logger.exception("pairing failed; message kept", extra={"message_id": getattr(message, "message_id", None)})

    def _announce(self, message) -> None:
        """`message.created` once per stored message (a redelivery finds it stored: created=False, no event)."""
        try:
            emit(message.tenant_id, "message.created", {"message_id": message.message_id,
                                                        "mailbox_id": message.mailbox_id, "folder": message.folder,
                                                        "direction": message.direction})
        except Exception:  # noqa: BLE001 - the message is stored; a lost notification must not undo that
            logger.exception("message.created event failed", extra={"message_id": message.message_id})

    def sync_folder(self, folder: str) -> bool:
        """Sync one folder; False when the deadline stopped it with more pages pending."""
        cursor = self._cursor_entry(folder).get("cursor")
        while True:
            try:
                change_set = self.provider.changes(folder, cursor, since=self.since, page_size=self.page_size)
            except ProviderError as exc:
                if exc.code == ErrorCode.CURSOR_INVALID and cursor is not None:
                    self._begin_resync(folder, exc)
                    cursor = None
                    continue
                if exc.code == ErrorCode.NOT_FOUND:
                    self.result.folder_errors[folder] = _error("not_found", exc.detail)
                    logger.warning("folder not found; skipped", extra={"folder": folder})
                    return True
                raise
            if change_set.resynced:
                self.result.resynced_folders.append(folder)
            delta = SyncCounts(pages=1)
            self._store_page(change_set.new, delta)
            if change_set.removed:
                delta.removed += self.store.mark_removed(self.mailbox, folder, list(change_set.removed))
            if change_set.has_more and change_set.next_cursor == cursor:
                raise ProviderError(ErrorCode.PERMANENT, f"provider did not advance the cursor of {folder!r}")
            if change_set.next_cursor != cursor or delta.imported or delta.skipped or delta.removed:
                self._persist_page(folder, change_set.next_cursor, delta)
            for name in ("imported", "skipped", "removed", "fetched", "pages"):
                setattr(self.counts, name, getattr(self.counts, name) + getattr(delta, name))
            cursor = change_set.next_cursor
            if not change_set.has_more:
                return True
            if self.clock() >= self.deadline:
                return False

    def run(self) -> SyncResult:
        folders = self.provider.folders()
        for index, folder in enumerate(folders):
            finished = self.sync_folder(folder)
            out_of_time = self.clock() >= self.deadline and index < len(folders) - 1
            if not finished or out_of_time:
                self.result.outcome = "continue"
                self._update([Mailbox.sync_stage.set("queued")])
                logger.info("checkpoint: continuing in a new invocation", extra={"folder": folder})
                return self.result
        actions = [Mailbox.sync_stage.set("idle"), Mailbox.last_success_at.set(now_iso())]
        if self.result.folder_errors:
            first = next(iter(self.result.folder_errors.values()))
            actions.append(Mailbox.last_error.set(first))
        else:
            actions.append(Mailbox.last_error.remove())
        self._update(actions)
        return self.result


def _lease_seconds() -> int:
    from chalicelib.sync.lease import lease_seconds
    return lease_seconds()


def sync_mailbox(mailbox: Mailbox, provider: MailProvider, deadline: float, *,
                 page_size: int = DEFAULT_PAGE_SIZE, fetch_batch: int = DEFAULT_FETCH_BATCH, store=None,
                 lease=None, clock: Callable[[], float] = time.monotonic, pair: Callable | None | bool = True
                 ) -> SyncResult:
    """Bring `mailbox` up to date from `provider` until done or `deadline` (a `clock()` value) passes.

    `store` defaults to `chalicelib.sync.store`; `lease` (from `sync.lease.acquire`) makes every state write
    conditional on still owning the mailbox; `pair=True` pairs each new message with `pairing.engine.pair_message`.
    Raises ProviderError for the caller's error handler (`errors.handle_provider_error`) and LeaseLost.
    """
    hook = _pairing_hook() if pair is True else (pair or None)
    run = _Run(mailbox, provider, deadline, page_size=page_size, fetch_batch=fetch_batch,
               store=store or _default_store(), lease=lease, clock=clock, pair=hook)
    return run.run()


__all__ = ["sync_mailbox", "SyncResult", "SyncCounts", "LeaseLost", "MAX_RESYNCS_PER_DAY"]
