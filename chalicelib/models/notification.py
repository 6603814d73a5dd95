"""User notifications: per-user settings, the in-app feed, and the tenant's SMTP relay for email digests.

- `NotificationSettings` (tenant, user): channel per kind (`in_app` | `email` | `off`), the address digests go
  to, and the digest clock (`last_digest_at`, `digest_due_at` epoch seconds; a due time is set by exactly one
  conditional update, which is what schedules exactly one digest message).
- `Notification` (`user_key = "<tenant>#<user>"`, `notification_id` = "ntf_" + the event id's time-ordered
  suffix, so a redelivered event cannot notify a user twice). Sparse GSIs: `by_unread` (`unread_key` set while
  unread: the unread count) and `by_digest` (`digest_key` set while waiting for an email digest).
- `NotificationRelay` (tenant): SMTP host/port/security/login, the password as a KMS envelope, the From
  address and the digest interval in minutes.
"""
from __future__ import annotations

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from chalicelib.models.base import table_meta


class NotificationSettings(Model):
    Meta = table_meta("notification_settings")

    tenant_id = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute(range_key=True)
    channels = JSONAttribute(default=dict)          # {kind: "in_app" | "email" | "off"}
    email = UnicodeAttribute(null=True)             # digest recipient
    last_digest_at = NumberAttribute(null=True)
    digest_due_at = NumberAttribute(null=True)
    updated_at = UnicodeAttribute()


class NotificationsUnread(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_unread"
        projection = KeysOnlyProjection()

    unread_key = UnicodeAttribute(hash_key=True)
    notification_id = UnicodeAttribute(range_key=True)


class NotificationsForDigest(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_digest"
        projection = AllProjection()

    digest_key = UnicodeAttribute(hash_key=True)
    notification_id = UnicodeAttribute(range_key=True)


class Notification(Model):
    Meta = table_meta("notifications")

    user_key = UnicodeAttribute(hash_key=True)      # "<tenant>#<user>"
    notification_id = UnicodeAttribute(range_key=True)
    tenant_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    kind = UnicodeAttribute()                       # new_mail | pairing_signal | mailbox_attention
    channel = UnicodeAttribute()                    # in_app | email
    event_id = UnicodeAttribute()
    event_type = UnicodeAttribute()
    title = UnicodeAttribute()
    data = JSONAttribute(default=dict)
    created_at = UnicodeAttribute()
    read_at = UnicodeAttribute(null=True)
    unread_key = UnicodeAttribute(null=True)        # user_key while unread
    digest_key = UnicodeAttribute(null=True)        # user_key while waiting for an email digest
    emailed_at = UnicodeAttribute(null=True)
    expires_at = NumberAttribute(null=True)         # TTL (epoch seconds)

    by_unread = NotificationsUnread()
    by_digest = NotificationsForDigest()


class NotificationRelay(Model):
    Meta = table_meta("notification_relays")

    tenant_id = UnicodeAttribute(hash_key=True)
    host = UnicodeAttribute()
    port = NumberAttribute()
    security = UnicodeAttribute()                   # tls | starttls | none (local stage only)
    username = UnicodeAttribute(null=True)
    secret_ciphertext = UnicodeAttribute(null=True)  # KMS envelope of {"password": ...}
    from_address = UnicodeAttribute()
    digest_minutes = NumberAttribute(default=15)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
