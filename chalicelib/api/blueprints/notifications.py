"""User notifications: settings per kind, the in-app feed with unread count and mark-read, and the tenant's
SMTP relay for email digests. A user (X-User-Id) reaches only their own settings and feed; another user's
are 404. The tenant (no X-User-Id) reaches every user's, and alone manages the relay."""
from __future__ import annotations

from typing import TYPE_CHECKING

from chalice import Blueprint

from chalicelib.api.auth import is_user_id
from chalicelib.api.context import current_principal
from chalicelib.api.errors import ValidationFailed
from chalicelib.api.guards import not_configured, not_found, require_tenant_admin
from chalicelib.api.pagination import decode_cursor, encode_cursor
from chalicelib.api.routing import route
from chalicelib.lazy import lazy_module

if TYPE_CHECKING:   # annotations only: the request/response models load on first use (chalicelib.api.routing),
                    # the table's model with the service that returns it (chalicelib.lazy)
    from chalicelib.api.schemas.notifications import FeedQuery, PutNotificationSettings, PutRelay
    from chalicelib.models.notification import Notification, NotificationRelay

# Imported when a route first uses them (chalicelib.lazy: the API's cold start).
schemas = lazy_module("chalicelib.api.schemas.notifications")
digest = lazy_module("chalicelib.notify.digest")
user_notifications = lazy_module("chalicelib.notify.user_notifications")

bp = Blueprint(__name__)
TAGS = ("notifications",)


def _tenant_for(user_id: str) -> str:
    """The caller's tenant when it may reach `user_id`'s settings and feed: the tenant any user's, a user their
    own; an id no `X-User-Id` can carry names no user (404, as the privacy routes answer)."""
    principal = current_principal()
    if not is_user_id(user_id) or (principal.user_id is not None and principal.user_id != user_id):
        raise not_found("user", user_id[:130])
    return principal.tenant_id


def _out(item: Notification) -> dict:
    return schemas.NotificationOut(id=item.notification_id, kind=item.kind, channel=item.channel,
                                   event_id=item.event_id, event_type=item.event_type, title=item.title,
                                   data=item.data or {}, created_at=item.created_at, read_at=item.read_at,
                                   emailed_at=item.emailed_at).model_dump()


def _settings_out(tenant_id: str, user_id: str) -> dict:
    item = user_notifications.get_settings_item(tenant_id, user_id)
    return {"user_id": user_id, "channels": user_notifications.effective_channels(item),
            "email": item.email if item else None}


@route(bp, "/v1/users/{user_id}/notification-settings", methods=["GET"],
       response="chalicelib.api.schemas.notifications:NotificationSettingsOut", errors=(404,),
       summary="A user's notification channel per kind (default in_app)", tags=TAGS)
def get_settings(user_id: str):
    return _settings_out(_tenant_for(user_id), user_id)


@route(bp, "/v1/users/{user_id}/notification-settings", methods=["PUT"],
       body="chalicelib.api.schemas.notifications:PutNotificationSettings",
       response="chalicelib.api.schemas.notifications:NotificationSettingsOut", errors=(404, 422),
       summary="Set a user's notification channels (in_app | email | off) and digest address", tags=TAGS)
def put_settings(user_id: str, body: PutNotificationSettings):
    tenant_id = _tenant_for(user_id)
    channels = {k: v for k, v in body.channels.model_dump().items() if v is not None}
    try:
        user_notifications.put_settings(tenant_id, user_id, channels, body.email)
    except user_notifications.EmailRequired as exc:
        raise ValidationFailed(str(exc), errors=[{"field": "email", "message": str(exc)}]) from None
    return _settings_out(tenant_id, user_id)


@route(bp, "/v1/users/{user_id}/notifications", methods=["GET"], query="chalicelib.api.schemas.notifications:FeedQuery",
       response="chalicelib.api.schemas.notifications:Feed", errors=(404,),
       summary="A user's in-app notifications, newest first, with the unread count", tags=TAGS)
def list_feed(user_id: str, query: FeedQuery):
    tenant_id = _tenant_for(user_id)
    scope = f"notifications:{user_id}:{int(query.unread)}"
    items, last = user_notifications.feed(tenant_id, user_id, query.limit,
                                          decode_cursor(query.cursor, tenant_id, scope), query.unread)
    return {"items": [_out(i) for i in items], "next_cursor": encode_cursor(tenant_id, scope, last),
            "unread_count": user_notifications.unread_count(tenant_id, user_id)}


@route(bp, "/v1/users/{user_id}/notifications/{notification_id}/read", methods=["POST"],
       response="chalicelib.api.schemas.notifications:NotificationOut", errors=(404,),
       summary="Mark one notification read", tags=TAGS)
def mark_read(user_id: str, notification_id: str):
    tenant_id = _tenant_for(user_id)
    item = user_notifications.get_notification(tenant_id, user_id, notification_id)
    if item is None:
        raise not_found("notification", notification_id)
    user_notifications.mark_read([item])
    return _out(item)


@route(bp, "/v1/users/{user_id}/notifications/read", methods=["POST"],
       response="chalicelib.api.schemas.notifications:Marked", errors=(404,),
       summary="Mark all of a user's notifications read (up to 1000 a call)", tags=TAGS)
def mark_all_read(user_id: str):
    tenant_id = _tenant_for(user_id)
    return {"marked": user_notifications.mark_all_read(tenant_id, user_id)}


def _relay_out(relay: NotificationRelay) -> dict:
    return schemas.RelayOut(host=relay.host, port=int(relay.port), security=relay.security, username=relay.username,
                            has_password=bool(relay.secret_ciphertext), from_address=relay.from_address,
                            digest_minutes=int(relay.digest_minutes), created_at=relay.created_at,
                            updated_at=relay.updated_at).model_dump()


@route(bp, "/v1/notification-relay", methods=["PUT"], body="chalicelib.api.schemas.notifications:PutRelay",
       response="chalicelib.api.schemas.notifications:RelayOut", errors=(422,),
       summary="Set the tenant's SMTP relay for email digests (password write-only)", tags=TAGS)
def put_relay(body: PutRelay):
    principal = require_tenant_admin()
    if body.password is None and digest.get_relay(principal.tenant_id) is None:
        raise ValidationFailed("password: required", errors=[{"field": "password", "message": "required"}])
    data = digest.RelayInput(host=body.host, port=body.port, security=body.security, username=body.username,
                             password=body.password, from_address=body.from_address,
                             digest_minutes=body.digest_minutes)
    try:
        relay = digest.put_relay(principal.tenant_id, data)
    except digest.RelayRefused as exc:
        raise ValidationFailed(f"{exc.field}: {exc}", errors=[{"field": exc.field, "message": str(exc)}]) from None
    return _relay_out(relay)


@route(bp, "/v1/notification-relay", methods=["GET"], response="chalicelib.api.schemas.notifications:RelayOut",
       errors=(404,), summary="The tenant's SMTP relay (without the password)", tags=TAGS)
def get_relay():
    relay = digest.get_relay(require_tenant_admin().tenant_id)
    if relay is None:
        raise not_configured("notification relay", "/v1/notification-relay")
    return _relay_out(relay)


@route(bp, "/v1/notification-relay", methods=["DELETE"], status=204, errors=(404,),
       summary="Remove the tenant's SMTP relay (email digests wait until one is set)", tags=TAGS)
def delete_relay():
    if not digest.delete_relay(require_tenant_admin().tenant_id):
        raise not_configured("notification relay", "/v1/notification-relay")
    return None
