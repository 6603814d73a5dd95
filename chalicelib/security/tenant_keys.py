"""Each tenant's secrets key, wrapped under the deployment's root key, which KMS wraps: the keys that seal every
secret of a tenant (`security.crypto`, blob format `v2`).

Why: a scheduled check opens a mailbox's sealed credentials every 30 minutes, in whichever warm Lambda takes the
job. With a KMS data key per secret (format `v1`) no process cache ever held it at the next tick, so every tick
of every mailbox paid a `kms:Decrypt` ($0.03 per 10,000 requests, https://aws.amazon.com/kms/pricing/: $0.0043
a mailbox-month, most of an idle mailbox's cost). Here a process asks KMS once per cache period for the root
key and opens every tenant's key with it locally — the key hierarchy of the AWS Encryption SDK's hierarchical
keyring ("branch keys" kept in DynamoDB, unwrapped by KMS and cached, deriving data keys locally:
https://docs.aws.amazon.com/encryption-sdk/latest/developer-guide/use-hierarchical-keyring.html), with its
bounds: a cache of limited age and size.

Keys and where they live:
- root key: 256 random bits from `kms:GenerateDataKey`, stored KMS-wrapped in the `root_keys` table
  (`RootKey`, id `ROOT_KEY_ID`; encryption context `{"purpose": "mailbridge-root-key"}`), made by the first
  process that needs it (a conditional put: two racing processes agree on the winner's). It never leaves KMS
  unwrapped except into this module's cache; the KMS key's own rotation re-protects it.
- tenant key: 256 random bits (`os.urandom`), sealed with AES-256-GCM under the root key, associated data
  naming the tenant and the key id (an entry copied to another tenant's item does not open), stored on the
  tenant item: `secrets_keys` (key id → `{"sealed", "root", "created_at"}`) and `secrets_key_id`, the key new
  blobs are sealed with. Made on the tenant's first seal by a conditional update (the loser of a race reads and
  uses the winner's key). Keys are never removed while the tenant exists — old blobs name theirs, and so do
  erasure records, whose address hash is keyed by a key derived from theirs (`privacy/erased.py`) — and a key
  older than `MAX_KEY_AGE_DAYS` is replaced for new seals: AES-GCM with random 96-bit nonces must not seal more
  than 2^32 messages under one key (NIST SP 800-38D §8.3); a tenant's secrets are rewritten at most on each
  token refresh (about hourly per mailbox), orders of magnitude below that bound in 90 days even for 100,000
  mailboxes. Deleting the tenant item makes every blob of the tenant unreadable (the root key alone opens
  nothing).

What keeps each secret bound to its owner is unchanged: every blob's associated data names the tenant AND the
owner (mailbox, mail server, ...), so a blob copied to another item or tenant fails authentication. The trade:
KMS's audit trail shows the root key's unwraps, once per process and cache period, not each tenant's — the
process that may call `kms:Decrypt` could open every secret either way.

Plaintext keys stay in this module's cache (at most `CACHE_SIZE` entries, `data_key_cache_seconds` old; 0
disables it) and are handed to `security.crypto` only; they are never logged. A key missing from the cache is
loaded by one thread while the others that want it wait: the check function opens a batch's ten mailboxes on
ten threads at once, and ten cold threads must not make ten KMS calls for one key. The root key has a lock of
its own (`_ROOT_LOADER`), tenant keys share striped ones (`_one_loader`); a thread holding a tenant key's stripe
may take the root lock (opening the tenant key needs the root key), never the reverse, so they cannot deadlock.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import threading
import zlib
from datetime import timedelta

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pynamodb.exceptions import DoesNotExist, PutError, UpdateError

from chalicelib import aws
from chalicelib.config import get_settings
from chalicelib.models.tenant import RootKey, Tenant
from chalicelib.timeutil import now_iso, parse_iso, utcnow
from chalicelib.ttlcache import TtlCache

MAX_KEY_AGE_DAYS = 90
CACHE_SIZE = 1024
ROOT_KEY_ID = "root-1"
ROOT_CONTEXT = {"purpose": "mailbridge-root-key"}


class TenantKeyUnavailable(Exception):
    """The tenant does not exist (any more) or does not hold the key a blob names."""


def _ttl() -> float:
    return get_settings().data_key_cache_seconds


_plain: TtlCache[tuple[str, str], bytes] = TtlCache(_ttl, CACHE_SIZE)       # (tenant, key id) → key
_current: TtlCache[str, str] = TtlCache(_ttl, CACHE_SIZE)                   # tenant → its current key id
_ROOT = ""                                                                  # the root key's tenant slot in _plain
_ROOT_LOADER = threading.Lock()
_LOADER_STRIPES = [threading.Lock() for _ in range(64)]


@contextlib.contextmanager
def _one_loader(tenant_id: str, key_id: str):
    """Held while a tenant key is loaded, so concurrent threads wanting it wait for the first one's result."""
    with _LOADER_STRIPES[zlib.crc32(f"{tenant_id}\0{key_id}".encode()) % len(_LOADER_STRIPES)]:
        yield


def clear_cache() -> None:
    _plain.clear()
    _current.clear()


# ---- the root key --------------------------------------------------------------------------------------------

