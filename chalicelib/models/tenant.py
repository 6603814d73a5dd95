"""Tenants (CRM vendors' customers) and their API keys."""
from __future__ import annotations

from pynamodb.attributes import (BooleanAttribute, JSONAttribute, ListAttribute, NumberAttribute, UnicodeAttribute)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from chalicelib.models.base import table_meta
from chalicelib.models.conflicts import SendsConflictsAgain


class TenantsByCreated(GlobalSecondaryIndex):
    """Operator listing: every tenant item has `kind = "tenant"`; newest last."""
    class Meta:
        index_name = "by_created"
        projection = AllProjection()

    kind = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class Tenant(SendsConflictsAgain, Model):
    Meta = table_meta("tenants")

    tenant_id = UnicodeAttribute(hash_key=True)
    kind = UnicodeAttribute(default="tenant")
    name = UnicodeAttribute()
    plan = UnicodeAttribute()
    status = UnicodeAttribute(default="active")
    settings = JSONAttribute(default=dict)
    own_domains = ListAttribute(of=UnicodeAttribute, default=list)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    # the tenant's secrets keys, sealed under the root key (security/tenant_keys.py): key id → {"sealed", "root",
    # "created_at"}
    secrets_keys = JSONAttribute(null=True)
    secrets_key_id = UnicodeAttribute(null=True)
    # bumped by every mailbox creation, in the creation's transaction: what makes the plan's `max_mailboxes` exact
    # under concurrent creates (mailboxes/service.py `_save_within_limit`, tenancy/limits.py); not a count
    mailbox_version = NumberAttribute(null=True)
    # the same for the tenant's scanner rules (`pairing/rulebook.py`, at most `MAX_RULES`): bumped by every rule
    # creation in its transaction (tenancy/limits.py `create_counted`)
    rule_version = NumberAttribute(null=True)

    by_created = TenantsByCreated()


class RootKey(Model):
    """The deployment's root secrets key, wrapped by KMS; it wraps each tenant's secrets key
    (`security/tenant_keys.py`)."""
    Meta = table_meta("root_keys")

    key_id = UnicodeAttribute(hash_key=True)
    wrapped = UnicodeAttribute()
    created_at = UnicodeAttribute()


class KeysByTenant(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_tenant"
        projection = AllProjection()

    tenant_id = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class ApiKey(Model):
    """`key_id` is the visible prefix of the key; only the SHA-256 of the whole key is stored."""
    Meta = table_meta("api_keys")

    key_id = UnicodeAttribute(hash_key=True)
    tenant_id = UnicodeAttribute()
    name = UnicodeAttribute()
    key_sha256 = UnicodeAttribute()
    status = UnicodeAttribute(default="active")
    allowed_ips = ListAttribute(of=UnicodeAttribute, default=list)
    require_user = BooleanAttribute(default=False)
    created_at = UnicodeAttribute()
    last_used_at = UnicodeAttribute(null=True)

    by_tenant = KeysByTenant()
