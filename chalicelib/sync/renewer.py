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
queue message was lost), within `WEBHOOK_SWEEP_SECONDS`, re-sends the events SQS refused when they were
emitted (`notify.events.resend_unsent`), and runs the outbox's (`outbox.delivery.sweep`: items whose
job was lost or whose attempt died). And it deletes stored mail past its tenant's retention period, bounded
per run (`erasure/retention.py`).

Mailboxes of tenants that may not sync (suspended, or on a plan without mailbox connection:
`tenancy.service.may_sync`, read once per tenant and run, by BatchGetItem with each page) are neither re-enqueued
nor have their push registrations renewed or their owed lifecycle events settled (counted as `suspended`): the
watches and subscriptions lapse by themselves (Gmail 7 days, Graph ≤ 4,230 minutes), and pushes that arrive
meanwhile are acknowledged without a job (`chalicelib.push`). On reactivation the next run finds the registration
due (a day since its last renewal, or lapsed) and renews it — Gmail's renewal is a new `users.watch`, a lapsed Graph
subscription answers the PATCH 404 and is made afresh (`GraphSubscriptions.renew`) — and settles a lifecycle event
recorded meanwhile; the scheduler's next tick syncs the mailbox. What stored mail still owes (pairing, events,
counts) and retention keep running (they concern mail already stored), and so do credential-expiry warnings (a
client secret or app password expiring during a suspension still needs replacing before reactivation).

Bounded and isolated, so that nothing is starved:
- one mailbox, outbox item, delivery or retention mailbox that raises is logged and counted (`errors`) and the
  run goes on (one broken mailbox used to abort the run at the same place every hour);
- the run keeps within the Lambda timeout (the function's remaining time, less `RESERVE_SECONDS`). The pass
  over the mailboxes reads and writes DynamoDB only (stuck mailboxes, owed effects, credential expiries) and
  collects the push registrations due; the stuck mailboxes are re-enqueued right after it. Registrations cost
  provider calls (a token refresh, a watch or a subscription PATCH: about a second each), and those made
  together fall due together, so they get at most `PUSH_SHARE` of the time left — the sweeps the rest — in
  the order of their last attempt (never attempted first, then the oldest `push_renewed_at` / `push_error`),
  and what does not fit is counted (`push_deferred`, logged) and left to the next run, which starts with it.
  A registration is renewed a day after the last renewal and lasts days (Gmail 7 days, Graph mail ≤ 4,230
  minutes), so a deferral of an hour or two costs nothing;
- the retention sweep's deletion budget (`retention.PER_RUN`) starts at another mailbox each hourly run, so a
  few mailboxes with a long backlog (a period just shortened) cannot take it every hour from the ones after them:
  the hour's multiple of `WEYL_STEP` (the golden ratio's fractional part) modulo 1 picks the start, which spreads
  successive starts evenly over the mailboxes (a Weyl sequence) — consecutive runs start far apart, and over any
  stretch of hours every part of the list comes first about as often as any other.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import chain
from typing import Any, Callable, Iterator

from chalicelib.erasure import retention
from chalicelib.logs import logger
from chalicelib.models.mailbox import Mailbox
from chalicelib.notify import deliveries, events
from chalicelib.outbox import delivery as outbox_delivery
from chalicelib.providers.base import MailProvider
from chalicelib.providers.kinds import build_provider
from chalicelib.sync import credential_expiry, effects, push
from chalicelib.sync.enqueue import SyncJob, enqueue_many
from chalicelib.sync.scheduler import active_mailbox_keys
from chalicelib.tenancy.service import SyncPermission
from chalicelib.timeutil import isoformat, parse_iso

BATCH_GET_LIMIT = 100
SWEEP_AFTER = timedelta(minutes=15)    # a live sync pays a message's debts within seconds of storing it
STUCK_STAGES = ("syncing", "queued")
WEBHOOK_SWEEP_SECONDS = 300
RESERVE_SECONDS = 30              # kept back from the Lambda timeout: logging the counts, a last call in flight
WEYL_STEP = 0.6180339887498949     # where each hourly run starts the retention sweep (module docstring)
PUSH_SHARE = 0.5                   # of the time left after the pass over the mailboxes


