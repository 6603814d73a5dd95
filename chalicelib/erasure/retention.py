"""Per-tenant retention: stored mail older than `retention_days` (by the message's Date) is deleted.

Setting: `Tenant.settings["privacy"]["retention_days"]` (None = kept until deleted), changed through
`PUT /v1/privacy/settings`. Two mechanisms, because neither alone is enough:
- the sweeper (`sweep`, run by the hourly renewer): for every active mailbox of a tenant with a period, the
  oldest messages (`by_mailbox` GSI, `date_key` below the cutoff, ascending) go through
  `erasure.delete.delete_messages` — at most `PER_MAILBOX` per mailbox and `PER_RUN` per run, so a run stays
  bounded and the backlog shrinks run by run. DynamoDB TTL is not used: TTL deletes "typically within a few
  days" (DynamoDB Developer Guide, "Working with Time to Live") and would not remove the raw object, links or
  signals with the item;
- an S3 lifecycle rule on the `raw/` prefix (infra/resources.yaml) as the backstop for raw objects the
  sweeper never reaches (mailboxes deleted without purge): raw objects carry no per-tenant tag today, so the
  rule expires them after `MAX_DAYS`, the longest period a tenant may choose. S3 lifecycle works in whole days
  and runs asynchronously (S3 User Guide, "Managing your storage lifecycle").
Nothing at the provider is deleted. The renewer sweeps the mailboxes it maintains (active ones).
"""
from __future__ import annotations

from datetime import timedelta
from typing import Iterable

from chalicelib.erasure.delete import add_counts, delete_messages
from chalicelib.logs import logger
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.models.tenant import Tenant
from chalicelib.timeutil import isoformat, now_iso, utcnow

MAX_DAYS = 3650                 # the longest period a tenant may set (ten years)
PER_MAILBOX = 500
PER_RUN = 5000
PAGE = 100


def retention_days(tenant: Tenant | None) -> int | None:
    value = ((tenant.settings or {}).get("privacy") or {}).get("retention_days") if tenant else None
    return int(value) if value else None


def set_retention(tenant: Tenant, days: int | None) -> int | None:
    """Store the period, conditional on `updated_at` (the caller retries on `UpdateError`)."""
    privacy = {**((tenant.settings or {}).get("privacy") or {}), "retention_days": days}
    settings = {**(tenant.settings or {}), "privacy": privacy}
    tenant.update(actions=[Tenant.settings.set(settings), Tenant.updated_at.set(now_iso())],
                  condition=Tenant.updated_at == tenant.updated_at)
    return days


def cutoff(days: int, now=None) -> str:
    """The `date_key` bound: messages dated before it are past the period."""
    return isoformat((now or utcnow()) - timedelta(days=days))


def sweep_mailbox(mailbox: Mailbox, days: int, limit: int, now=None) -> dict[str, int]:
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
        counts = add_counts(counts, delete_messages(page))
        deleted += len(page)
    return counts


def sweep(mailboxes: Iterable[Mailbox], now=None, budget: int = PER_RUN) -> dict[str, int]:
    """The renewer's run: mailboxes of tenants with a retention period, bounded per mailbox and in all."""
    tenants: dict[str, int | None] = {}
    total: dict[str, int] = {}
    for mailbox in mailboxes:
        if budget <= 0:
            break
        if mailbox.tenant_id not in tenants:
            try:
                tenants[mailbox.tenant_id] = retention_days(Tenant.get(mailbox.tenant_id))
            except Tenant.DoesNotExist:
                tenants[mailbox.tenant_id] = None
        days = tenants[mailbox.tenant_id]
        if not days:
            continue
        counts = sweep_mailbox(mailbox, days, min(PER_MAILBOX, budget), now)
        budget -= counts.get("messages", 0)
        total = add_counts(total, counts)
    if total:
        logger.info("retention sweep deleted messages", extra={"counts": total})
    return total
