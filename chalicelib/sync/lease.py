"""At most one sync per mailbox at a time: a lease with expiry on the mailbox item.

All transitions are single conditional `UpdateItem`s on the mailbox, so two workers can never both hold it
(each sent again when the item is held by a transaction under way — `models.conflicts`):

- acquire:  lease absent or expired (and the mailbox exists and is active) → owner token + expiry,
            `sync_stage = syncing`, `sync_requested = false` (this sync satisfies every earlier request), and
            the push-coalescing marker `sync_queued_at` removed (the queued job has been taken).
- flag:     a live lease exists → `sync_requested = true` (a push/refresh/job arriving mid-sync).
- renew:    still the owner → push the expiry out.
- release:  still the owner → lease removed, `sync_requested` reset and the final sync state written, in ONE
            update that returns the item's previous values (ReturnValues=ALL_OLD): the caller enqueues exactly
            one follow-up when `sync_requested` was true.

Release timeline (why one write loses no request):
    t0 a request flags sync_requested=true (lease live, so its conditional write succeeds)
    t1 release: lease_owner == me → remove lease, sync_requested=false; ALL_OLD shows true → follow-up job
    t2 a request after t1 finds no lease: flag fails, so it enqueues a job itself (coalesced by the marker)
The expiry outlives the worker's Lambda timeout, so a crashed worker's lease lapses and the next job (or the
renewer's sweep) takes over from the persisted cursors.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from pynamodb.exceptions import UpdateError

from chalicelib.config import get_settings
from chalicelib.logs import logger
from chalicelib.models.conflicts import retry_conflicts
from chalicelib.models.mailbox import Mailbox
from chalicelib.timeutil import now_iso

LEASE_GRACE_SECONDS = 60


def lease_seconds() -> int:
    return get_settings().worker_timeout_seconds + LEASE_GRACE_SECONDS


def _condition_failed(exc: UpdateError) -> bool:
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"


class LeaseLost(Exception):
    """Another worker owns the mailbox now (our lease expired); stop without writing more sync state."""


@dataclass
class Lease:
    tenant_id: str
    mailbox_id: str
    owner: str
    expires_at: float

    def _item(self) -> Mailbox:
        return Mailbox(self.tenant_id, self.mailbox_id)


def lease_is_live(mailbox: Mailbox, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    return bool(mailbox.lease_owner) and (mailbox.lease_expires_at or 0) >= now


def acquire(tenant_id: str, mailbox_id: str, *, now: float | None = None,
            ttl: float | None = None) -> tuple[Lease, Mailbox] | None:
    """The lease and the freshly read mailbox, or None when the lease is held by a live owner or the mailbox
    is gone/not active (re-read to tell which)."""
    now = time.time() if now is None else now
    lease = Lease(tenant_id, mailbox_id, f"lease_{secrets.token_hex(8)}", now + (ttl or lease_seconds()))
    item = lease._item()
    condition = (Mailbox.mailbox_id.exists() & (Mailbox.status == "active")
                 & (Mailbox.lease_owner.does_not_exist() | (Mailbox.lease_expires_at < now)))
    try:
        item.update(actions=[Mailbox.lease_owner.set(lease.owner), Mailbox.lease_expires_at.set(lease.expires_at),
                             Mailbox.sync_stage.set("syncing"), Mailbox.last_sync_started_at.set(now_iso()),
                             Mailbox.sync_requested.set(False), Mailbox.sync_queued_at.remove()],
                    condition=condition)
    except UpdateError as exc:
        if _condition_failed(exc):
            return None
        raise
    return lease, item


def flag_follow_up(tenant_id: str, mailbox_id: str, *, now: float | None = None) -> bool:
    """Set `sync_requested` on a live lease; False when no live lease exists (the caller should sync/enqueue)."""
    now = time.time() if now is None else now
    condition = (Mailbox.mailbox_id.exists() & Mailbox.lease_owner.exists() & (Mailbox.lease_expires_at >= now))
    try:
        Mailbox(tenant_id, mailbox_id).update(actions=[Mailbox.sync_requested.set(True)], condition=condition)
    except UpdateError as exc:
        if _condition_failed(exc):
            return False
        raise
    return True


def renew(lease: Lease, *, now: float | None = None, ttl: float | None = None) -> bool:
    """Extend the lease; False when it is no longer ours (the caller must stop writing sync state)."""
    now = time.time() if now is None else now
    expires = now + (ttl or lease_seconds())
    try:
        lease._item().update(actions=[Mailbox.lease_expires_at.set(expires)],
                             condition=Mailbox.lease_owner == lease.owner)
    except UpdateError as exc:
        if _condition_failed(exc):
            return False
        raise
    lease.expires_at = expires
    return True


def release(lease: Lease, actions: list | None = None) -> bool:
    """Give the lease up, writing `actions` (the final sync state) in the same update; True when a follow-up
    sync was requested meanwhile (enqueue exactly one). False also when the lease was no longer ours."""
    item = lease._item()
    hash_key, range_key = item._get_hash_range_key_serialized_values()
    try:
        answer = retry_conflicts(lambda: Mailbox._get_connection().update_item(     # as `Mailbox.update` does
            hash_key, range_key=range_key, return_values="ALL_OLD",
            actions=[Mailbox.lease_owner.remove(), Mailbox.lease_expires_at.remove(),
                     Mailbox.sync_requested.set(False)] + list(actions or []),
            condition=Mailbox.lease_owner == lease.owner))
    except UpdateError as exc:
        if _condition_failed(exc):
            logger.warning("lease lost before release", extra={"mailbox_id": lease.mailbox_id})
            return False
        raise
    previous = (answer or {}).get("Attributes") or {}
    return bool((previous.get("sync_requested") or {}).get("BOOL"))
