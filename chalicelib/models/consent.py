"""Pending OAuth consents: one item per issued `state`, deleted when used (single use) and expired by TTL."""
from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from chalicelib.models.base import table_meta


class ConsentState(Model):
    Meta = table_meta("oauth_states")

    state_id = UnicodeAttribute(hash_key=True)     # random, 256 bits
    tenant_id = UnicodeAttribute()
    mailbox_id = UnicodeAttribute()
    kind = UnicodeAttribute()                      # gmail | outlook
    sealed = UnicodeAttribute()                    # KMS envelope of the flow's pending data (PKCE verifier …)
    return_url = UnicodeAttribute(null=True)
    expires_at = NumberAttribute()                 # epoch seconds; also the table's TTL attribute
    created_at = UnicodeAttribute()
