"""Envelope encryption of secrets with KMS (refresh tokens, MSAL caches, IMAP/SMTP passwords, client secrets).

Every secret is sealed with AES-256-GCM under a key KMS protects, with the tenant and the owner (mailbox, mail
server, ...) as associated data — a blob copied between items or tenants fails authentication. Two formats
(text, stored in DynamoDB):

- `v2.<tenant key id>.<b64 nonce>.<b64 ciphertext+tag>` — what `encrypt_secrets` writes: sealed under the tenant's
  secrets key (`security.tenant_keys`: a key per tenant, wrapped under the deployment's root key, which KMS wraps;
  both kept in the process for `data_key_cache_seconds`), so opening the secrets of any number of mailboxes costs
  one `kms:Decrypt` per process and cache period instead of one per mailbox and tick. The sealed plaintext is the
  secrets' compact JSON object, or its zlib stream (RFC 1950) when that is shorter — an MSAL token cache,
  rewritten on the mailbox item at every hourly refresh, shrinks by half; the first byte tells them apart (`{` vs
  a zlib header). Nothing an outsider chooses is compressed beside a secret, and only the blob's length could
  show, so compression leaks nothing a reader of the stored item could use.
- `v1.<b64 encrypted data key>.<b64 nonce>.<b64 ciphertext+tag>` — written until 2026-12-02: a data key of its
  own per blob, whose KMS encryption context names the tenant and the owner. Still opened (`kms:Decrypt` of its
  key, cached per tenant + owner + key as below); `is_legacy` tells the callers that reseal such blobs
  (`credentials.store.CredentialStore.upgrade`).

Plaintext never leaves these functions except to the caller, and is never logged.

Data-key cache (v1): a decrypted data key is kept in the process for `data_key_cache_seconds` (default 300;
0 disables), at most `DATA_KEY_CACHE_SIZE` keys, keyed by (tenant, owner, SHA-256 of the encrypted data key). A
hit is only ever served for the same tenant AND owner the key was decrypted for — another tenant's or
mailbox's blob never matches, even with a copied data key — and the AES-GCM associated data (the same tenant +
owner context) is still checked on every decryption, so a blob moved to another item fails without KMS being
asked (the AWS Encryption SDK's data-key caching makes the same trade: bounded age, bounded entries).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import zlib

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chalicelib import aws
from chalicelib.config import get_settings
from chalicelib.security import tenant_keys
from chalicelib.ttlcache import TtlCache


class SecretDecryptionError(Exception):
    """The blob is corrupt or belongs to another tenant/owner."""


class SecretEncryptionError(Exception):
    """The tenant's secrets key cannot be had (the tenant item is gone)."""


def _context(tenant_id: str, owner_id: str) -> dict[str, str]:
    return {"tenant_id": tenant_id, "owner_id": owner_id}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _aad(tenant_id: str, owner_id: str) -> bytes:
    return json.dumps(_context(tenant_id, owner_id), sort_keys=True).encode()


def encrypt_secrets(tenant_id: str, owner_id: str, secrets: dict[str, str]) -> str:
    """A `v2` blob of `secrets` for this tenant + owner; raises `SecretEncryptionError` when the tenant has no
    item to hold its key (deleted)."""
    try:
        key_id, key = tenant_keys.current_key(tenant_id)
    except tenant_keys.TenantKeyUnavailable as exc:
        raise SecretEncryptionError(str(exc)) from None
    nonce = os.urandom(12)      # 96-bit random nonce (NIST SP 800-38D §8.2.2)
    sealed = AESGCM(key).encrypt(nonce, _pack(secrets), _aad(tenant_id, owner_id))
    return ".".join(["v2", key_id, _b64(nonce), _b64(sealed)])


MAX_SECRETS_BYTES = 1 << 20     # what a sealed plaintext may inflate to (MSAL caches are a few KB)


def _pack(secrets: dict[str, str]) -> bytes:
    plain = json.dumps(secrets, separators=(",", ":")).encode()
    packed = zlib.compress(plain, 9)
    return packed if len(packed) < len(plain) else plain


def _unpack(plain: bytes) -> dict[str, str]:
    if plain[:1] != b"{":
        inflater = zlib.decompressobj()
        plain = inflater.decompress(plain, MAX_SECRETS_BYTES)
        if inflater.unconsumed_tail or not inflater.eof:
            raise ValueError("sealed secrets too large or truncated")
    return json.loads(plain)


def is_legacy(blob: str | None) -> bool:
    """True for a `v1` blob (a data key of its own), which `encrypt_secrets` would now seal as `v2`."""
    return bool(blob) and blob.startswith("v1.")


DATA_KEY_CACHE_SIZE = 1024
_keys: TtlCache[tuple[str, str, str], bytes] = TtlCache(lambda: get_settings().data_key_cache_seconds,
                                                         DATA_KEY_CACHE_SIZE)


def clear_data_key_cache() -> None:
    """Forget every decrypted key of this process (v1 data keys and tenant keys): what a cold process has."""
    _keys.clear()
    tenant_keys.clear_cache()


def _data_key(tenant_id: str, owner_id: str, wrapped: bytes) -> bytes:
    """The plaintext data key of `wrapped` for this tenant + owner: from the cache while fresh, else KMS."""
    cache_key = (tenant_id, owner_id, hashlib.sha256(wrapped).hexdigest())
    cached = _keys.get(cache_key)
    if cached is not None:
        return cached
    plaintext = aws.kms().decrypt(CiphertextBlob=wrapped, EncryptionContext=_context(tenant_id, owner_id))[
        "Plaintext"]
    _keys.put(cache_key, plaintext)
    return plaintext


def decrypt_secrets(tenant_id: str, owner_id: str, blob: str | None) -> dict[str, str]:
    if not blob:
        return {}
    try:
        version, key_ref, nonce, sealed = blob.split(".")
        if version == "v2":
            plaintext_key = tenant_keys.key_by_id(tenant_id, key_ref)
        elif version == "v1":
            plaintext_key = _data_key(tenant_id, owner_id, base64.b64decode(key_ref))
        else:
            raise ValueError(version)
        return _unpack(AESGCM(plaintext_key).decrypt(base64.b64decode(nonce), base64.b64decode(sealed),
                                                     _aad(tenant_id, owner_id)))
    except Exception as exc:  # noqa: BLE001 - any failure means the blob is unusable here
        raise SecretDecryptionError(f"cannot decrypt secrets ({type(exc).__name__})") from None
