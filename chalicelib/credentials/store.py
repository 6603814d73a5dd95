"""The one credential store: a mailbox's secrets (IMAP/SMTP passwords, a Google refresh token, an MSAL
serialized token cache, a Graph subscription `clientState`), sealed with KMS (`security.crypto`, encryption
context = tenant + mailbox) in `Mailbox.secret_ciphertext`, with a version number in `secret_version`.

Every write is ONE conditional update on the version it read (optimistic concurrency), never on the sync lease:
the API's connection test and the worker may both refresh a token.

    t0 worker A loads v3; t1 API test loads v3
    t2 A refreshes, Microsoft rotates the refresh token → save(v3 → v4) succeeds
    t3 the API refreshes with the same old token and saves(v3 → v4) → CredentialConflict
    t4 the API reloads v4 and uses A's rotated credentials (never overwriting them with stale ones)

A mailbox that never had a version (created before versioning) counts as version 0.

Blobs sealed in the legacy format (`security.crypto` `v1`: a KMS data key per blob, one `kms:Decrypt` each
time a cold process opens them) are resealed in the current one by `upgrade`, which `providers.kinds.
build_provider` calls whenever it opens a mailbox's credentials: the same conditional write on the version
read, `updated_at` untouched (the secrets did not change); a conflict or a failure leaves the legacy blob, which
still opens, for the next time.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pynamodb.exceptions import DoesNotExist, PynamoDBException, UpdateError

from chalicelib.logs import logger
from chalicelib.models.mailbox import Mailbox
from chalicelib.security.crypto import (SecretDecryptionError, SecretEncryptionError, decrypt_secrets,
                                        encrypt_secrets, is_legacy)
from chalicelib.timeutil import now_iso


class CredentialConflict(Exception):
    """Someone else wrote the credentials since they were loaded: reload and use theirs."""


class CredentialsUnreadable(Exception):
    """The stored blob cannot be decrypted here (corrupt, or sealed for another tenant/mailbox)."""


@dataclass(frozen=True)
class Credentials:
    secrets: dict[str, str] = field(repr=False)
    version: int


class CredentialStore:
    """Load and save one mailbox's secrets."""

    def __init__(self, tenant_id: str, mailbox_id: str):
        self.tenant_id, self.mailbox_id = tenant_id, mailbox_id

    def decode(self, mailbox: Mailbox) -> Credentials:
        """The credentials of an already loaded mailbox item."""
        try:
            secrets = decrypt_secrets(self.tenant_id, self.mailbox_id, mailbox.secret_ciphertext)
        except SecretDecryptionError as exc:
            raise CredentialsUnreadable(str(exc)) from None
        return Credentials(secrets, int(mailbox.secret_version or 0))

    def load(self) -> Credentials:
        try:
            item = Mailbox.get(self.tenant_id, self.mailbox_id, consistent_read=True,
                               attributes_to_get=["tenant_id", "mailbox_id", "secret_ciphertext",
                                                  "secret_version"])
        except DoesNotExist:
            raise CredentialsUnreadable("mailbox deleted") from None
        return self.decode(item)

    def save(self, secrets: dict[str, str], expected_version: int, *, touch: bool = True) -> Credentials:
        """Seal and store `secrets` if the stored version is still `expected_version` (`touch`: and mark the
        mailbox updated)."""
        blob = encrypt_secrets(self.tenant_id, self.mailbox_id, secrets)
        version = expected_version + 1
        current = Mailbox.secret_version == expected_version
        if expected_version == 0:
            current = current | Mailbox.secret_version.does_not_exist()
        actions = [Mailbox.secret_ciphertext.set(blob), Mailbox.secret_version.set(version)]
        if touch:
            actions.append(Mailbox.updated_at.set(now_iso()))
        try:
            Mailbox(self.tenant_id, self.mailbox_id).update(actions=actions,
                                                            condition=Mailbox.mailbox_id.exists() & current)
        except UpdateError as exc:
            if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
                raise CredentialConflict(self.mailbox_id) from None
            raise
        return Credentials(dict(secrets), version)

    def upgrade(self, mailbox: Mailbox, credentials: Credentials) -> Credentials:
        """`credentials` (opened from `mailbox`), resealed in the current format first when their blob is a
        legacy one; on a conflict or a failure the legacy blob stays (it still opens) and `credentials` is
        returned as it is."""
        if not is_legacy(mailbox.secret_ciphertext):
            return credentials
        try:
            return self.save(credentials.secrets, credentials.version, touch=False)
        except (CredentialConflict, SecretEncryptionError, PynamoDBException) as exc:
            logger.info("legacy credentials kept", extra={"reason": type(exc).__name__})
            return credentials
