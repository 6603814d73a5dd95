"""Sync jobs on the SQS sync queue: one job names one mailbox; the body carries only keys, never state.

Body: `{"tenant_id", "mailbox_id", "reason", "requested_at"}` (reason: schedule | refresh | push | continue |
follow_up | recover). A scheduled job the check function (`check.py`) forwards also carries `"checked": true` (the
idle check ran and found news: the worker does not ask again) and, when the check met a mailbox-wide provider error,
`"check_error": {"code", "detail", "retry_after", "account"}` (recorded by the worker under the lease without asking
the provider again, if the mailbox's `updated_at` is still `account`). Scheduled jobs go to the check queue when one
is configured (`MAILBRIDGE_CHECK_QUEUE_URL`), every other job to the sync queue. A job is a request to "bring this
mailbox up to date", so duplicates are harmless (the worker's lease coalesces them and the store dedupes messages).
`SendMessageBatch` takes at most 10 entries and may fail some of them while succeeding others (SQS API reference,
SendMessageBatch "Failed"); failed entries are retried a bounded number of times, after a short jittered pause
that doubles (`BATCH_RETRY_SECONDS`: an entry refused for throttling or a service error is refused again if re-sent
at once — "Error retries and exponential backoff in AWS", AWS General Reference).
"""
from __future__ import annotations

import contextlib
import json
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

from pynamodb.exceptions import UpdateError

from chalicelib import aws
from chalicelib.backoff import jittered
from chalicelib.config import get_settings
from chalicelib.logs import logger
from chalicelib.models.mailbox import Mailbox
from chalicelib.sync import lease
from chalicelib.timeutil import now_iso

SQS_BATCH_LIMIT = 10
BATCH_ATTEMPTS = 3
BATCH_RETRY_SECONDS = 0.2  # pause before the first re-send of refused entries; doubled before each further one
MAX_DELAY_SECONDS = 900  # SQS DelaySeconds upper bound
QUEUED_MARKER_SECONDS = 15 * 60  # a queued job not taken by then is presumed lost: the next request enqueues
SEND_CONCURRENCY = 16  # SendMessageBatch calls in flight in `enqueue_many` (one scheduler tick, the renewer)


@dataclass(frozen=True)
class SyncJob:
    tenant_id: str
    mailbox_id: str
    reason: str
    delay_seconds: int = 0
    checked: bool = False
    check_error: dict | None = None

    def body(self) -> str:
        body = {"tenant_id": self.tenant_id, "mailbox_id": self.mailbox_id, "reason": self.reason,
                "requested_at": now_iso()}
        if self.checked:
            body["checked"] = True
        if self.check_error:
            body["check_error"] = self.check_error
        return json.dumps(body)


@dataclass
class BatchResult:
    sent: int = 0
    failed: list[SyncJob] = field(default_factory=list)


def parse_job(body: str) -> SyncJob:
    """The job in a queue message body; ValueError when it is not one (a poison message)."""
    data = json.loads(body)
    if not isinstance(data, dict) or not data.get("tenant_id") or not data.get("mailbox_id"):
        raise ValueError("sync job body lacks tenant_id/mailbox_id")
    error = data.get("check_error")
    return SyncJob(str(data["tenant_id"]), str(data["mailbox_id"]), str(data.get("reason") or "unknown"),
                   checked=data.get("checked") is True, check_error=error if isinstance(error, dict) else None)


@contextlib.contextmanager
def job_of(record, kind: str) -> Iterator[SyncJob | None]:
    """The job an SQS record carries, its tenant, mailbox and reason in every log line while it runs; None (and
    one error line) when the body is not a job — a poison message dropped by the handler (`kind`: "sync",
    "check")."""
    try:
        job = parse_job(record.body)
    except ValueError:
        logger.error(f"discarding a malformed {kind} job", extra={"message_id": record.message_id})
        yield None
        return
    logger.thread_safe_append_keys(tenant_id=job.tenant_id, mailbox_id=job.mailbox_id, reason=job.reason)
    try:
        yield job
    finally:
        logger.thread_safe_remove_keys(["tenant_id", "mailbox_id", "reason", "provider"])


def _queue_url() -> str:
    url = get_settings().sync_queue_url
    if not url:
        raise RuntimeError("MAILBRIDGE_SYNC_QUEUE_URL is not configured")
    return url


def scheduled_queue_url() -> str:
    """Where the scheduler's jobs go: the check queue when configured, else the sync queue (the worker then runs
    the idle check itself)."""
    return get_settings().check_queue_url or _queue_url()


def enqueue_sync(tenant_id: str, mailbox_id: str, reason: str, *, delay_seconds: int = 0) -> None:
    """One job, one `SendMessage`. Raises on failure (callers decide whether that fails their request)."""
    send_job(SyncJob(tenant_id, mailbox_id, reason, delay_seconds))


def send_job(job: SyncJob) -> None:
    """`job` on the sync queue with one `SendMessage`; raises on failure."""
    params = {"QueueUrl": _queue_url(), "MessageBody": job.body()}
    if job.delay_seconds:
        params["DelaySeconds"] = max(0, min(MAX_DELAY_SECONDS, int(job.delay_seconds)))
    aws.sqs().send_message(**params)
    logger.debug("sync enqueued", extra={"mailbox_id": job.mailbox_id, "reason": job.reason})


