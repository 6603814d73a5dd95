"""What names a purged mailbox outside its messages: events (payloads carry `mailbox_id`/`message_id`), the
webhook deliveries of those events, and users' in-app notifications (their `data` carries the same ids).

None of them holds message content or an address; they expire after 90 days (DynamoDB TTL). A purge deletes
them anyway, page by page: the tenant's event partition (one Query page at a time, filtered here on the ids)
and the notification partitions of the users who had access to the mailbox (owner and shares).
"""
from __future__ import annotations

import json
from typing import Iterable

from chalicelib.models.event import Event
from chalicelib.models.notification import Notification
from chalicelib.models.webhook import WebhookDelivery
from chalicelib.notify.deliveries import delivery_id_for

PAGE = 500


def _names(value, needles: frozenset[str]) -> bool:
    text = json.dumps(value or {}, sort_keys=True, default=str)
    return any(needle in text for needle in needles)


def events_page(tenant_id: str, needles: Iterable[str], last_key: dict | None) -> tuple[dict[str, int], dict | None]:
    """Delete one page of the tenant's events naming any of `needles` (and their webhook deliveries); returns
    counts and the key to continue from (None: the partition is done)."""
    wanted = frozenset(needles)
    page = Event.query(tenant_id, limit=PAGE, last_evaluated_key=last_key)
    doomed = [event for event in page if _names(event.payload, wanted)]
    with WebhookDelivery.batch_write() as batch:
        for event in doomed:
            batch.delete(WebhookDelivery(tenant_id, delivery_id_for(event.event_id)))
    with Event.batch_write() as batch:
        for event in doomed:
            batch.delete(Event(tenant_id, event.event_id))
    return {"events": len(doomed)}, page.last_evaluated_key


def notifications(tenant_id: str, user_ids: Iterable[str], needles: Iterable[str]) -> int:
    """Delete the users' notifications naming any of `needles`."""
    wanted = frozenset(needles)
    count = 0
    for user_id in dict.fromkeys(user_ids):
        with Notification.batch_write() as batch:
            for item in Notification.query(f"{tenant_id}#{user_id}"):
                if _names(item.data, wanted):
                    batch.delete(Notification(item.user_key, item.notification_id))
                    count += 1
    return count
