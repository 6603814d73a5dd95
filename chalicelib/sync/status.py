"""Manual refresh (rate-limited) and the sync status view of a mailbox.

Refresh limit: one per `Settings.refresh_interval_seconds` (300 s) per mailbox, enforced by ONE conditional
update of `last_refresh_at` (set it to now only if it is absent or older than the interval), so two
concurrent refreshes cannot both pass. A refresh while a sync runs only flags the lease's follow-up
(coalescing); otherwise it enqueues a job.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from dataclasses import dataclass
from typing import Any

from pynamodb.exceptions import DoesNotExist, UpdateError

from chalicelib.config import get_settings
from chalicelib.models.mailbox import Mailbox
from chalicelib.sync import cursors
from chalicelib.sync.enqueue import request_sync
from chalicelib.sync.lease import lease_is_live
from chalicelib.timeutil import isoformat, parse_iso, utcnow


@dataclass(frozen=True)
class RefreshOutcome:
    queued: bool
    retry_after: int = 0
    how: str = ""            # "queued" | "coalesced" | ""


class MailboxNotSyncable(Exception):
    """The mailbox is not active (pending_auth, auth_error, ...): there is nothing a refresh could do."""

    def __init__(self, status: str):
        super().__init__(status)
        self.status = status


def request_refresh(mailbox: Mailbox, *, now: float | None = None) -> RefreshOutcome:
    if mailbox.status != "active":
        raise MailboxNotSyncable(mailbox.status)
    now = time.time() if now is None else now
    interval = get_settings().refresh_interval_seconds
    try:
        mailbox.update(actions=[Mailbox.last_refresh_at.set(now)],
                       condition=Mailbox.mailbox_id.exists()
                       & (Mailbox.last_refresh_at.does_not_exist() | (Mailbox.last_refresh_at <= now - interval)))
    except UpdateError as exc:
        if getattr(exc, "cause_response_code", None) != "ConditionalCheckFailedException":
            raise
        try:
            current = Mailbox.get(mailbox.tenant_id, mailbox.mailbox_id, consistent_read=True)
        except DoesNotExist:
            raise MailboxNotSyncable("deleted") from None
        last = float(current.last_refresh_at or now)
        return RefreshOutcome(queued=False, retry_after=max(1, int(last + interval - now + 0.999)))
    how = request_sync(mailbox.tenant_id, mailbox.mailbox_id, "refresh")
    return RefreshOutcome(queued=True, how=how)


def _age_seconds(iso: str | None) -> int | None:
    if not iso:
        return None
    return max(0, int((utcnow() - parse_iso(iso)).total_seconds()))


def sync_status(mailbox: Mailbox, *, now: float | None = None) -> dict[str, Any]:
    """What the API shows. Cursor values are provider internals (UIDVALIDITY/UID, historyId, delta links):
    only their age and whether one exists are shown."""
    legacy = mailbox.counts or {}
    counters = {"imported": mailbox.imported_count, "skipped": mailbox.skipped_count,
                "removed": mailbox.removed_count}
    folders = []
    for folder, state in sorted(cursors.load_all(mailbox).items()):
        folders.append({"folder": folder, "has_cursor": bool(state.cursor), "updated_at": state.updated_at,
                        "age_seconds": _age_seconds(state.updated_at)})
    now = time.time() if now is None else now
    throttled_until = mailbox.not_before if (mailbox.not_before or 0) > now else None
    return {
        "mailbox_id": mailbox.mailbox_id,
        "status": mailbox.status,
        "stage": mailbox.sync_stage or "idle",
        "last_sync_started_at": mailbox.last_sync_started_at,
        "last_success_at": mailbox.last_success_at,
        "idle_heartbeat_seconds": max(0, get_settings().idle_heartbeat_seconds),
        "last_error": mailbox.last_error or None,
        "counts": {key: int(legacy.get(key, 0)) + int(value or 0) for key, value in counters.items()},
        "throttled_until": isoformat(datetime.fromtimestamp(throttled_until, timezone.utc))
        if throttled_until else None,
        "push_error": mailbox.push_error or None,
        "cursors": folders,
        "push_expires_at": mailbox.push_expires_at,
        "lease_held": lease_is_live(mailbox, now),
        "follow_up_requested": bool(mailbox.sync_requested),
        "resync_count": int(mailbox.resync_count or 0),
    }
