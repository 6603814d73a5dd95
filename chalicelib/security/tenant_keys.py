"""Each tenant's secrets key: one AES-256 data key per tenant and generation, wrapped by KMS, that seals every
secret of the tenant (`security.crypto`, blob format `v2`).

Why a tenant key and not a data key per secret (format `v1`): a scheduled check opens a mailbox's sealed
credentials every 30 minutes, in whichever warm Lambda takes the job, so a per-mailbox data key is never in a
process cache at the next tick — every tick of every mailbox paid a `kms:Decrypt` ($0.03 per 10,000 requests,
https://aws.amazon.com/kms/pricing/: $0.0043 a mailbox-month, most of an idle mailbox's cost). With one key per
tenant, a process decrypts it once per `data_key_cache_seconds` and opens all the tenant's mailboxes with it
(the scheduler's tick reaches a tenant's mailboxes within seconds of each other). This is the data-key reuse the
AWS Encryption SDK's caching makes, with the same bounds: age and number of entries
(https://docs.aws.amazon.com/encryption-sdk/latest/developer-guide/data-key-caching.html).

What keeps each secret bound to its owner is unchanged: every blob is sealed with AES-256-GCM whose associated
data names the tenant AND the owner (mailbox, mail server, ...), so a blob copied to another item or tenant fails
authentication. KMS sees the tenant in the encryption context (`{"tenant_id", "purpose": "tenant-secrets-key"}`),
so CloudTrail records the tenant of every unwrap, not the mailbox.

Stored on the tenant item: `secrets_keys` (JSON: key id → `{"wrapped": base64 KMS ciphertext, "created_at"}`)
and `secrets_key_id`, the key new blobs are sealed with. The key is made on the tenant's first seal, by a
conditional update (two processes racing both generate one; the loser reads and uses the winner's). Keys are
never removed while the tenant exists — old blobs name theirs — and a key older than `MAX_KEY_AGE_DAYS` is
replaced for new seals: AES-GCM with random 96-bit nonces must not seal more than 2^32 messages under one key
(NIST SP 800-38D §8.3); a tenant's secrets are rewritten at most on each token refresh (about hourly per
mailbox), so 90 days stay orders of magnitude below that bound even for 100,000 mailboxes. Deleting the tenant
item makes every blob of the tenant unreadable.

The plaintext key stays in this module's cache (at most `CACHE_SIZE` entries, `data_key_cache_seconds` old;
0 disables it) and is handed to `security.crypto` only; it is never logged.
"""
from __future__ import annotations

import base64
import secrets
import threading
import time
from collections import OrderedDict
from datetime import timedelta

from pynamodb.exceptions import DoesNotExist, UpdateError

from chalicelib import aws
from chalicelib.config import get_settings
from chalicelib.models.tenant import Tenant
from chalicelib.timeutil import now_iso, parse_iso, utcnow

MAX_KEY_AGE_DAYS = 90
CACHE_SIZE = 1024
PURPOSE = "tenant-secrets-key"


class TenantKeyUnavailable(Exception):
    """The tenant does not exist (any more) or does not hold the key a blob names."""


def _context(tenant_id: str) -> dict[str, str]:
    return {"tenant_id": tenant_id, "purpose": PURPOSE}


_lock = threading.Lock()
_plain: OrderedDict[tuple[str, str], tuple[float, bytes]] = OrderedDict()   # (tenant, key id) → (expiry, key)
_current: OrderedDict[str, tuple[float, str]] = OrderedDict()               # tenant → (expiry, current key id)


def clear_cache() -> None:
    with _lock:
        _plain.clear()
        _current.clear()


def _remember(cache: OrderedDict, key, value) -> None:
    ttl = get_settings().data_key_cache_seconds
    if ttl <= 0:
        return
    with _lock:
        cache[key] = (time.monotonic() + ttl, value)
        cache.move_to_end(key)
        while len(cache) > CACHE_SIZE:
            cache.popitem(last=False)


