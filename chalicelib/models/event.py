"""Stored events (every event is kept here before and regardless of delivery; webhooks read from it).

`by_unsent` (sparse, keys only: `unsent_shard` is set only on an event whose queue message SQS refused,
`notify.events.emit`): the renewer re-sends those (`notify.events.resend_unsent`) and clears the mark.
"""
from __future__ import annotations

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.indexes import GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from chalicelib.models.base import table_meta
from chalicelib.models.conflicts import SendsConflictsAgain

UNSENT_SHARD = "unsent"


class EventUnsent(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_unsent"
        projection = KeysOnlyProjection()

    unsent_shard = UnicodeAttribute(hash_key=True)
    event_id = UnicodeAttribute(range_key=True)


class Event(SendsConflictsAgain, Model):
    Meta = table_meta("events")

    tenant_id = UnicodeAttribute(hash_key=True)
    event_id = UnicodeAttribute(range_key=True)   # time-ordered (ids.new_id)
    type = UnicodeAttribute()
    payload = JSONAttribute(default=dict)
    created_at = UnicodeAttribute()
    expires_at = NumberAttribute(null=True)       # TTL (epoch seconds)
    unsent_shard = UnicodeAttribute(null=True)    # set while its queue message is owed (`by_unsent`)

    by_unsent = EventUnsent()