def is_stuck(mailbox: Mailbox, now: float) -> bool:
    """In a sync stage with no live lease: its worker is gone. (`queued` = a checkpoint whose continuation
    job never took the lease — its send failed, or the job was lost —, once `SWEEP_AFTER` has passed since that
    sync started: a continuation normally takes the lease within seconds. Both are harmless to re-enqueue: the
    lease makes duplicates coalesce.)"""
    if mailbox.sync_stage not in STUCK_STAGES:
        return False
    if mailbox.lease_owner:
        return (mailbox.lease_expires_at or 0) < now
    if mailbox.sync_stage == "syncing":
        return True
    started = mailbox.last_sync_started_at
    try:
        return not started or parse_iso(started).timestamp() < now - SWEEP_AFTER.total_seconds()
    except ValueError:
        return True


@dataclass(frozen=True)
class MailboxKey:
    """What the retention sweep needs of a live mailbox (holding every item of a large deployment would not)."""
    tenant_id: str
    mailbox_id: str


def _mailboxes(permitted: SyncPermission) -> Iterator[Mailbox]:
    """Every active mailbox, by `BatchGetItem` pages; the pages' tenants read into `permitted` alongside."""
    keys: list[tuple[str, str]] = []
    for key in active_mailbox_keys():
        keys.append(key)
        if len(keys) == BATCH_GET_LIMIT:
            permitted.prefetch(tenant_id for tenant_id, _ in keys)
            yield from Mailbox.batch_get(keys)
            keys = []
    if keys:
        permitted.prefetch(tenant_id for tenant_id, _ in keys)
        yield from Mailbox.batch_get(keys)


def last_push_attempt(mailbox: Mailbox) -> str:
    """When its registration was last renewed or tried (ISO; "" = never): the order of the renewals."""
    failed = (mailbox.push_error or {}).get("at") or ""
    return max(mailbox.push_renewed_at or "", str(failed))


class Budget:
    """The run's time: the Lambda's remaining time less `RESERVE_SECONDS` (no context: unbounded)."""

    def __init__(self, context: Any, clock: Callable[[], float]):
        self.clock = clock
        remaining = None
        if context is not None and hasattr(context, "get_remaining_time_in_millis"):
            remaining = context.get_remaining_time_in_millis() / 1000.0
        self.deadline = math.inf if remaining is None else clock() + remaining - RESERVE_SECONDS

    def share(self, fraction: float) -> float:
        """A deadline `fraction` of the way from now to the end of the run."""
        now = self.clock()
        return self.deadline if math.isinf(self.deadline) else now + max(0.0, self.deadline - now) * fraction

    def left(self, until: float | None = None) -> bool:
        return self.clock() < (self.deadline if until is None else until)


def _isolated(counts: dict[str, int], what: str, mailbox_id: str, call: Callable[[], Any]) -> Any:
    """`call()`; an exception is logged and counted, and the run goes on with the next mailbox."""
    try:
        return call()
    except Exception:  # noqa: BLE001 - one mailbox must not starve the others (module docstring)
        counts["errors"] += 1
        logger.exception(f"renewer: {what} failed", extra={"mailbox_id": mailbox_id})
        return None


def _maintain(mailbox: Mailbox, provider_factory: Callable[[Mailbox], MailProvider]) -> str:
    """`push.maintain` on the mailbox as it is now: the pass read it minutes ago, and a registration renewed
    meanwhile (a lifecycle event the worker settled) must not be renewed again — a second subscribe would leave a
    second set of subscriptions at the provider — nor one of a mailbox deleted or disconnected since."""
    try:
        mailbox.refresh(consistent_read=True)
    except Mailbox.DoesNotExist:
        return "n/a"
    if mailbox.status != "active" or not push.needs_provider(mailbox):
        return "current"
    return push.maintain(mailbox, provider_factory=provider_factory)


