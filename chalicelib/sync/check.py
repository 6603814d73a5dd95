"""The check function: scheduled sync jobs (the :00/:30 tick) run the idle check (`idle_check.py`) in a small
Lambda function (256 MB) in front of the worker (1.5 GB), and only jobs with something to do go on to the sync
queue. Most ticks of most mailboxes find nothing, and what such a tick costs is mostly waiting (provider round
trips, AWS calls), billed per GB-second (https://aws.amazon.com/lambda/pricing/): the same wait in a function
of one sixth of the memory costs one sixth.

Per record (one SQS batch of check-queue jobs, each record isolated and the records checked at once: below):
- parse the job (a malformed body is dropped, as the worker does); load the mailbox — gone or not active → done;
  throttled (`not_before` ahead: the provider's Retry-After) → done, the throttle's own delayed job resumes it;
- `idle_check.run`: the provider has nothing new → done (nothing written — but, once, credentials stored in
  the legacy format resealed: `CredentialStore.upgrade` — nothing sent);
- anything else (not eligible: heartbeat due, owed pages, an error recorded, a lease, a throttle window...; the
  provider had news; the check met an error) → the job is forwarded to the sync queue marked `checked` (the
  worker does not ask the provider again), with the mailbox-wide error the check met (`check_error`: recorded by
  the worker under the lease, so a throttled provider is not asked twice; ignored when the mailbox changed since,
  by its `updated_at`).

Nothing is lost: the record succeeds only after its forward was sent; a crash or a failed `SendMessage` fails the
record (`batchItemFailures`), SQS redelivers it after the visibility timeout and the check runs again (it writes
nothing but that conditional reseal, so running it twice is harmless) — after `maxReceiveCount` deliveries it goes
to the check DLQ, and the next tick schedules the mailbox again. Duplicates are harmless: a forwarded job is a
request the worker's lease coalesces. Push jobs, manual refreshes, continuations and follow-ups never come here
(they go straight to the sync queue: `enqueue.enqueue_sync`).

Time: the records of a batch share one invocation (120 s), and one that outlives it fails them all (the
invocation errs, so no `batchItemFailures` is returned and SQS redelivers every record, each receive counting
toward the DLQ). A slow mail server answering each command just inside the 30 s socket timeout could hold a check
that long, so a record's check asks the provider only until `CHECK_MARGIN_SECONDS` before the invocation's end:
a check out of time (before or between folders) forwards its job — the worker, with its own timeout, syncs in
full — and a record starting with less than the margin left forwards without asking.

Tenant suspension is not re-checked here: the scheduler left out the mailboxes of suspended tenants when it
built the tick, and the worker checks again before it syncs.

The records of a batch are checked at once, up to `Settings.check_concurrency` (`MAILBRIDGE_CHECK_CONCURRENCY`,
default 10 = the queue's batch size; 1 = one after another, in record order): a check is almost all waiting, and
Lambda bills the invocation's wall time, so ten overlapped waits cost about one. Only waits overlap: the
function's CPU share (proportional to its memory: https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html)
is the same, and CPU work — TLS handshakes, JSON, building a client — still queues for it.
- Powertools' `AsyncBatchProcessor` with `async_process_partial_response` makes each record a task of one
  `asyncio.gather`, with the same isolation as before: a record that raises is reported alone in
  `batchItemFailures`, the others succeed (https://docs.powertools.aws.dev/lambda/python/latest/utilities/batch/).
- A record's work is blocking (PynamoDB, botocore, imaplib, googleapiclient, MSAL/requests), so each task runs
  it with `loop.run_in_executor` on a thread pool of `check_concurrency` threads — the bound — rather than
  `asyncio.to_thread`, whose default executor has min(32, os.cpu_count() + 4) threads (Python docs,
  `concurrent.futures.ThreadPoolExecutor`): a number of the host's, not ours (six on a two-CPU host, fewer than a
  batch), and which `asyncio.run` shuts down after every batch. The pool lives as long as the process, so a warm
  invocation reuses its threads and what each keeps per thread (`aws.thread_session`, MSAL's HTTP cache).
- Each record runs in a copy of the context (`contextvars.copy_context`, as `asyncio.to_thread` does): the log
  keys `job_of` binds (tenant, mailbox, reason, provider) live in Powertools' `thread_safe_*` ContextVar, so
  they label that record's lines only, never another's, and go with its context. (Powertools'
  `thread_safe_remove_keys` pops from the current dict in place — `logging/formatter.py` `remove_context_keys` —
  which is the record's own only because `job_of` appends first, making a new one.)
- Lambda calls the handler synchronously. In Lambda (`LAMBDA_TASK_ROOT` set) Powertools runs the tasks on this
  thread's event loop (`asyncio.get_event_loop()`, one created when the thread has none) and keeps it for the
  next invocation; a loop found closed is replaced here first. Elsewhere it uses `asyncio.run` (a loop per batch).
  Called from a thread that runs a loop already (an async caller), where neither works, the batch runs on a
  thread of its own.

What records share, and why that is safe:
- DynamoDB: PynamoDB's connection per model class holds one botocore client for all threads, SQS and KMS have
  one client per process (`aws.client`); botocore clients are thread-safe, sessions are not and stay per thread
  (`aws.thread_session`; boto3 guide, "Multithreading or multiprocessing with clients"). Two first calls at once
  may each create a client; one is kept, which is harmless.
- Providers are built per record (connection, HTTP session, token source). Their process-wide caches are locked:
  the key caches (`security/crypto.py`; `security/tenant_keys.py`, where one thread loads a missing key while
  the others wait for it), Graph's per-mailbox request semaphores, Gmail's warm access tokens;
  MSAL's HTTP cache is one per thread (`providers/graph/tokens.py`: MSAL locks it per client, not per dict);
  the IMAP SSL context (`lru_cache`) is shared, as an `SSLContext` may be.
- Two records of one mailbox in one batch are two checks that write nothing; a token refresh both make is
  written back conditionally on the version read (`credentials/tokens.py`), and a duplicate forward is a
  request the worker's lease coalesces.
"""
from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from aws_lambda_powertools.utilities.batch import AsyncBatchProcessor, EventType, async_process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pynamodb.exceptions import DoesNotExist

