"""Envelope encryption of secrets with KMS (refresh tokens, MSAL caches, IMAP/SMTP passwords, client secrets).

Each blob gets a fresh 256-bit data key from `kms:GenerateDataKey` whose encryption context names the tenant
and the owner (mailbox or mail server); the JSON secret is sealed with AES-256-GCM under that key, with the
same context as associated data. Decrypting with another tenant's or mailbox's context fails at KMS — a blob
copied between items is useless. Blob format (text, stored in DynamoDB):
`v1.<b64 encrypted data key>.<b64 nonce>.<b64 ciphertext+tag>`. Plaintext never leaves these functions
except to the caller, and is never logged.
"""
from __future__ import annotations

import base64
import json
import os

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


def decrypt_secrets(tenant_id: str, owner_id: str, blob: str | None) -> dict[str, str]:
    if not blob:
        return {}
    try:
        version, wrapped, nonce, sealed = blob.split(".")
        if version != "v1":
            raise ValueError(version)
        context = _context(tenant_id, owner_id)
        plaintext_key = aws.kms().decrypt(CiphertextBlob=base64.b64decode(wrapped),
                                          EncryptionContext=context)["Plaintext"]
        aad = json.dumps(context, sort_keys=True).encode()
        return json.loads(AESGCM(plaintext_key).decrypt(base64.b64decode(nonce), base64.b64decode(sealed), aad))
    except Exception as exc:  # noqa: BLE001 - any failure means the blob is unusable here
        raise SecretDecryptionError(f"cannot decrypt secrets ({type(exc).__name__})") from None