def _send_batch(queue_url: str, jobs: Sequence[SyncJob]) -> list[SyncJob]:
    """Send ≤10 jobs; returns the jobs SQS reported as failed (entry ids are list positions)."""
    entries = []
    for index, job in enumerate(jobs):
        entry = {"Id": str(index), "MessageBody": job.body()}
        if job.delay_seconds:
            entry["DelaySeconds"] = max(0, min(MAX_DELAY_SECONDS, int(job.delay_seconds)))
        entries.append(entry)
    response = aws.sqs().send_message_batch(QueueUrl=queue_url, Entries=entries)
    failed = response.get("Failed") or []
    for item in failed:
        logger.warning("sync enqueue entry failed", extra={"code": item.get("Code"),
                                                           "sender_fault": item.get("SenderFault")})
    return [jobs[int(item["Id"])] for item in failed]


def send_batch(jobs: Sequence[SyncJob], *, attempts: int = BATCH_ATTEMPTS,
               queue_url: str | None = None) -> BatchResult:
    """One `SendMessageBatch` (≤10 jobs) to `queue_url` (default: the sync queue), re-sending only the failed
    entries up to `attempts` times."""
    if len(jobs) > SQS_BATCH_LIMIT:
        raise ValueError("an SQS batch holds at most 10 entries")
    queue_url = queue_url or _queue_url()
    pending = list(jobs)
    for attempt in range(attempts):
        if not pending:
            break
        if attempt:
            pause(jittered(BATCH_RETRY_SECONDS * 2 ** (attempt - 1)))
        pending = _send_batch(queue_url, pending)
    return BatchResult(sent=len(jobs) - len(pending), failed=pending)


def pause(seconds: float) -> None:
    """The wait between re-sends (a thread of `enqueue_many`'s pool waits; tests replace it)."""
    time.sleep(seconds)


def enqueue_many(jobs: Iterable[SyncJob], *, on_error: Callable[[Sequence[SyncJob], Exception], None] | None = None,
                 concurrency: int = SEND_CONCURRENCY, queue_url: str | None = None) -> BatchResult:
    """Every job, in batches of 10, with up to `concurrency` `SendMessageBatch` calls in flight (boto3 clients
    are thread-safe; https://boto3.amazonaws.com/v1/documentation/api/latest/guide/clients.html#multithreading-or-multiprocessing-with-clients).
    A batch that raises is reported to `on_error` (default: logged) and the remaining batches still go out.
    `queue_url`: default the sync queue.
    `jobs` is consumed lazily, so at most `concurrency` batches are held at a time."""
    total = BatchResult()

    def settle(batch: list[SyncJob], future: Future) -> None:
        exc = future.exception()
        if exc is not None:
            total.failed.extend(batch)
            if on_error:
                on_error(list(batch), exc)
            else:
                logger.error("sync enqueue batch failed", extra={"jobs": len(batch)}, exc_info=exc)
            return
        result = future.result()
        total.sent += result.sent
        total.failed.extend(result.failed)

    in_flight: deque[tuple[list[SyncJob], Future]] = deque()
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="enqueue") as pool:
        for batch in _batches(jobs, SQS_BATCH_LIMIT):
            if len(in_flight) >= max(1, concurrency):
                settle(*in_flight.popleft())
            in_flight.append((batch, pool.submit(send_batch, batch, queue_url=queue_url)))
        while in_flight:
            settle(*in_flight.popleft())
    return total


def _batches(jobs: Iterable[SyncJob], size: int) -> Iterator[list[SyncJob]]:
    batch: list[SyncJob] = []
    for job in jobs:
        batch.append(job)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def request_sync(tenant_id: str, mailbox_id: str, reason: str, *, now: float | None = None) -> str:
    """Ask for a sync from a push or a manual refresh. Returns "coalesced" | "queued".

    - a sync holds the lease → flag ONE follow-up (`lease.flag_follow_up`), no queue message;
    - else set the marker `sync_queued_at` with ONE conditional update (absent, or older than
      `QUEUED_MARKER_SECONDS` in case its job was lost) and enqueue one job only when that write succeeded:
      ten pushes in a second enqueue one job. The lease's acquire removes the marker.
    """
    now = time.time() if now is None else now
    if lease.flag_follow_up(tenant_id, mailbox_id, now=now):
        return "coalesced"
    try:
        Mailbox(tenant_id, mailbox_id).update(
            actions=[Mailbox.sync_queued_at.set(now)],
            condition=Mailbox.mailbox_id.exists() & (Mailbox.sync_queued_at.does_not_exist()
                                                     | (Mailbox.sync_queued_at < now - QUEUED_MARKER_SECONDS)))
    except UpdateError as exc:
        if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
            return "coalesced"
        raise
    try:
        enqueue_sync(tenant_id, mailbox_id, reason)
    except Exception:
        with contextlib.suppress(UpdateError):   # let the next request try again instead of waiting 15 min
            Mailbox(tenant_id, mailbox_id).update(actions=[Mailbox.sync_queued_at.remove()],
                                                  condition=Mailbox.sync_queued_at == now)
        raise
    return "queued"
