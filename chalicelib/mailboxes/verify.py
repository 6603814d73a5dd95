"""Live check of a mailbox's connection through its provider kind (`providers.kinds`): for IMAP, SSRF-vet both
hosts, then log in.

Outcomes (one per ProviderError code family, docs/architecture.md):
- `ok`          — the server accepted the login.
- `auth`        — AUTH_REVOKED: the server refused the credentials (field `password`).
- `unreachable` — the host is refused by the SSRF guard, does not resolve, or TEMPORARY (timeout, refused
                  connection, ...). All of these carry the ONE message `ssrf.GENERIC_MESSAGE` and the same
                  field, so callers cannot tell an internal address from a dead one.
- `permanent`   — PERMANENT/other codes, e.g. a TLS handshake or certificate failure: the provider's detail,
                  with any secret value removed.
The provider dials `ConnectionSettings.address` (the vetted IP) and verifies TLS against `host`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chalicelib.credentials.store import Credentials
from chalicelib.logs import logger
from chalicelib.models.mailbox import Mailbox
from chalicelib.providers.base import ErrorCode, ProviderError
from chalicelib.providers.kinds import UnreachableEndpoint, provider_for
from chalicelib.security.ssrf import GENERIC_MESSAGE

VERIFY_TIMEOUT_SECONDS = 10.0   # two servers must answer well inside API Gateway's 29 s limit
AUTH_MESSAGE = "the server refused the login"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    kind: str            # ok | auth | unreachable | permanent
    detail: str
    field: str | None = None


def _redact(text: str, secrets: dict[str, str]) -> str:
    for value in secrets.values():
        if value:
            text = text.replace(value, "[redacted]")
    return text


def _protocol_of(exc: ProviderError) -> str:
    return "smtp" if exc.detail.lower().lstrip().startswith("smtp") else "imap"


def from_provider_error(exc: ProviderError, secrets: dict[str, str]) -> Outcome:
    protocol = exc.protocol if isinstance(exc, UnreachableEndpoint) else _protocol_of(exc)
    if isinstance(exc, UnreachableEndpoint) or exc.code is ErrorCode.TEMPORARY:
        return Outcome(False, "unreachable", GENERIC_MESSAGE, f"{protocol}.host")
    if exc.code is ErrorCode.AUTH_REVOKED:
        field = "smtp_password" if protocol == "smtp" and secrets.get("smtp_password") else "password"
        return Outcome(False, "auth", f"{protocol.upper()}: {AUTH_MESSAGE}", field)
    return Outcome(False, "permanent", _redact(exc.detail, secrets)[:500], protocol)


def check_mailbox(mailbox: Mailbox, credentials: Credentials) -> Outcome:
    """Build the mailbox's provider through its kind entry and test it. Never raises for a server-side
    failure; the returned Outcome says what happened. `mailbox` may be an unsaved item (creation)."""
    logger.thread_safe_append_keys(mailbox_id=mailbox.mailbox_id, provider=mailbox.type)
    secrets = credentials.secrets
    try:
        with provider_for(mailbox, credentials, timeout=VERIFY_TIMEOUT_SECONDS) as provider:
            provider.test_connection()
    except ProviderError as exc:
        outcome = from_provider_error(exc, secrets)
        logger.info("mailbox verification failed", extra={"code": exc.code.value, "outcome": outcome.kind,
                                                          "detail": _redact(exc.detail, secrets)[:300]})
        return outcome
    except Exception as exc:  # noqa: BLE001 - a provider bug must not leak internals; logged for operators
        logger.exception("mailbox verification crashed", extra={"error": type(exc).__name__})
        return Outcome(False, "unreachable", GENERIC_MESSAGE, "imap.host")
    finally:
        # a warm Lambda must not carry them to the next call
        logger.thread_safe_remove_keys(["mailbox_id", "provider"])
    return Outcome(True, "ok", "Logged in successfully.")


def check_connection(*, tenant_id: str, mailbox_id: str, email: str, imap: dict[str, Any],
                     smtp: dict[str, Any] | None, secrets: dict[str, str]) -> Outcome:
    """An IMAP/SMTP login check for settings not stored yet (creation, reconnection)."""
    draft = Mailbox(tenant_id, mailbox_id, type="imap", email=email, imap=imap, smtp=smtp)
    return check_mailbox(draft, Credentials(dict(secrets), 0))
