"""Per-tenant retention: stored mail older than `retention_days` (by the message's Date) is deleted.

Setting: the tenant's privacy item (`PrivacyList` scope "tenant", `retention_days`, one of
`privacy.lists.RETENTION_PERIODS` or None = kept until deleted), changed through `PUT /v1/privacy/settings`.
Two mechanisms, because neither alone is enough:
- the sweeper (`sweep`, run by the hourly renewer over the mailboxes it maintains and the retired ones — deleted
  without purge, their mail kept: `RetiredMailbox`): for each mailbox of a tenant with a period, the oldest
  messages (`by_mailbox` GSI, `date_key` below the cutoff, ascending) go through `erasure.delete.delete_messages` —
  at most `PER_MAILBOX` per mailbox and `PER_RUN` per run, so a run stays bounded and a backlog shrinks run by run.
  DynamoDB TTL is not used: TTL deletes "typically within a few days" (DynamoDB Developer Guide, "Working with Time
  to Live") and would leave the raw object, links and signals behind;
- S3 lifecycle rules on the `raw/` prefix (infra/resources.yaml), one per allowed period, filtered on the object
  tag `mailbridge-retention-days=<days>` that the store sets on every raw object it writes while the tenant has a
  period: the backstop for raw objects the sweeper has not reached yet. S3 lifecycle counts whole days and runs
  asynchronously (S3 User Guide, "Managing your storage lifecycle"). A period changed later applies to objects
  stored from then on (tags are not rewritten): a longer period does not extend objects already stored.
Nothing at the provider is deleted.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Callable, Iterable, Iterator

from chalicelib.erasure.delete import add_counts, delete_messages
from chalicelib.logs import logger
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.models.privacy import TENANT_SCOPE, PrivacyList, RetiredMailbox
from chalicelib.timeutil import isoformat, utcnow

PER_MAILBOX = 500
PER_RUN = 5000
PAGE = 100


def retention_days(tenant_id: str) -> int | None:
    try:
        value = PrivacyList.get(tenant_id, TENANT_SCOPE).retention_days
    except PrivacyList.DoesNotExist:
        return None
    return int(value) if value else None


def cutoff(days: int, now=None) -> str:
    """The `date_key` bound: messages dated before it are past the period."""
    return isoformat((now or utcnow()) - timedelta(days=days))


def sweep_mailbox(mailbox: Mailbox | RetiredMailbox, days: int, limit: int, now=None) -> dict[str, int]:
    """Delete up to `limit` of the mailbox's messages dated before the cutoff, oldest first."""
    bound = cutoff(days, now)
    counts: dict[str, int] = {}
    deleted = 0
    while deleted < limit:
        page = list(Message.by_mailbox.query(mailbox.mailbox_id, Message.date_key < bound,
                                             scan_index_forward=True, limit=min(PAGE, limit - deleted)))
        page = [m for m in page if m.tenant_id == mailbox.tenant_id]
        if not page:
            break
        done = delete_messages(page)
        if not done.get("messages"):
            break                   # only already-deleted items (the GSI lags): the next run goes on
        counts = add_counts(counts, done)
        deleted += done["messages"]
    return counts


def retired_mailboxes() -> Iterator[RetiredMailbox]:
    """The mailboxes deleted without purge whose mail may remain: a Scan of that small table, for the hourly
    renewer only (never a request path)."""
    return RetiredMailbox.scan()


def _emptied(retired: RetiredMailbox) -> bool:
    return next(iter(Message.by_mailbox.query(retired.mailbox_id, limit=1)), None) is None


def sweep(mailboxes: Iterable[Mailbox | RetiredMailbox], now=None, budget: int = PER_RUN,
          has_time: Callable[[], bool] = lambda: True) -> dict[str, int]:
    """The renewer's run: mailboxes (live, and retired ones: deleted without purge) of tenants with a retention
    period, bounded per mailbox and in all, and by `has_time()` (the renewer's Lambda timeout); a retired mailbox
    none of whose mail is left is forgotten. A mailbox whose sweep raises is logged and counted (`errors`) and
    the sweep goes on with the next (the next run tries it again)."""
    tenants: dict[str, int | None] = {}
    total: dict[str, int] = {}
    for mailbox in mailboxes:
        if budget <= 0 or not has_time():
            break
        try:
            if mailbox.tenant_id not in tenants:
                tenants[mailbox.tenant_id] = retention_days(mailbox.tenant_id)
            days = tenants[mailbox.tenant_id]
            if days:
                counts = sweep_mailbox(mailbox, days, min(PER_MAILBOX, budget), now)
                budget -= counts.get("messages", 0)
                total = add_counts(total, counts)
            if isinstance(mailbox, RetiredMailbox) and _emptied(mailbox):
                mailbox.delete()
                total = add_counts(total, {"retired_mailboxes": 1})
        except Exception:  # noqa: BLE001 - one mailbox must not stop the sweep of the others
            logger.exception("retention sweep of a mailbox failed", extra={"mailbox_id": mailbox.mailbox_id})
            total = add_counts(total, {"errors": 1})
    if total:
        logger.info("retention sweep deleted messages", extra={"counts": total})
    return total
