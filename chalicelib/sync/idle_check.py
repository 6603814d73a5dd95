"""The idle check: a scheduled sync of a mailbox with nothing new costs no DynamoDB write.

Most scheduled syncs (the :00/:30 tick) find nothing: the full path would still take the lease and release it
(two conditional writes of the mailbox item). Instead, before the lease, the worker asks the provider the
question the engine asks first — `changes(folder, stored_cursor)` for every synced folder (IMAP: one STATUS per
folder; Gmail: `users.history.list` from the stored historyId; Graph: the stored delta link) — and stops there
when every answer is an empty page. Anything else (a new/changed/removed ref, another page, a resync, an
error, a folder without a cursor) sends the job down the normal path: lease, engine, release.

Why this is safe without the lease (the lease is what makes the writer unique, and the check writes nothing):
- it writes nothing at all — no cursor, no mailbox attribute, no message — so it cannot race a lease holder
  (the one write it can cause is outside the lease anyway: an expired access token is refreshed and the rotated
  credentials saved with their own version check, credentials/tokens.py);
- a stored cursor means "the store has incorporated every remote change up to this cursor" (sync/cursors.py).
  An empty page from that cursor means the provider had nothing after it when asked; a cursor the provider
  advanced anyway (Gmail's historyId moves with activity in other labels, Graph may hand out a new delta link)
  is dropped, which only means the next check asks from the older, still valid, cursor again;
- a change that lands during or after the check is found by its push job (pushes never take this shortcut) or
  by the next tick;
- a crash anywhere in the check leaves the state exactly as it was;
- asking is side-effect free: `changes()` answers from the cursor and the remote state alone (IMAP STATUS /
  UID SEARCH, Gmail history, Graph delta links can all be asked again), so the sync that follows a non-empty
  answer asks the same question again and gets the same changes.

Heartbeat: the check applies only while the mailbox's last full sync succeeded less than
`Settings.idle_heartbeat_seconds` (default 6 h, `MAILBRIDGE_IDLE_HEARTBEAT_SECONDS`; 0 turns the check off)
ago; then a normal sync runs, which writes `last_success_at` and persists any advanced cursor (Gmail keeps a
history record for at least a week: https://developers.google.com/gmail/api/guides/sync). So `last_success_at`
of an idle mailbox lags by at most the heartbeat plus one tick, and an error is still recorded at once: a
mailbox-wide error the check meets (auth, throttling, temporary, permanent) is recorded by the worker under the
lease exactly as a sync's would be, without asking the provider again (a throttled provider must not be asked
twice); CURSOR_INVALID and NOT_FOUND run the normal sync, whose engine resyncs or skips the folder.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from typing import Callable

from chalicelib.config import get_settings
from chalicelib.logs import logger
from chalicelib.models.mailbox import Mailbox, folders_to_sync
from chalicelib.providers.base import ErrorCode, MailProvider, ProviderError
from chalicelib.sync import cursors
from chalicelib.sync.lease import lease_is_live
from chalicelib.timeutil import parse_iso, utcnow

CHECK_REASONS = frozenset({"schedule"})     # pushes and refreshes announce a change: they sync in full


def eligible(mailbox: Mailbox, reason: str, *, now: float | None = None) -> bool:
    """Whether a job may try the idle check: a scheduled job for a mailbox whose last sync ended cleanly
    (stage idle, no error, no throttle, no lease, no follow-up, no legacy cursors, no page debt a dead sync
    left — the leased sync pays it first) within the heartbeat."""
    heartbeat = get_settings().idle_heartbeat_seconds
    if reason not in CHECK_REASONS or heartbeat <= 0:
        return False
    if (mailbox.sync_stage or "idle") != "idle" or mailbox.last_error or mailbox.not_before is not None:
        return False
    if mailbox.sync_requested or mailbox.cursors is not None or lease_is_live(mailbox, now):
        return False
    if mailbox.owed_pages or not mailbox.last_success_at:
        return False
    age = (utcnow() - parse_iso(mailbox.last_success_at)).total_seconds()
    if now is not None:
        age += now - time.time()
    return 0 <= age < heartbeat


def nothing_new(mailbox: Mailbox, provider: MailProvider, *, page_size: int, deadline: float | None = None,
                clock: Callable[[], float] = time.monotonic) -> bool:
    """True when every synced folder's `changes()` from its stored cursor is an empty, final page. Reads the
    cursors (one Query) and asks the provider; writes nothing. ProviderError propagates (the caller syncs).
    False too once `clock()` reaches `deadline` before a folder is asked (a slow server: the sync decides)."""
    since = date.fromisoformat(mailbox.import_since[:10])
    states = cursors.load_all(mailbox)
    for folder in folders_to_sync(mailbox, provider.folders()):         # the folders the engine would visit
        if deadline is not None and clock() >= deadline:
            logger.info("idle check out of time: the sync decides")
            return False
        state = states.get(folder)
        if state is None or state.cursor is None or (state.since and since.isoformat() < state.since):
            return False                  # initial import pending, or import_since moved earlier: re-list
        page = provider.changes(folder, state.cursor, since=since, page_size=page_size)
        if page.new or page.changed or page.flags or page.removed or page.has_more or page.resynced:
            return False
    return True


@dataclass
class Checked:
    """What an idle check that found something hands the leased sync: the mailbox it read and either its open
    provider (reused) or the mailbox-wide error the provider answered (recorded without asking again — a
    throttled provider must not be asked twice)."""
    mailbox: Mailbox
    provider: MailProvider | None = None
    error: ProviderError | None = None


# Errors the engine handles per folder (bounded resync, vanished folder): after such an answer the check runs a
# normal sync instead of recording an error.
ENGINE_HANDLED = frozenset({ErrorCode.CURSOR_INVALID, ErrorCode.NOT_FOUND})


def run(mailbox: Mailbox, reason: str, provider_factory: Callable[[Mailbox], MailProvider], *,
        page_size: int, deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic) -> "str | Checked | None":
    """"idle" when the provider has nothing new (nothing written); else what the check learnt for the leased
    sync (its open provider — the caller closes it — or the mailbox-wide error it met); None when the check
    does not apply, the engine must handle the answer, or `deadline` (a `clock()` value) has passed already.
    A deadline passing during the check ends it as "something to do" (`nothing_new`)."""
    if not eligible(mailbox, reason):
        return None
    if deadline is not None and clock() >= deadline:
        return None
    provider = None
    try:
        provider = provider_factory(mailbox)
        if nothing_new(mailbox, provider, page_size=page_size, deadline=deadline, clock=clock):
            provider.close()
            logger.info("idle check: nothing new")
            return "idle"
    except ProviderError as exc:
        if provider is not None:
            provider.close()
        if exc.code in ENGINE_HANDLED:
            return None               # the engine resyncs / skips the folder: a normal sync
        return Checked(mailbox, error=exc)    # recorded under the lease, the provider is not asked again
    except BaseException:
        if provider is not None:
            provider.close()
        raise
    return Checked(mailbox, provider=provider)
