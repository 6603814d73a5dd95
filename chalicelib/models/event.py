"""Stored events (every event is kept here before and regardless of delivery; webhooks read from it)."""
from __future__ import annotations

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from chalicelib.models.base import table_meta


class Event(Model):
    Meta = table_meta("events")

    tenant_id = UnicodeAttribute(hash_key=True)
    event_id = UnicodeAttribute(range_key=True)   # time-ordered (ids.new_id)
    type = UnicodeAttribute()
    payload = JSONAttribute(default=dict)
    created_at = UnicodeAttribute()
    expires_at = NumberAttribute(null=True)       # TTL (epoch seconds)
