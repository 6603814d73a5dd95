"""The check function: scheduled sync jobs (the :00/:30 tick) run the idle check (`idle_check.py`) in a small
Lambda function (256 MB) in front of the worker (1.5 GB), and only jobs with something to do go on to the sync
queue. Most ticks of most mailboxes find nothing, and what such a tick costs is mostly waiting (provider round
trips, AWS calls), billed per GB-second (https://aws.amazon.com/lambda/pricing/): the same wait in a function
of one sixth of the memory costs one sixth.

Per record (one SQS batch of check-queue jobs, each record isolated, Powertools BatchProcessor):
- parse the job (a malformed body is dropped, as the worker does); load the mailbox — gone or not active → done;
- `idle_check.run`: the provider has nothing new → done (nothing written, nothing sent);
- anything else (not eligible: heartbeat due, owed pages, an error recorded, a lease, a throttle window...; the
  provider had news; the check met an error) → the job is forwarded to the sync queue marked `checked` (the
  worker does not ask the provider again), with the mailbox-wide error the check met (`check_error`: recorded by
  the worker under the lease, so a throttled provider is not asked twice; ignored when the mailbox changed since,
  by its `updated_at`).

Nothing is lost: the record succeeds only after its forward was sent; a crash or a failed `SendMessage` fails
the record (`batchItemFailures`), SQS redelivers it after the visibility timeout and the check runs again (it
writes nothing, so running it twice is harmless) — after `maxReceiveCount` deliveries it goes to the check
DLQ, and the next tick schedules the mailbox again. Duplicates are harmless: a forwarded job is a request the
worker's lease coalesces. Push jobs, manual refreshes, continuations and follow-ups never come here (they go
straight to the sync queue: `enqueue.enqueue_sync`).

Tenant suspension is not re-checked here: the scheduler left out the mailboxes of suspended tenants when it
built the tick, and the worker checks again before it syncs.
"""
from __future__ import annotations

from typing import Any, Callable

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from pynamodb.exceptions import DoesNotExist

from chalicelib.logs import logger
from chalicelib.models.mailbox import Mailbox
from chalicelib.providers.base import PAGE_SIZE, MailProvider
from chalicelib.providers.kinds import build_provider
from chalicelib.sync import idle_check
from chalicelib.sync.enqueue import SyncJob, job_of, send_job

ProviderFactory = Callable[[Mailbox], MailProvider]


def check_job(job: SyncJob, provider_factory: ProviderFactory = build_provider,
              page_size: int = PAGE_SIZE) -> str:
    """"gone" | "idle" | "forwarded" (raises when the forward could not be sent: the record is retried)."""
    try:
        mailbox = Mailbox.get(job.tenant_id, job.mailbox_id)
    except DoesNotExist:
        return "gone"
    if mailbox.status != "active":
        return "gone"
    checked = idle_check.run(mailbox, job.reason, provider_factory, page_size=page_size)
    if checked == "idle":
        return "idle"
    error = None
    if checked is not None:
        if checked.provider is not None:
            checked.provider.close()
        if checked.error is not None:
            error = {"code": checked.error.code.value, "detail": checked.error.detail[:500],
                     "retry_after": checked.error.retry_after, "account": mailbox.updated_at}
    send_job(SyncJob(job.tenant_id, job.mailbox_id, job.reason, checked=True, check_error=error))
    return "forwarded"


class Checker:
    def __init__(self, provider_factory: ProviderFactory = build_provider):
        self.provider_factory = provider_factory

    def process(self, record) -> str:
        with job_of(record, "check") as job:
            if job is None:
                return "malformed"
            outcome = check_job(job, self.provider_factory)
            logger.info("scheduled check", extra={"outcome": outcome})
            return outcome


def handle_batch(event: dict, context: Any, *, provider_factory: ProviderFactory = build_provider) -> dict:
    """Lambda SQS handler body → `{"batchItemFailures": [{"itemIdentifier": messageId}, ...]}`."""
    checker = Checker(provider_factory)
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(event=event, record_handler=checker.process, processor=processor,
                                    context=context)
