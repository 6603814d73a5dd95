"""The :00/:30 tick (EventBridge cron): one sync job per active mailbox.

Active mailboxes come from the `by_status` GSI (keys-only projection: tenant_id, mailbox_id), read page by page —
never a table scan — and the tenants of each page are read with BatchGetItem. Jobs go out with `SendMessageBatch`
(10 per call), `enqueue.SEND_CONCURRENCY` calls in flight at once, to the check queue (`check.py`: the idle check in
a small function, which forwards only mailboxes with news to the worker) when `MAILBRIDGE_CHECK_QUEUE_URL` is set,
else to the sync queue. With `MAILBRIDGE_SCHEDULER_JITTER_SECONDS` > 0 each job gets a random `DelaySeconds` inside
that window (SQS caps it at 900 s) so thousands of mailboxes do not hit their mail servers in the same second. A
failing batch is logged and counted; the tick carries on with the rest. Entries SQS refuses are re-sent after a
pause (`enqueue.send_batch`); the mailboxes still refused miss this tick — the tick's line is then an ERROR naming
them (up to `FAILED_NAMED`) — and are scheduled by the next (≤ 30 min later). The tick does not raise for them: a
failed invocation is retried whole (EventBridge invokes the function asynchronously, and Lambda retries a failed
asynchronous invocation twice: AWS Lambda developer guide, "Asynchronous invocation"), enqueuing every mailbox
again.
Mailboxes already syncing are enqueued too — the worker coalesces them into at most one follow-up. Mailboxes of
tenants that are suspended or whose plan lacks mailbox connection are left out (each tenant read once per tick, in
its page's batch); they are scheduled again once it is active.
"""
from __future__ import annotations

import random
from datetime import datetime
from typing import Iterator

from chalicelib.config import get_settings
from chalicelib.logs import logger
from chalicelib.models.mailbox import Mailbox
from chalicelib.tenancy.service import SyncPermission
from chalicelib.sync.enqueue import MAX_DELAY_SECONDS, SyncJob, enqueue_many, scheduled_queue_url
from chalicelib.timeutil import isoformat, utcnow

FAILED_NAMED = 100       # mailboxes named in the tick's ERROR line when SQS refused their jobs
QUERY_PAGE_SIZE = 1000  # keys-only GSI items are ~100 bytes: a page stays far below DynamoDB's 1 MB


def jitter_window_seconds() -> int:
    return max(0, min(MAX_DELAY_SECONDS, get_settings().scheduler_jitter_seconds))


def active_mailbox_pages(page_size: int = QUERY_PAGE_SIZE) -> Iterator[list[tuple[str, str]]]:
    """(tenant_id, mailbox_id) of every active mailbox, one by_status GSI page at a time."""
    page: list[tuple[str, str]] = []
    for item in Mailbox.by_status.query("active", page_size=page_size):
        page.append((item.tenant_id, item.mailbox_id))
        if len(page) == page_size:
            yield page
            page = []
    if page:
        yield page


def active_mailbox_keys(page_size: int = QUERY_PAGE_SIZE) -> Iterator[tuple[str, str]]:
    """(tenant_id, mailbox_id) of every active mailbox, paged through the by_status GSI."""
    for page in active_mailbox_pages(page_size):
        yield from page


def run_tick(now: datetime | None = None, *, jitter_seconds: int | None = None,
             rand: random.Random | None = None) -> dict[str, int | str]:
    now = now or utcnow()
    window = jitter_window_seconds() if jitter_seconds is None else jitter_seconds
    rand = rand or random.Random()
    failed_tenants: set[str] = set()
    skipped_tenants: set[str] = set()

    permitted = SyncPermission(ttl=3600.0)   # each tenant read once per tick

    def jobs() -> Iterator[SyncJob]:
        for page in active_mailbox_pages():
            permitted.prefetch(tenant_id for tenant_id, _ in page)   # BatchGetItem, ≤100 keys a call
            for tenant_id, mailbox_id in page:
                if not permitted(tenant_id):
                    skipped_tenants.add(tenant_id)
                    continue
                yield SyncJob(tenant_id, mailbox_id, "schedule", rand.randint(0, window) if window else 0)

    def on_error(batch, exc) -> None:
        tenants = sorted({job.tenant_id for job in batch})
        failed_tenants.update(tenants)
        logger.error("scheduler batch failed", extra={"tenants": tenants, "jobs": len(batch),
                                                       "error": type(exc).__name__})

    result = enqueue_many(jobs(), on_error=on_error, queue_url=scheduled_queue_url())
    for job in result.failed:
        failed_tenants.add(job.tenant_id)
    counts = {"tick": isoformat(now), "enqueued": result.sent, "failed": len(result.failed),
              "failed_tenants": len(failed_tenants), "skipped_tenants": len(skipped_tenants)}
    if result.failed:
        # Not synced this tick: the next one (≤ 30 min) schedules them again. Named, so that it shows.
        logger.error("scheduler tick", extra={**counts, "failed_mailboxes": sorted(
            job.mailbox_id for job in result.failed)[:FAILED_NAMED]})
    else:
        logger.info("scheduler tick", extra=counts)
    return counts
