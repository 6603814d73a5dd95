"""Hourly sweep: re-enqueue mailboxes left "syncing" by a worker that died (its lease expired unreleased).

A crashed or timed-out worker never releases its lease; its persisted cursors are intact, so a new job
simply resumes. The :00/:30 scheduler would get there too; this sweep makes recovery independent of it and
reports how many mailboxes were stuck. Active mailboxes are read through the `by_status` GSI (keys only) and
then `BatchGetItem` (≤100 keys a call) — no scan.

It warns before known credential expiries (`sync/credential_expiry.py`: `mailbox.credentials_expiring`).
It also keeps push registrations alive (`sync/push.py`: Gmail watch, Graph subscriptions, `mailbox.push_expiring`
when one cannot be renewed) and completes what stored messages still owe when a sync died before paying it
(`sync/effects.py`: pairing, `message.created`, counts) — the outbox sweeper. And it runs the webhook
deliveries' safety-net sweep (`notify.deliveries.run_due`: deliveries whose delayed
queue message was lost), within `WEBHOOK_SWEEP_SECONDS`, and the outbox's (`outbox.delivery.sweep`: items whose
job was lost or whose attempt died). And it deletes stored mail past its tenant's retention period, bounded
per run (`erasure/retention.py`).
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from itertools import chain
from typing import Callable, Iterator

from chalicelib.erasure import retention
from chalicelib.logs import logger
from chalicelib.models.mailbox import Mailbox
from chalicelib.notify import deliveries
from chalicelib.outbox import delivery as outbox_delivery
from chalicelib.providers.base import MailProvider
from chalicelib.providers.kinds import build_provider
from chalicelib.sync import credential_expiry, effects, push
from chalicelib.sync.enqueue import SyncJob, enqueue_many
from chalicelib.sync.scheduler import active_mailbox_keys
from chalicelib.timeutil import isoformat

BATCH_GET_LIMIT = 100
SWEEP_AFTER = timedelta(minutes=15)    # a live sync pays a message's debts within seconds of storing it
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


def run(now: float | None = None, *, provider_factory: Callable[[Mailbox], MailProvider] = build_provider
        ) -> dict[str, int]:
    now = time.time() if now is None else now
    owed_before = isoformat(datetime.fromtimestamp(now, timezone.utc) - SWEEP_AFTER)
    stuck: list[SyncJob] = []
    counts = {"stuck": 0, "enqueued": 0, "failed": 0, "push_started": 0, "push_renewed": 0, "push_failed": 0,
              "effects_completed": 0, "credentials_expiring": 0}
    servers: dict = {}
    seen: list[Mailbox] = []
    for mailbox in _mailboxes():
        seen.append(mailbox)
        if is_stuck(mailbox, now):
            stuck.append(SyncJob(mailbox.tenant_id, mailbox.mailbox_id, "recover"))
        outcome = push.maintain(mailbox, provider_factory=provider_factory)
        if outcome in ("started", "renewed", "failed"):
            counts[f"push_{outcome}"] += 1
        counts["effects_completed"] += effects.sweep(effects.left_behind(mailbox.mailbox_id, owed_before))
        counts["effects_completed"] += effects.pay_debts(mailbox, older_than=owed_before)
        try:
            counts["credentials_expiring"] += credential_expiry.check(mailbox, cache=servers)
        except Exception:  # noqa: BLE001 - a warning that fails now is emitted by the next run
            logger.exception("credential expiry check failed", extra={"mailbox_id": mailbox.mailbox_id})
    try:
        counts["retention_deleted"] = retention.sweep(chain(seen, retention.retired_mailboxes())).get("messages", 0)
    except Exception:  # noqa: BLE001 - the next run sweeps again
        logger.exception("retention sweep failed")
    result = enqueue_many(stuck)
    counts.update(stuck=len(stuck), enqueued=result.sent, failed=len(result.failed))
    if stuck or counts["push_failed"] or counts["effects_completed"]:
        logger.warning("renewer repaired mailboxes", extra=counts)
    try:
        counts["outbox_swept"] = outbox_delivery.sweep(provider_factory=provider_factory)
    except Exception:  # noqa: BLE001 - as below: the next run sweeps again
        logger.exception("outbox sweep failed")
    try:
        swept = deliveries.run_due(deadline=time.monotonic() + WEBHOOK_SWEEP_SECONDS)
    except Exception:  # noqa: BLE001 - the mailbox recovery above is done; the next run sweeps again
        logger.exception("webhook sweep failed")
    else:
        if swept["due"]:
            logger.warning("attempted overdue webhook deliveries", extra=swept)
    return counts
