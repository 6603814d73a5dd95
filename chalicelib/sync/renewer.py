"""Hourly sweep: re-enqueue mailboxes left "syncing" by a worker that died (its lease expired unreleased).

A crashed or timed-out worker never releases its lease; its persisted cursors are intact, so a new job
simply resumes. The :00/:30 scheduler would get there too; this sweep makes recovery independent of it and
reports how many mailboxes were stuck. Active mailboxes are read through the `by_status` GSI (keys only) and
then `BatchGetItem` (≤100 keys a call) — no scan.

It also runs the webhook deliveries' safety-net sweep (`notify.deliveries.run_due`: deliveries whose delayed
queue message was lost), within `WEBHOOK_SWEEP_SECONDS`.

Later issues add the renewals the design lists here: Gmail `watch`, Graph subscription renewal and
credential-expiry warnings.
"""
from __future__ import annotations

import time
from typing import Iterator

from chalicelib.logs import logger
from chalicelib.models.mailbox import Mailbox
from chalicelib.notify import deliveries
from chalicelib.sync.enqueue import SyncJob, enqueue_many
from chalicelib.sync.scheduler import active_mailbox_keys

BATCH_GET_LIMIT = 100
STUCK_STAGES = ("syncing", "queued")
WEBHOOK_SWEEP_SECONDS = 300


def is_stuck(mailbox: Mailbox, now: float) -> bool:
    """In a sync stage with no live lease: its worker is gone. (`queued` = a checkpoint whose continuation
    job never took the lease; both are harmless to re-enqueue, the lease makes duplicates coalesce.)"""
    if mailbox.sync_stage not in STUCK_STAGES:
        return False
    if mailbox.lease_owner:
        return (mailbox.lease_expires_at or 0) < now
    return mailbox.sync_stage == "syncing"


def _mailboxes() -> Iterator[Mailbox]:
    keys: list[tuple[str, str]] = []
    for key in active_mailbox_keys():
        keys.append(key)
        if len(keys) == BATCH_GET_LIMIT:
            yield from Mailbox.batch_get(keys)
            keys = []
    if keys:
        yield from Mailbox.batch_get(keys)


def run(now: float | None = None) -> dict[str, int]:
    now = time.time() if now is None else now
    stuck = [SyncJob(m.tenant_id, m.mailbox_id, "recover") for m in _mailboxes() if is_stuck(m, now)]
    result = enqueue_many(stuck)
    counts = {"stuck": len(stuck), "enqueued": result.sent, "failed": len(result.failed)}
    if stuck:
        logger.warning("re-enqueued stuck mailboxes", extra=counts)
    try:
        swept = deliveries.run_due(deadline=time.monotonic() + WEBHOOK_SWEEP_SECONDS)
    except Exception:  # noqa: BLE001 - the mailbox recovery above is done; the next run sweeps again
        logger.exception("webhook sweep failed")
    else:
        if swept["due"]:
            logger.warning("attempted overdue webhook deliveries", extra=swept)
    return counts
