"""Per-user notification settings, the fan-out of events to users, and the in-app feed.

Every kind defaults to `in_app`. `in_app` puts the notification in the user's feed; `email` puts it in the feed
as well and in the next email digest (`digest.py`); `off` drops it. The feed is newest first with an unread
count (the sparse `by_unread` index). One notification per (user, event): its id derives from the event id.
"""
from __future__ import annotations

from typing import Any, Iterable

from pynamodb.exceptions import DoesNotExist, PutError

from chalicelib.models.event import Event
from chalicelib.models.notification import Notification, NotificationSettings
from chalicelib.notify import digest
from chalicelib.notify.recipients import KINDS, recipients
from chalicelib.timeutil import now_iso

CHANNELS = ("in_app", "email", "off")
DEFAULT_CHANNEL = "in_app"
RETENTION_SECONDS = 90 * 24 * 3600
MAX_MARK_ALL = 1000
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
    kind, users = recipients(event)
    if kind is None:
        return 0
    now = digest.clock() if now is None else now
    notified = 0
    for user_id in users:
        settings = get_settings_item(event.tenant_id, user_id)
        channel = effective_channels(settings)[kind]
        if channel == "off":
            continue
        if _store(event, user_id, kind, channel, now) and channel == "email":
            digest.schedule(event.tenant_id, user_id, now)
        notified += 1
    return notified


def _store(event: Event, user_id: str, kind: str, channel: str, now: float) -> bool:
    key = user_key(event.tenant_id, user_id)
    item = Notification(key, "ntf_" + event.event_id.split("_", 1)[-1], tenant_id=event.tenant_id,
                        user_id=user_id, kind=kind, channel=channel, event_id=event.event_id,
                        event_type=event.type, title=TITLES[kind], data=_summary(event), created_at=now_iso(),
                        unread_key=key, digest_key=key if channel == "email" else None,
                        expires_at=int(now) + RETENTION_SECONDS)
    try:
        item.save(condition=Notification.notification_id.does_not_exist())
    except PutError as exc:
        if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
            return False  # a redelivered event: this user already has it
        raise
    return True


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
