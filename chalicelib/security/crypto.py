"""Envelope encryption of secrets with KMS (refresh tokens, MSAL caches, IMAP/SMTP passwords, client secrets).

Each blob gets a fresh 256-bit data key from `kms:GenerateDataKey` whose encryption context names the tenant
and the owner (mailbox or mail server); the JSON secret is sealed with AES-256-GCM under that key, with the
same context as associated data. Decrypting with another tenant's or mailbox's context fails at KMS — a blob
copied between items is useless. Blob format (text, stored in DynamoDB):
`v1.<b64 encrypted data key>.<b64 nonce>.<b64 ciphertext+tag>`. Plaintext never leaves these functions
except to the caller, and is never logged.

Data-key cache (an idle sync must not cost a KMS call each time): a decrypted data key is kept in the process
for `data_key_cache_seconds` (default 300; 0 disables), at most `DATA_KEY_CACHE_SIZE` keys, keyed by
(tenant, owner, SHA-256 of the encrypted data key). A hit is only ever served for the same tenant AND owner
the key was decrypted for — another tenant's or mailbox's blob never matches, even with a copied data key —
and the AES-GCM associated data (the same tenant + owner context) is still checked on every decryption, so
a blob moved to another item fails without KMS being asked (the AWS Encryption SDK's data-key caching makes
the same trade: bounded age, bounded entries).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from collections import OrderedDict

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chalicelib import aws
from chalicelib.config import get_settings


class SecretDecryptionError(Exception):
    """The blob is corrupt or belongs to another tenant/owner."""


def _context(tenant_id: str, owner_id: str) -> dict[str, str]:
    return {"tenant_id": tenant_id, "owner_id": owner_id}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encrypt_secrets(tenant_id: str, owner_id: str, secrets: dict[str, str]) -> str:
    context = _context(tenant_id, owner_id)
    data_key = aws.kms().generate_data_key(KeyId=get_settings().kms_key_id, KeySpec="AES_256",
                                           EncryptionContext=context)
    nonce = os.urandom(12)
    aad = json.dumps(context, sort_keys=True).encode()
    sealed = AESGCM(data_key["Plaintext"]).encrypt(nonce, json.dumps(secrets).encode(), aad)
    return ".".join(["v1", _b64(data_key["CiphertextBlob"]), _b64(nonce), _b64(sealed)])


DATA_KEY_CACHE_SIZE = 1024
_keys: OrderedDict[tuple[str, str, str], tuple[float, bytes]] = OrderedDict()
_keys_lock = threading.Lock()


def clear_data_key_cache() -> None:
    with _keys_lock:
        _keys.clear()


def _data_key(tenant_id: str, owner_id: str, wrapped: bytes) -> bytes:
    """The plaintext data key of `wrapped` for this tenant + owner: from the cache while fresh, else KMS."""
    ttl = get_settings().data_key_cache_seconds
    cache_key = (tenant_id, owner_id, hashlib.sha256(wrapped).hexdigest())
    now = time.monotonic()
    if ttl > 0:
        with _keys_lock:
            hit = _keys.get(cache_key)
            if hit is not None and hit[0] > now:
                _keys.move_to_end(cache_key)
                return hit[1]
            _keys.pop(cache_key, None)
    plaintext = aws.kms().decrypt(CiphertextBlob=wrapped, EncryptionContext=_context(tenant_id, owner_id))[
        "Plaintext"]
    if ttl > 0:
        with _keys_lock:
            _keys[cache_key] = (now + ttl, plaintext)
            while len(_keys) > DATA_KEY_CACHE_SIZE:
                _keys.popitem(last=False)
    return plaintext


def decrypt_secrets(tenant_id: str, owner_id: str, blob: str | None) -> dict[str, str]:
    if not blob:
        return {}
    try:
        version, wrapped, nonce, sealed = blob.split(".")
        if version != "v1":
            raise ValueError(version)
        context = _context(tenant_id, owner_id)
        plaintext_key = _data_key(tenant_id, owner_id, base64.b64decode(wrapped))
        aad = json.dumps(context, sort_keys=True).encode()
        return json.loads(AESGCM(plaintext_key).decrypt(base64.b64decode(nonce), base64.b64decode(sealed), aad))
    except Exception as exc:  # noqa: BLE001 - any failure means the blob is unusable here
        raise SecretDecryptionError(f"cannot decrypt secrets ({type(exc).__name__})") from None
