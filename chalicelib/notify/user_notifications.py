"""Per-user notification settings, the fan-out of events to users, and the in-app feed.

Every kind defaults to `in_app`. `in_app` puts the notification in the user's feed; `email` puts it in the feed
as well and in the next email digest (`digest.py`); `off` drops it. The feed is newest first with an unread
count (the sparse `by_unread` index). One notification per (user, event): its id derives from the event id.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from pynamodb.exceptions import DoesNotExist

from chalicelib.models.event import Event
from chalicelib.models.notification import Notification, NotificationSettings
from chalicelib.notify import digest
from chalicelib.notify.recipients import KINDS, recipients_of
from chalicelib.timeutil import now_iso

CHANNELS = ("in_app", "email", "off")
DEFAULT_CHANNEL = "in_app"
RETENTION_SECONDS = 90 * 24 * 3600
MAX_MARK_ALL = 1000
BATCH_GET_KEYS = 100
TITLES = {"new_mail": "New mail", "pairing_signal": "A pairing suggestion needs your decision",
          "mailbox_attention": "A mailbox needs attention"}


class EmailRequired(ValueError):
    """A kind is set to `email` but the user has no digest address."""


def user_key(tenant_id: str, user_id: str) -> str:
    return f"{tenant_id}#{user_id}"


def get_settings_item(tenant_id: str, user_id: str) -> NotificationSettings | None:
    try:
        return NotificationSettings.get(tenant_id, user_id)
    except DoesNotExist:
        return None


def effective_channels(item: NotificationSettings | None) -> dict[str, str]:
    stored = dict(item.channels or {}) if item else {}
    return {kind: stored.get(kind, DEFAULT_CHANNEL) for kind in KINDS}


def put_settings(tenant_id: str, user_id: str, channels: dict[str, str], email: str | None) -> NotificationSettings:
    """Merge `channels` into the stored ones; `email` replaces the digest address when given."""
    item = get_settings_item(tenant_id, user_id)
    merged = {**effective_channels(item), **channels}
    address = email if email is not None else (item.email if item else None)
    if "email" in merged.values() and not address:
        raise EmailRequired("Set `email` to receive email notifications.")
    actions = [NotificationSettings.channels.set(merged), NotificationSettings.updated_at.set(now_iso())]
    actions.append(NotificationSettings.email.set(address) if address else NotificationSettings.email.remove())
    NotificationSettings(tenant_id, user_id).update(actions=actions)
    return NotificationSettings.get(tenant_id, user_id)


# --- fan-out (notifier) -------------------------------------------------------------------------------------
def _summary(event: Event) -> dict[str, Any]:
    payload = event.payload or {}
    keep = ("mailbox_id", "message_id", "signal_id", "record", "status", "reason", "folder", "expires_at")
    return {k: payload[k] for k in keep if k in payload}


def on_event(event: Event, now: float | None = None) -> int:
    """Notify the users `event` concerns according to their settings; returns how many were notified."""
    return on_events([event], now)


def on_events(events: Sequence[Event], now: float | None = None) -> int:
    """Notify the users each of `events` concerns according to their settings; returns how many notifications
    that is (new or already there).

    Per call, not per event: the recipients (`recipients.recipients_of`: one BatchGetItem + one Query per mailbox),
    every recipient's settings (one BatchGetItem), which notifications exist already (consistent BatchGetItem) and
    the new ones written with BatchWriteItem; then one digest is scheduled per user who got an `email` notification
    (new, or found still waiting for its digest on a redelivery). A notification is put only when absent because a
    put would reset one the user has read (`read_at`, `unread_key`) — the id derives from the event id, so a
    redelivered event finds it. Unlike a conditional put this leaves a window: two consumers of the same queue
    message that both read before either writes put identical items (the second rewrites the first's bytes; a read
    in those milliseconds would be undone). SQS redelivers a message only after its visibility timeout, long after
    the first consumer's writes, so that needs two overlapping deliveries — and costs at most one unread mark."""
    planned = recipients_of(events)
    if not planned:
        return 0
    now = digest.clock() if now is None else now
    settings = _settings_items({(event.tenant_id, user) for event, _kind, users in planned for user in users})
    items: list[Notification] = []
    for event, kind, users in planned:
        for user_id in users:
            channel = effective_channels(settings.get((event.tenant_id, user_id)))[kind]
            if channel != "off":
                items.append(_item(event, user_id, kind, channel, now))
    existing, waiting = _existing_keys(items)
    new = [item for item in items if (item.user_key, item.notification_id) not in existing]
    with Notification.batch_write() as batch:
        for item in new:
            batch.save(item)
    # Users with an email notification of these events that is new, or found still waiting for its digest (a
    # redelivered message: its first delivery wrote them and may have failed before the digest was queued);
    # `schedule` writes nothing while a digest is due.
    for tenant_id, user_id in dict.fromkeys((i.tenant_id, i.user_id) for i in items if i.channel == "email" and (
            (i.user_key, i.notification_id) not in existing or (i.user_key, i.notification_id) in waiting)):
        digest.schedule(tenant_id, user_id, now, settings=settings.get((tenant_id, user_id)))
    return len(items)