def root_key() -> bytes:
    """The root key's plaintext: cached, else read and unwrapped by KMS (made first if there is none)."""
    cached = _plain.get((_ROOT, ROOT_KEY_ID))
    if cached is not None:
        return cached
    with _ROOT_LOADER:
        cached = _plain.get((_ROOT, ROOT_KEY_ID))
        return cached if cached is not None else _load_root_key()


def _load_root_key() -> bytes:
    try:
        stored = RootKey.get(ROOT_KEY_ID, consistent_read=True)
    except DoesNotExist:
        return _new_root_key()
    plaintext = aws.kms().decrypt(CiphertextBlob=base64.b64decode(stored.wrapped),
                                  EncryptionContext=ROOT_CONTEXT)["Plaintext"]
    _plain.put((_ROOT, ROOT_KEY_ID), plaintext)
    return plaintext


def _new_root_key() -> bytes:
    made = aws.kms().generate_data_key(KeyId=get_settings().kms_key_id, KeySpec="AES_256",
                                       EncryptionContext=ROOT_CONTEXT)
    try:
        RootKey(ROOT_KEY_ID, wrapped=base64.b64encode(made["CiphertextBlob"]).decode("ascii"),
                created_at=now_iso()).save(condition=RootKey.key_id.does_not_exist())
    except PutError as exc:
        if getattr(exc, "cause_response_code", None) != "ConditionalCheckFailedException":
            raise
        return _load_root_key()           # another process made it first: use theirs
    _plain.put((_ROOT, ROOT_KEY_ID), made["Plaintext"])
    return made["Plaintext"]


# ---- tenant keys ---------------------------------------------------------------------------------------------

def _aad(tenant_id: str, key_id: str) -> bytes:
    return json.dumps({"tenant_id": tenant_id, "key_id": key_id, "purpose": "tenant-secrets-key"},
                      sort_keys=True).encode()


def _seal(tenant_id: str, key_id: str, plaintext: bytes) -> dict:
    nonce = os.urandom(12)
    sealed = AESGCM(root_key()).encrypt(nonce, plaintext, _aad(tenant_id, key_id))
    return {"sealed": base64.b64encode(nonce + sealed).decode("ascii"), "root": ROOT_KEY_ID, "created_at": now_iso()}


def _open(tenant_id: str, key_id: str, entry: dict) -> bytes:
    if entry.get("root") != ROOT_KEY_ID:
        raise TenantKeyUnavailable(f"tenant {tenant_id} key {key_id} names an unknown root key")
    raw = base64.b64decode(entry["sealed"])
    plaintext = AESGCM(root_key()).decrypt(raw[:12], raw[12:], _aad(tenant_id, key_id))
    _plain.put((tenant_id, key_id), plaintext)
    return plaintext


def _read_tenant(tenant_id: str) -> Tenant:
    try:
        return Tenant.get(tenant_id, consistent_read=True,
                          attributes_to_get=["tenant_id", "secrets_keys", "secrets_key_id"])
    except DoesNotExist:
        raise TenantKeyUnavailable(f"tenant {tenant_id} does not exist") from None


def key_by_id(tenant_id: str, key_id: str) -> bytes:
    """The plaintext of the tenant's key `key_id` (a blob names it): cached, else read and opened."""
    cached = _plain.get((tenant_id, key_id))
    if cached is not None:
        return cached
    with _one_loader(tenant_id, key_id):
        cached = _plain.get((tenant_id, key_id))
        if cached is not None:
            return cached
        entry = (_read_tenant(tenant_id).secrets_keys or {}).get(key_id)
        if not entry:
            raise TenantKeyUnavailable(f"tenant {tenant_id} holds no key {key_id}")
        return _open(tenant_id, key_id, entry)


def _fresh(entry: dict) -> bool:
    return utcnow() - parse_iso(entry["created_at"]) < timedelta(days=MAX_KEY_AGE_DAYS)


def current_key(tenant_id: str) -> tuple[str, bytes]:
    """(key id, plaintext) to seal the tenant's new blobs with — the current key while it is younger than
    `MAX_KEY_AGE_DAYS`, else a new one (made here)."""
    key_id = _current.get(tenant_id)
    if key_id is not None:
        plaintext = _plain.get((tenant_id, key_id))
        if plaintext is not None:
            return key_id, plaintext
    tenant = _read_tenant(tenant_id)
    keys = tenant.secrets_keys or {}
    current = tenant.secrets_key_id
    if current and current in keys and _fresh(keys[current]):
        _current.put(tenant_id, current)
        plaintext = _plain.get((tenant_id, current))
        return current, plaintext if plaintext is not None else _open(tenant_id, current, keys[current])
    return _new_key(tenant_id, keys, current)


def _new_key(tenant_id: str, keys: dict, replacing: str | None) -> tuple[str, bytes]:
    key_id, plaintext = secrets.token_hex(6), os.urandom(32)
    stored = {**keys, key_id: _seal(tenant_id, key_id, plaintext)}
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
        _current.put(tenant_id, winner.secrets_key_id)
        return winner.secrets_key_id, key_by_id(tenant_id, winner.secrets_key_id)
    _plain.put((tenant_id, key_id), plaintext)
    _current.put(tenant_id, key_id)
    return key_id, plaintext
