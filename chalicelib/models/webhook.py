"""Tenant webhooks: one endpoint configuration per tenant, and one delivery item per (tenant, event).

`Webhook` holds the receiver URL, the subscribed event types and the signing secret as a KMS envelope
(`security/crypto.py`, owner id "webhook"); the secret is never stored in clear nor returned after creation.

`WebhookDelivery` is the state of delivering one event: `delivery_id` is derived from the event id (same
time-ordered suffix, prefix `whd_`), so a redelivered queue message finds the existing item instead of
creating a second one, and the base table lists a tenant's deliveries newest first. Indexes:

- `by_status` (`status_key = "<tenant>#<status>"`, range `delivery_id`): the log filtered by status and the
  "replay everything dead-lettered since" sweep.
- `by_due` (sparse: `due_shard` is set only while `status = pending`, range `next_attempt_at` epoch seconds):
  the safety-net sweep finds deliveries whose delayed queue message was lost.
"""
from __future__ import annotations

from pynamodb.attributes import ListAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from chalicelib.models.base import table_meta

DUE_SHARD = "pending"
# The event types a tenant can subscribe to (`Webhook.event_types`; empty: all of them); internal types (e.g.
# directory.changed) are never delivered. Here, beside the attribute, so the API's request models read them
# without loading the webhook service (`notify/webhook_config.py`, which re-exports them).
EVENT_TYPES: tuple[str, ...] = (
    "message.created", "message.paired", "signal.created", "record.created", "mailbox.status_changed",
    "mailbox.push_expiring", "mailbox.credentials_expiring", "outbox.sent", "outbox.failed")


class Webhook(Model):
    Meta = table_meta("webhooks")

    tenant_id = UnicodeAttribute(hash_key=True)
    url = UnicodeAttribute()
    event_types = ListAttribute(of=UnicodeAttribute, default=list)     # of EVENT_TYPES; empty: all
    secret_ciphertext = UnicodeAttribute()          # KMS envelope of {"secret": "whsec_..."}
    secret_created_at = UnicodeAttribute()
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()


class DeliveriesByStatus(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_status"
        projection = AllProjection()

    status_key = UnicodeAttribute(hash_key=True)
    delivery_id = UnicodeAttribute(range_key=True)


class DeliveriesDue(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_due"
        projection = KeysOnlyProjection()

    due_shard = UnicodeAttribute(hash_key=True)
    next_attempt_at = NumberAttribute(range_key=True)


class WebhookDelivery(Model):
    Meta = table_meta("webhook_deliveries")

    tenant_id = UnicodeAttribute(hash_key=True)
    delivery_id = UnicodeAttribute(range_key=True)  # "whd_" + the event id's time-ordered suffix
    event_id = UnicodeAttribute()
    event_type = UnicodeAttribute()
    status = UnicodeAttribute(default="pending")    # pending | delivered | dead_letter
    status_key = UnicodeAttribute()                 # "<tenant>#<status>"
    attempts = NumberAttribute(default=0)           # attempts in the current cycle (a replay restarts it)
    replays = NumberAttribute(default=0)
    next_attempt_at = NumberAttribute(null=True)    # epoch seconds; while pending only
    due_shard = UnicodeAttribute(null=True)         # DUE_SHARD while pending (sparse by_due)
    last_attempt_at = UnicodeAttribute(null=True)
    last_status_code = NumberAttribute(null=True)   # the receiver's HTTP status, if it answered
    last_error = UnicodeAttribute(null=True)        # a short status line; never the receiver's body
    created_at = UnicodeAttribute()
    delivered_at = UnicodeAttribute(null=True)
    dead_lettered_at = UnicodeAttribute(null=True)
    expires_at = NumberAttribute(null=True)         # TTL (epoch seconds), as the event's

    by_status = DeliveriesByStatus()
    by_due = DeliveriesDue()