def _cached(cache: OrderedDict, key):
    with _lock:
        hit = cache.get(key)
        if hit is None:
            return None
        if hit[0] <= time.monotonic():
            del cache[key]
            return None
        cache.move_to_end(key)
        return hit[1]


def _read_tenant(tenant_id: str) -> Tenant:
    try:
        return Tenant.get(tenant_id, consistent_read=True,
                          attributes_to_get=["tenant_id", "secrets_keys", "secrets_key_id"])
    except DoesNotExist:
        raise TenantKeyUnavailable(f"tenant {tenant_id} does not exist") from None


def _unwrap(tenant_id: str, key_id: str, wrapped: str) -> bytes:
    plaintext = aws.kms().decrypt(CiphertextBlob=base64.b64decode(wrapped),
                                  EncryptionContext=_context(tenant_id))["Plaintext"]
    _remember(_plain, (tenant_id, key_id), plaintext)
    return plaintext


def key_by_id(tenant_id: str, key_id: str) -> bytes:
    """The plaintext of the tenant's key `key_id` (a blob names it): cached, else read and unwrapped."""
    cached = _cached(_plain, (tenant_id, key_id))
    if cached is not None:
        return cached
    entry = (_read_tenant(tenant_id).secrets_keys or {}).get(key_id)
    if not entry:
        raise TenantKeyUnavailable(f"tenant {tenant_id} holds no key {key_id}")
    return _unwrap(tenant_id, key_id, entry["wrapped"])


def _fresh(entry: dict) -> bool:
    return utcnow() - parse_iso(entry["created_at"]) < timedelta(days=MAX_KEY_AGE_DAYS)


def current_key(tenant_id: str) -> tuple[str, bytes]:
    """(key id, plaintext) to seal the tenant's new blobs with — the current key while it is younger than
    `MAX_KEY_AGE_DAYS`, else a new one (made here)."""
    key_id = _cached(_current, tenant_id)
    if key_id is not None:
        plaintext = _cached(_plain, (tenant_id, key_id))
        if plaintext is not None:
            return key_id, plaintext
    tenant = _read_tenant(tenant_id)
    keys = tenant.secrets_keys or {}
    current = tenant.secrets_key_id
    if current and current in keys and _fresh(keys[current]):
        _remember(_current, tenant_id, current)
        plaintext = _cached(_plain, (tenant_id, current))
        return current, plaintext if plaintext is not None else _unwrap(tenant_id, current, keys[current]["wrapped"])
    return _new_key(tenant, keys, current)


def _new_key(tenant: Tenant, keys: dict, replacing: str | None) -> tuple[str, bytes]:
    tenant_id = tenant.tenant_id
    made = aws.kms().generate_data_key(KeyId=get_settings().kms_key_id, KeySpec="AES_256",
                                       EncryptionContext=_context(tenant_id))
    key_id = secrets.token_hex(6)
    stored = {**keys, key_id: {"wrapped": base64.b64encode(made["CiphertextBlob"]).decode("ascii"),
                               "created_at": now_iso()}}
    unchanged = (Tenant.secrets_key_id == replacing) if replacing else Tenant.secrets_key_id.does_not_exist()
    try:
        Tenant(tenant_id).update(actions=[Tenant.secrets_keys.set(stored), Tenant.secrets_key_id.set(key_id)],
                                 condition=Tenant.tenant_id.exists() & unchanged)
    except UpdateError as exc:
        if getattr(exc, "cause_response_code", None) != "ConditionalCheckFailedException":
            raise
        winner = _read_tenant(tenant_id)      # another process made the key first (or the tenant is gone)
        if not winner.secrets_key_id or winner.secrets_key_id == replacing:
            raise TenantKeyUnavailable(f"tenant {tenant_id} does not exist") from None
        _remember(_current, tenant_id, winner.secrets_key_id)
        return winner.secrets_key_id, key_by_id(tenant_id, winner.secrets_key_id)
    _remember(_plain, (tenant_id, key_id), made["Plaintext"])
    _remember(_current, tenant_id, key_id)
    return key_id, made["Plaintext"]
