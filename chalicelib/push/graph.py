"""Microsoft Graph change and lifecycle notifications → coalesced sync requests.

learn.microsoft.com "Set up notifications for changes in resource data" / "Receive change notifications
through webhooks" / "Reduce missing subscriptions and change notifications":
- a notification carries `subscriptionId` and the subscription's `clientState`; the mailbox is found through
  the `by_push_key` index (SHA-256 of the clientState, `providers.graph.subscriptions.push_key`), the
  subscription id must be one of the mailbox's, and the clientState is compared with the stored (sealed) one
  in constant time (`hmac.compare_digest`). Anything else is dropped, counted and logged without secrets.
- change notifications are answered 202 within 3 s: this module never calls Graph for them — it only asks for
  a coalesced sync (`sync.enqueue.request_sync(..., "push")`).
- lifecycle events are verified the same way and never handled inline either
  (learn.microsoft.com/graph/change-notifications-lifecycle-events: answer 202 first, then process):
  `missed` → request a sync; `reauthorizationRequired` and `subscriptionRemoved` → recorded on the mailbox
  (`sync.push.owe`) and a sync requested, whose worker settles them before syncing (`sync.push.settle`:
  reauthorize or renew; subscribe again), with the renewer as the safety net. Nothing here calls Graph.
- a verified notification for a mailbox of a tenant that may not sync (suspended: `chalicelib.push`) is
  acknowledged (202) and queues nothing: a change notification is dropped (`tenant_not_syncing`), a
  `reauthorizationRequired` / `subscriptionRemoved` is recorded without a sync — nothing settles it while the
  tenant is suspended (the worker and the renewer skip the tenant), the renewer does once it is active again.
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any

from pynamodb.exceptions import DoesNotExist

from chalicelib.credentials.store import CredentialsUnreadable, CredentialStore
from chalicelib.logs import logger
from chalicelib.models.mailbox import Mailbox
from chalicelib.providers.graph.subscriptions import CLIENT_STATE_KEY, push_key
from chalicelib.push import tenant_may_sync
from chalicelib.sync.enqueue import request_sync
from chalicelib.sync.push import owe

MAX_ITEMS = 100       # Graph batches at most a few dozen notifications per POST


@dataclass
class Outcome:
    accepted: int = 0
    dropped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, subscription_id: str | None) -> None:
        self.dropped += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        logger.warning("graph notification dropped", extra={"reason": reason, "subscription_id": subscription_id})


def _mailbox_for(item: dict[str, Any]) -> tuple[Mailbox | None, str]:
    """The mailbox a notification belongs to, or (None, reason)."""
    client_state, sub_id = str(item.get("clientState") or ""), str(item.get("subscriptionId") or "")
    if not client_state or not sub_id:
        return None, "unsigned"
    keys = list(Mailbox.by_push_key.query(push_key(client_state), limit=2))
    if len(keys) != 1:
        return None, "unknown_client_state"
    try:
        mailbox = Mailbox.get(keys[0].tenant_id, keys[0].mailbox_id, consistent_read=True)
    except DoesNotExist:
        return None, "mailbox_gone"
    if sub_id not in ((mailbox.push_state or {}).get("subscriptions") or {}).values():
        return None, "unknown_subscription"
    try:
        stored = CredentialStore(mailbox.tenant_id, mailbox.mailbox_id).load().secrets.get(CLIENT_STATE_KEY) or ""
    except CredentialsUnreadable:
        return None, "credentials_unreadable"
    if not hmac.compare_digest(stored.encode(), client_state.encode()):
        return None, "client_state_mismatch"
    return mailbox, ""


def _items(payload: Any) -> list[dict]:
    values = payload.get("value") if isinstance(payload, dict) else None
    return [item for item in (values or [])[:MAX_ITEMS] if isinstance(item, dict)]


def handle_notifications(payload: Any) -> Outcome:
    outcome, synced = Outcome(), set()
    for item in _items(payload):
        mailbox, reason = _mailbox_for(item)
        if mailbox is None:
            outcome.drop(reason, item.get("subscriptionId"))
            continue
        if mailbox.status != "active":
            outcome.drop("mailbox_not_active", item.get("subscriptionId"))
            continue
        if not tenant_may_sync(mailbox.tenant_id):
            outcome.drop("tenant_not_syncing", item.get("subscriptionId"))
            continue
        outcome.accepted += 1
        key = (mailbox.tenant_id, mailbox.mailbox_id)
        if key not in synced:
            synced.add(key)
            request_sync(mailbox.tenant_id, mailbox.mailbox_id, "push")
    return outcome


def _lifecycle(mailbox: Mailbox, event: str, sub_id: str) -> None:
    if event != "missed":
        owe(mailbox, event, sub_id)
    if tenant_may_sync(mailbox.tenant_id):      # else the renewer settles what is owed on reactivation
        request_sync(mailbox.tenant_id, mailbox.mailbox_id, "push")


def handle_lifecycle(payload: Any) -> Outcome:
    outcome = Outcome()
    for item in _items(payload):
        mailbox, reason = _mailbox_for(item)
        event = str(item.get("lifecycleEvent") or "")
        if mailbox is None:
            outcome.drop(reason, item.get("subscriptionId"))
            continue
        if event not in {"missed", "reauthorizationRequired", "subscriptionRemoved"}:
            outcome.drop("unknown_event", item.get("subscriptionId"))
            continue
        outcome.accepted += 1
        _lifecycle(mailbox, event, str(item["subscriptionId"]))
    return outcome