def _settings_items(keys: set[tuple[str, str]]) -> dict[tuple[str, str], NotificationSettings]:
    wanted = sorted(keys)
    found: dict[tuple[str, str], NotificationSettings] = {}
    for start in range(0, len(wanted), BATCH_GET_KEYS):
        for item in NotificationSettings.batch_get(wanted[start:start + BATCH_GET_KEYS]):
            found[(item.tenant_id, item.user_id)] = item
    return found


def _existing_keys(items: Sequence[Notification]) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """The keys of `items` already stored, and those of them still waiting for an email digest."""
    keys = list(dict.fromkeys((i.user_key, i.notification_id) for i in items))
    found: set[tuple[str, str]] = set()
    waiting: set[tuple[str, str]] = set()
    for start in range(0, len(keys), BATCH_GET_KEYS):
        for n in Notification.batch_get(keys[start:start + BATCH_GET_KEYS], consistent_read=True,
                                        attributes_to_get=["user_key", "notification_id", "digest_key"]):
            found.add((n.user_key, n.notification_id))
            if n.digest_key:
                waiting.add((n.user_key, n.notification_id))
    return found, waiting


def _item(event: Event, user_id: str, kind: str, channel: str, now: float) -> Notification:
    key = user_key(event.tenant_id, user_id)
    return Notification(key, "ntf_" + event.event_id.split("_", 1)[-1], tenant_id=event.tenant_id,
                        user_id=user_id, kind=kind, channel=channel, event_id=event.event_id,
                        event_type=event.type, title=TITLES[kind], data=_summary(event), created_at=now_iso(),
                        unread_key=key, digest_key=key if channel == "email" else None,
                        expires_at=int(now) + RETENTION_SECONDS)


# --- feed ---------------------------------------------------------------------------------------------------
def feed(tenant_id: str, user_id: str, limit: int, last_key: dict | None,
         unread_only: bool = False) -> tuple[list[Notification], dict | None]:
    key = user_key(tenant_id, user_id)
    if unread_only:
        keys = Notification.by_unread.query(key, scan_index_forward=False, limit=limit, last_evaluated_key=last_key)
        found = list(keys)
        items = list(Notification.batch_get([(k.user_key, k.notification_id) for k in found])) if found else []
        items.sort(key=lambda n: n.notification_id, reverse=True)
        return items, keys.last_evaluated_key
    result = Notification.query(key, scan_index_forward=False, limit=limit, last_evaluated_key=last_key)
    return list(result), result.last_evaluated_key


def unread_count(tenant_id: str, user_id: str) -> int:
    return Notification.by_unread.count(user_key(tenant_id, user_id))


def get_notification(tenant_id: str, user_id: str, notification_id: str) -> Notification | None:
    try:
        return Notification.get(user_key(tenant_id, user_id), notification_id)
    except DoesNotExist:
        return None


def mark_read(items: Iterable[Notification]) -> int:
    count = 0
    stamp = now_iso()
    for item in items:
        if item.read_at is None:
            item.update(actions=[Notification.read_at.set(stamp), Notification.unread_key.remove()])
            count += 1
    return count


def mark_all_read(tenant_id: str, user_id: str) -> int:
    keys = list(Notification.by_unread.query(user_key(tenant_id, user_id), limit=MAX_MARK_ALL))
    items = Notification.batch_get([(k.user_key, k.notification_id) for k in keys]) if keys else []
    return mark_read(items)