def run(now: float | None = None, *, provider_factory: Callable[[Mailbox], MailProvider] = build_provider,
        context: Any = None, clock: Callable[[], float] = time.monotonic) -> dict[str, int]:
    now = time.time() if now is None else now
    budget = Budget(context, clock)
    owed_before = isoformat(datetime.fromtimestamp(now, timezone.utc) - SWEEP_AFTER)
    stuck: list[SyncJob] = []
    counts = {"stuck": 0, "enqueued": 0, "failed": 0, "push_started": 0, "push_renewed": 0, "push_failed": 0,
              "push_deferred": 0, "effects_completed": 0, "credentials_expiring": 0, "suspended": 0, "errors": 0}
    servers: dict = {}
    seen: list[MailboxKey] = []
    push_due: list[Mailbox] = []
    permitted = SyncPermission(ttl=3600.0)          # each tenant read once per run
    for mailbox in _mailboxes(permitted):
        box_id = mailbox.mailbox_id
        seen.append(MailboxKey(mailbox.tenant_id, box_id))
        if not permitted(mailbox.tenant_id):
            counts["suspended"] += 1                # no sync, no push renewal (module docstring)
        else:
            if is_stuck(mailbox, now):
                stuck.append(SyncJob(mailbox.tenant_id, box_id, "recover"))
            if _isolated(counts, "push check", box_id, lambda: push.needs_provider(mailbox)):
                push_due.append(mailbox)
        counts["effects_completed"] += _isolated(counts, "effects sweep", box_id, lambda: effects.sweep(
            effects.left_behind(mailbox.mailbox_id, owed_before)) + effects.pay_debts(
            mailbox, older_than=owed_before)) or 0
        counts["credentials_expiring"] += _isolated(   # a warning that fails now is emitted by the next run
            counts, "credential expiry check", box_id, lambda: credential_expiry.check(mailbox, cache=servers)) or 0
    result = enqueue_many(stuck)
    counts.update(stuck=len(stuck), enqueued=result.sent, failed=len(result.failed))

    push_until = budget.share(PUSH_SHARE)
    push_due.sort(key=last_push_attempt)
    for index, mailbox in enumerate(push_due):
        if not budget.left(push_until):
            counts["push_deferred"] = len(push_due) - index
            break
        outcome = _isolated(counts, "push maintenance", mailbox.mailbox_id,
                            lambda: _maintain(mailbox, provider_factory))
        if outcome in ("started", "renewed", "failed"):
            counts[f"push_{outcome}"] += 1
    if counts["push_deferred"]:
        logger.warning("renewer: push registrations left to the next run", extra={"due": len(push_due),
                                                                                 "deferred": counts["push_deferred"]})
    if stuck or counts["push_failed"] or counts["effects_completed"] or counts["errors"]:
        logger.warning("renewer repaired mailboxes", extra=counts)

    sweeps_until = budget.share(1 / 3)
    try:
        counts["outbox_swept"] = outbox_delivery.sweep(provider_factory=provider_factory,
                                                       has_time=lambda: budget.left(sweeps_until))
    except Exception:  # noqa: BLE001 - as below: the next run sweeps again
        logger.exception("outbox sweep failed")
    try:
        counts["events_resent"] = events.resend_unsent(has_time=lambda: budget.left(sweeps_until))
    except Exception:  # noqa: BLE001 - SQS still refuses: the marks stay for the next run
        logger.exception("re-sending unsent events failed")
    try:
        seconds = min(WEBHOOK_SWEEP_SECONDS, budget.share(0.5) - clock())    # run_due reads time.monotonic
        swept = deliveries.run_due(deadline=time.monotonic() + max(0.0, seconds))
    except Exception:  # noqa: BLE001 - the mailbox recovery above is done; the next run sweeps again
        logger.exception("webhook sweep failed")
    else:
        counts["errors"] += swept.get("errors", 0)
        if swept["due"]:
            logger.warning("attempted overdue webhook deliveries", extra=swept)
    try:
        start = int((now // 3600 * WEYL_STEP) % 1 * len(seen))     # module docstring: the retention budget
        deleted = retention.sweep(chain(seen[start:], seen[:start], retention.retired_mailboxes()),
                                  has_time=budget.left)
        counts["retention_deleted"] = deleted.get("messages", 0)
        counts["errors"] += deleted.get("errors", 0)
    except Exception:  # noqa: BLE001 - the next run sweeps again
        logger.exception("retention sweep failed")
    return counts
