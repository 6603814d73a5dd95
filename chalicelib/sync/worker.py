"""The sync worker: one SQS batch of sync jobs, each record isolated (Powertools BatchProcessor).

Per record: parse the job → load the mailbox (gone / not active / tenant suspended → done, silently; throttled until
later → re-queued with a delay, except a scheduled job: the throttle's own delayed job resumes the mailbox and the
first tick after the window schedules it anyway, so ticks during a long Retry-After add no jobs) → a scheduled job
may first run the idle check (`idle_check.py`: the provider has nothing new → done, nothing written; else its open
provider is reused below) unless the check function (`check.py`) already ran it and forwarded the job `checked`
(then only the mailbox-wide error it met, if any, is taken over) → acquire the lease (held → flag ONE follow-up and
finish) → build the provider through its kind (unless reused) → `engine.sync_mailbox` while a page can still finish
in the invocation (`time_budget.py`: else the lease is released and a continuation enqueued before any page) →
release (writing the final state in the same update) → enqueue the continuation ("continue") or the coalesced
follow-up ("follow_up"), after the release so the new job can take the lease — also after a failed sync, so a
request that arrived meanwhile is never lost. Failures go through `errors.py`; a record that must be retried raises,
and the processor reports its `messageId` in `batchItemFailures` (Lambda ReportBatchItemFailures) while the other
records of the batch succeed.

Redelivery safety: a redelivered or duplicated job re-runs the engine from the persisted cursors; the store
dedupes. A worker killed mid-sync leaves its lease to expire (`lease.lease_seconds()` > Lambda timeout); the
next job — or `renewer.run()` for a mailbox stuck in "syncing" — resumes from the last persisted page.
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Callable

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from pynamodb.exceptions import DoesNotExist

from chalicelib.config import get_settings
from chalicelib.logs import logger
from chalicelib.models.mailbox import Mailbox
from chalicelib.providers.base import ErrorCode, MailProvider, ProviderError
from chalicelib.providers.kinds import build_provider
from chalicelib.sync import effects, engine, errors, idle_check, lease, push, time_budget
from chalicelib.sync.idle_check import Checked
from chalicelib.sync.lease import LeaseLost
from chalicelib.tenancy.service import SyncPermission
from chalicelib.sync.enqueue import SyncJob, enqueue_sync, job_of

ProviderFactory = Callable[[Mailbox], MailProvider]


def _remaining_seconds(context: Any) -> float:
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        return context.get_remaining_time_in_millis() / 1000.0
    return float(get_settings().worker_timeout_seconds)


def _acquire(job: SyncJob):
    """(lease, mailbox) | "coalesced" | None (nothing to do)."""
    for _ in range(3):
        acquired = lease.acquire(job.tenant_id, job.mailbox_id)
        if acquired is not None:
            return acquired
        try:
            current = Mailbox.get(job.tenant_id, job.mailbox_id, consistent_read=True)
        except DoesNotExist:
            return None
        if current.status != "active":
            return None
        if lease.flag_follow_up(job.tenant_id, job.mailbox_id):
            return "coalesced"
    raise errors.RetryLater("lease contention", 5)


def _same_account(checked: Mailbox, leased: Mailbox) -> bool:
    """Whether the provider built for `checked` (before the lease) still fits the mailbox as leased: same kind,
    settings, credentials version and cursor epoch (else it is rebuilt from the leased read)."""
    fields = ("type", "email", "imap", "mail_server_id", "secret_version", "cursor_epoch", "updated_at")
    return all(getattr(checked, name) == getattr(leased, name) for name in fields)


# Mailboxes of a suspended tenant, or of one whose plan no longer includes mail, are not synced; they resume by
# themselves when the tenant is active again (the scheduler and the next job find them).
tenant_may_sync = SyncPermission(ttl=60.0)


class Worker:
    def __init__(self, context: Any, provider_factory: ProviderFactory = build_provider,
                 clock: Callable[[], float] = time.monotonic, options: engine.SyncOptions = engine.SyncOptions(),
                 after_store: effects.Effects | None = None):
        self.context, self.provider_factory, self.clock = context, provider_factory, clock
        self.options, self.after_store = options, after_store

    def process(self, record) -> str:
        with job_of(record, "sync") as job:
            return "malformed" if job is None else self._run(job, record)

    def _run(self, job: SyncJob, record) -> str:
        try:
            mailbox = Mailbox.get(job.tenant_id, job.mailbox_id)
        except DoesNotExist:
            logger.info("sync skipped: mailbox deleted")
            return "skipped"
        if mailbox.status != "active":
            logger.info("sync skipped: mailbox not active", extra={"status": mailbox.status})
            return "skipped"
        if not tenant_may_sync(job.tenant_id):
            logger.info("sync skipped: tenant suspended or without mail")
            return "skipped"
        wait = (mailbox.not_before or 0) - time.time()
        if wait > 1 and job.reason in idle_check.CHECK_REASONS:
            logger.info("sync skipped: provider rate limit; the throttle's own job resumes",
                        extra={"seconds": int(wait)})
            return "throttled"
        if wait > 1:
            enqueue_sync(job.tenant_id, job.mailbox_id, job.reason, delay_seconds=int(wait + 1))
            logger.info("sync deferred: provider rate limit", extra={"seconds": int(wait)})
            return "deferred"
        if mailbox.push_lifecycle and not mailbox.push_lifecycle.get("failed_at"):
            push.settle(mailbox, provider_factory=self.provider_factory)     # before the sync it asked for
            mailbox.refresh()                                                  # its push state and credentials
        checked = self._idle_check(job, mailbox)
        if checked == "idle":
            return "idle"
        try:
            return self._leased(job, record, checked)
        finally:
            if checked is not None and checked.provider is not None:
                checked.provider.close()

    def _idle_check(self, job: SyncJob, mailbox: Mailbox) -> "str | Checked | None":
        """`idle_check.run` for a job the check function has not already checked; for one it has, the
        mailbox-wide error it met (recorded under the lease without asking the provider again) while the
        mailbox is unchanged since (`updated_at`), else None (a normal leased sync)."""
        if not job.checked:
            remaining = _remaining_seconds(self.context)     # the same deadline the sync would keep (`_leased`)
            return idle_check.run(mailbox, job.reason, self.provider_factory, page_size=self.options.page_size,
                                  deadline=self.clock() + remaining - time_budget.safety_margin(remaining),
                                  clock=self.clock)
        error = job.check_error or {}
        if not error or error.get("account") != mailbox.updated_at:
            return None
        try:
            code = ErrorCode(error.get("code"))
        except ValueError:
            return None
        retry_after = error.get("retry_after")
        return Checked(mailbox, error=ProviderError(code, str(error.get("detail") or ""),
                                                    retry_after=float(retry_after) if retry_after else None))

    def _leased(self, job: SyncJob, record, checked: "Checked | None") -> str:
        try:
            acquired = _acquire(job)
        except errors.RetryLater as exc:                   # redelivered after its delay, not the visibility timeout
            errors.delay_redelivery(record.receipt_handle, exc.delay_seconds)
            raise
        if acquired is None:
            return "skipped"
        if acquired == "coalesced":
            logger.info("sync already running; one follow-up requested")
            return "coalesced"
        held, mailbox = acquired
        reuse = checked is not None and _same_account(checked.mailbox, mailbox)
        logger.thread_safe_append_keys(provider=mailbox.type)
        info = errors.RecordInfo(record.receipt_handle, int(record.attributes.approximate_receive_count or 1))
        budget = time_budget.TimeBudget.start(self.clock(), _remaining_seconds(self.context),
                                              get_settings().worker_timeout_seconds, mailbox.page_seconds)
        outcome, final_actions = "continue", [Mailbox.sync_stage.set("queued")]
        try:
            if reuse and checked.error is not None:
                outcome, final_actions = self._failed(mailbox, checked.error, info)
            elif budget.may_start_page(self.clock()):
                outcome, final_actions = self._sync(mailbox, held, budget, info,
                                                    checked.provider if reuse else None)
            else:
                logger.info("too little time left for a page of this mailbox: continuing in a new invocation",
                            extra={"page_seconds": mailbox.page_seconds})
        except LeaseLost:
            logger.warning("lease lost mid-sync; another worker continues")
            return "lease_lost"
        except errors.RetryLater:
            # The record is redelivered: that delivery is the follow-up (no extra job).
            lease.release(held)
            raise
        except Exception:
            # Recording the outcome failed (e.g. SQS refused a throttled sync's delayed job): the record fails and
            # is redelivered, as above — the lease must not stay held by a sync that no longer runs.
            lease.release(held)
            raise
        follow_up = lease.release(held, final_actions)
        if outcome == "continue":
            enqueue_sync(job.tenant_id, job.mailbox_id, "continue")
        elif follow_up and outcome != "throttled":
            enqueue_sync(job.tenant_id, job.mailbox_id, "follow_up")
        return outcome

    def _sync(self, mailbox: Mailbox, held: lease.Lease, budget: time_budget.TimeBudget, info: errors.RecordInfo,
              provider: MailProvider | None = None) -> tuple[str, list]:
        """(outcome, the final mailbox state to write with the release). `provider`: one already open for
        this mailbox (the idle check's; its owner closes it), else one is built here."""
        try:
            with contextlib.nullcontext(provider) if provider is not None else self.provider_factory(mailbox) \
                    as provider:
                result = engine.sync_mailbox(mailbox, provider, budget.deadline, lease=held, clock=self.clock,
                                             options=self.options, after_store=self.after_store, budget=budget)
        except ProviderError as exc:
            return self._failed(mailbox, exc, info)
        except (LeaseLost, errors.RetryLater):
            raise
        except Exception as exc:  # noqa: BLE001 - recorded, then the record is redelivered
            logger.exception("sync crashed")
            errors.handle_internal_error(mailbox, exc, info)
            raise
        logger.info("sync pass finished", extra={"outcome": result.outcome, "imported": result.counts.imported,
                                                  "skipped": result.counts.skipped, "removed": result.counts.removed,
                                                  "pages": result.counts.pages})
        return result.outcome, result.final_actions


    @staticmethod
    def _failed(mailbox: Mailbox, exc: ProviderError, info: errors.RecordInfo) -> tuple[str, list]:
        errors.handle_provider_error(mailbox, exc, info)
        return ("throttled" if exc.code == ErrorCode.THROTTLED else "failed"), []


def handle_batch(event: dict, context: Any, *, provider_factory: ProviderFactory = build_provider,
                 clock: Callable[[], float] = time.monotonic, options: engine.SyncOptions = engine.SyncOptions(),
                 after_store: effects.Effects | None = None) -> dict:
    """Lambda SQS handler body → `{"batchItemFailures": [{"itemIdentifier": messageId}, ...]}`."""
    worker = Worker(context, provider_factory, clock, options, after_store)
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(event=event, record_handler=worker.process, processor=processor,
                                    context=context)
