"""An OAuth application's client secret (a mail server's sealed `{"client_secret": ...}`), decrypted only when a
token request needs it.

The client secret authenticates the app at the token endpoint (RFC 6749 §2.3.1) and nowhere else: while a
mailbox's access token is valid (Google's and Microsoft's live an hour), a sync never sends it, so the token
sources take an `AppSecret` and call it at most once, on their first refresh: a sync that needs no refresh never
holds the secret in the clear. Opening it costs no KMS call when it is sealed under the tenant's key
(`security.tenant_keys`, which opening the mailbox's credentials has already unwrapped in this process); a
legacy `v1` blob (`security.crypto`) costs one `kms:Decrypt`. Whether the server HAS a secret is still checked
when the provider is built (no decryption).
"""
from __future__ import annotations

import threading

from chalicelib.models.mailbox import MailServer
from chalicelib.providers.base import ErrorCode, ProviderError
from chalicelib.security.crypto import SecretDecryptionError, decrypt_secrets


class AppSecret:
    """`secret()` → the server's client secret, decrypted on the first call and kept by this object only (one
    provider's lifetime); PERMANENT `ProviderError` with `unusable` when it is missing or cannot be decrypted."""

    def __init__(self, server: MailServer, unusable: str):
        if not server.secret_ciphertext:
            raise ProviderError(ErrorCode.PERMANENT, unusable)
        self._server, self._unusable = server, unusable
        self._value: str | None = None
        self._lock = threading.Lock()
        self.decryptions = 0

    def __call__(self) -> str:
        with self._lock:
            if self._value is None:
                self.decryptions += 1
                try:
                    value = decrypt_secrets(self._server.tenant_id, self._server.server_id,
                                            self._server.secret_ciphertext).get("client_secret")
                except SecretDecryptionError:
                    value = None
                if not value:
                    raise ProviderError(ErrorCode.PERMANENT, self._unusable)
                self._value = value
            return self._value

    def __repr__(self) -> str:      # never print the secret
        return f"AppSecret(server_id={self._server.server_id!r})"
