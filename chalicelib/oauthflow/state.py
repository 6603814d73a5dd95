"""The OAuth `state` parameter: `<state id>.<HMAC-SHA256(signing key, state id)>`.

The id is 256 random bits naming a `ConsentState` item that binds the consent to tenant + mailbox + kind and
holds the flow's pending data sealed with KMS (encryption context = tenant + mailbox). The signature rejects a
forged state before any lookup; the item expires after 10 minutes (checked here, and removed by TTL); it is
used once: consuming deletes it with a condition, so a replayed or concurrently used state fails.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from pynamodb.exceptions import DeleteError, DoesNotExist

from chalicelib.config import get_settings
from chalicelib.models.consent import ConsentState
from chalicelib.security.crypto import SecretDecryptionError, decrypt_secrets, encrypt_secrets
from chalicelib.timeutil import now_iso

STATE_TTL_SECONDS = 600


class InvalidState(Exception):
    """Forged, replayed, expired or unknown state."""


@dataclass(frozen=True)
class PendingConsent:
    tenant_id: str
    mailbox_id: str
    kind: str
    return_url: str | None
    pending: dict[str, Any] = field(repr=False)


def _signature(state_id: str) -> str:
    key = get_settings().signing_key
    if not key:
        raise RuntimeError("MAILBRIDGE_SIGNING_KEY is not configured")
    digest = hmac.new(key.encode(), b"oauth-state:" + state_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def new_state() -> tuple[str, str]:
    """(state id, the signed `state` parameter to put in the authorize URL)."""
    state_id = secrets.token_urlsafe(32)
    return state_id, f"{state_id}.{_signature(state_id)}"


def save(state_id: str, tenant_id: str, mailbox_id: str, kind: str, pending: dict[str, Any],
         return_url: str | None, *, now: float | None = None) -> None:
    ConsentState(state_id, tenant_id=tenant_id, mailbox_id=mailbox_id, kind=kind,
                 sealed=encrypt_secrets(tenant_id, mailbox_id, {k: str(v) for k, v in pending.items()}),
                 return_url=return_url, expires_at=int((now or time.time()) + STATE_TTL_SECONDS),
                 created_at=now_iso()).save(condition=ConsentState.state_id.does_not_exist())


def consume(state: str | None, *, now: float | None = None) -> PendingConsent:
    """The pending consent named by `state`, deleted so it cannot be used again; InvalidState otherwise."""
    state_id, _, signature = (state or "").partition(".")
    if not state_id or len(state_id) > 100 or not hmac.compare_digest(signature.encode(),
                                                                      _signature(state_id).encode()):
        raise InvalidState("state signature does not match")
    try:
        item = ConsentState.get(state_id, consistent_read=True)
        item.delete(condition=ConsentState.state_id.exists())
    except (DoesNotExist, DeleteError):
        raise InvalidState("state unknown or already used") from None
    if item.expires_at < (now or time.time()):
        raise InvalidState("state expired")
    try:
        pending = decrypt_secrets(item.tenant_id, item.mailbox_id, item.sealed)
    except SecretDecryptionError:
        raise InvalidState("state data unreadable") from None
    return PendingConsent(item.tenant_id, item.mailbox_id, item.kind, item.return_url, pending)