from chalicelib.config import get_settings
from chalicelib.logs import logger
from chalicelib.models.mailbox import Mailbox
from chalicelib.providers.base import PAGE_SIZE, MailProvider
from chalicelib.providers.kinds import build_provider
from chalicelib.sync import idle_check
from chalicelib.sync.enqueue import SyncJob, job_of, send_job

ProviderFactory = Callable[[Mailbox], MailProvider]
T = TypeVar("T")
# Kept back from the invocation's end: one more provider command (`kinds.provider_for`'s 30 s socket timeout)
# and the forward. A check still asking then stops and forwards its job (module docstring, "Time").
CHECK_MARGIN_SECONDS = 45
LAMBDA_TASK_ROOT_ENV = "LAMBDA_TASK_ROOT"   # set by the Lambda runtime (Lambda guide, "Defined runtime environment
                                            # variables"); Powertools reads it to pick its event loop

_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def check_job(job: SyncJob, provider_factory: ProviderFactory = build_provider,
              page_size: int = PAGE_SIZE, *, deadline: float | None = None,
              clock: Callable[[], float] = time.monotonic) -> str:
    """"gone" | "throttled" | "idle" | "forwarded" (raises when the forward could not be sent: the record is
    retried)."""
    try:
        mailbox = Mailbox.get(job.tenant_id, job.mailbox_id)
    except DoesNotExist:
        return "gone"
    if mailbox.status != "active":
        return "gone"
    if (mailbox.not_before or 0) - time.time() > 1:
        return "throttled"          # the throttle's own delayed job resumes it (worker.py); nothing to forward
    logger.thread_safe_append_keys(provider=mailbox.type)      # removed by `job_of`
    checked = idle_check.run(mailbox, job.reason, provider_factory, page_size=page_size, deadline=deadline,
                             clock=clock)
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


def check_pool(size: int) -> ThreadPoolExecutor:
    """The process's `size` check threads, kept across warm invocations (a new pool when the size changed)."""
    with _pools_lock:
        pool = _pools.get(size)
        if pool is None:
            for old in _pools.values():
                old.shutdown(wait=False)
            _pools.clear()
            pool = _pools[size] = ThreadPoolExecutor(max_workers=size, thread_name_prefix="check")
        return pool


class Checker:
    """One batch's record handler: each record checked on a thread of `pool`, in a context of its own, asking
    the provider only until `CHECK_MARGIN_SECONDS` before the invocation's end (`lambda_context`)."""

    def __init__(self, provider_factory: ProviderFactory = build_provider, pool: ThreadPoolExecutor | None = None,
                 lambda_context: Any = None):
        self.provider_factory = provider_factory
        self.pool = pool or check_pool(get_settings().check_concurrency)
        self.lambda_context = lambda_context

    def deadline(self) -> float | None:
        """A `time.monotonic()` value: the invocation's end less `CHECK_MARGIN_SECONDS` (None: no context)."""
        remaining = getattr(self.lambda_context, "get_remaining_time_in_millis", None)
        if remaining is None:
            return None
        return time.monotonic() + remaining() / 1000.0 - CHECK_MARGIN_SECONDS

    async def process(self, record: SQSRecord) -> str:
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self.pool, context.run, self.check, record)

    def check(self, record: SQSRecord) -> str:
        with job_of(record, "check") as job:
            if job is None:
                return "malformed"
            outcome = check_job(job, self.provider_factory, deadline=self.deadline())
            logger.info("scheduled check", extra={"outcome": outcome})
            return outcome


def _replace_closed_loop() -> None:
    """In Lambda, Powertools runs the batch on this thread's current event loop; a closed one would fail it
    ("Event loop is closed"), so it is replaced. No current loop: Powertools creates one."""
    if not os.getenv(LAMBDA_TASK_ROOT_ENV):
        return
    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        return
    if loop.is_closed():
        asyncio.set_event_loop(asyncio.new_event_loop())


def run_blocking(call: Callable[[], T]) -> T:
    """`call()` (which runs an event loop to completion) from synchronous code: here, or — when this thread
    runs a loop already, which `run_until_complete` and `asyncio.run` both refuse — on a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        _replace_closed_loop()
        return call()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="check-batch") as own:
        return own.submit(contextvars.copy_context().run, run_blocking, call).result()


def handle_batch(event: dict, context: Any, *, provider_factory: ProviderFactory = build_provider) -> dict:
    """Lambda SQS handler body → `{"batchItemFailures": [{"itemIdentifier": messageId}, ...]}`."""
    checker = Checker(provider_factory, lambda_context=context)
    processor = AsyncBatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return run_blocking(lambda: async_process_partial_response(event=event, record_handler=checker.process,
                                                               processor=processor, context=context))
