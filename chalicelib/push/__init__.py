"""Provider push notifications (Gmail Pub/Sub, Microsoft Graph change notifications) → coalesced sync requests.

A push for a mailbox of a tenant that may not sync (suspended, or on a plan without mailbox connection:
`tenancy.service.may_sync`, the scheduler's and the worker's rule) is verified as any other, then acknowledged
with the endpoint's documented status — so the provider neither retries it nor drops the subscription for
failing — and queues nothing. `tenant_may_sync` caches each tenant's answer for a minute in a warm API process,
so a suspension or a reactivation reaches the push endpoints within that minute.
"""
from __future__ import annotations

from chalicelib.tenancy.service import SyncPermission

tenant_may_sync = SyncPermission(ttl=60.0)


def gmail_push_key(email: str) -> str:
    """`Mailbox.push_key` of a gmail mailbox: Gmail notifications name the account by `emailAddress`."""
    return f"gmail#{email.strip().lower()}"
