"""The ONE translator of Microsoft Graph / MSAL / network failures into `ProviderError`.

Graph (learn.microsoft.com "Microsoft Graph error responses and resource types", "Microsoft Graph throttling
guidance", "Use delta query"):

| answer | code |
|---|---|
| 410 Gone, or error code `syncStateNotFound` / `syncStateInvalid` / `resyncRequired` | CURSOR_INVALID |
| 429, 503 (with `Retry-After` seconds) | THROTTLED (retry_after) |
| 401 (after the client retried once with a fresh token) | AUTH_REVOKED |
| 403 `ErrorAccessDenied` / `Authorization_RequestDenied` (consent withdrawn, scope missing) | AUTH_REVOKED |
| 404 `MailboxNotEnabledForRESTAPI`, `MailboxNotSupportedForRESTAPI`, `ErrorMailboxNotEnabled`, … ¹ | PERMANENT |
| other 404 (`ErrorItemNotFound`, ...) | NOT_FOUND (this message/folder vanished) |
| other 5xx, network/TLS errors | TEMPORARY (`maybe_sent` unless the connection failed) |
| other 4xx | PERMANENT |

¹ … `ErrorInvalidUser` or an inactive mailbox: mailbox-wide, never "a folder vanished".

MSAL answers (a dict with `error`) go through the shared RFC 6749 table `providers.oauth_errors.token_error`:
`invalid_grant` → AUTH_REVOKED; AADSTS65001 / `consent_required` → NEEDS_ADMIN_CONSENT.
Details never carry tokens (Graph does not echo them; MSAL descriptions are cut to 200 characters).
"""
from __future__ import annotations

from typing import Any, Mapping

import requests
from urllib3.exceptions import NewConnectionError

from chalicelib.providers.base import ErrorCode, ProviderError
from chalicelib.providers.oauth_errors import token_error

CURSOR_CODES = frozenset({"syncstatenotfound", "syncstateinvalid", "resyncrequired"})
MAILBOX_CODES = frozenset({"mailboxnotenabledforrestapi", "mailboxnotsupportedforrestapi", "errormailboxnotenabled",
                           "errorinvaliduser", "errornonexistentmailbox"})
REVOKED_CODES = frozenset({"erroraccessdenied", "authorization_requestdenied"})
DEFAULT_RETRY_AFTER = 10.0


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """`Retry-After` as seconds (Graph sends delta-seconds; an HTTP date is not used by Graph)."""
    value = {k.lower(): v for k, v in (headers or {}).items()}.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _error_body(body: Any) -> tuple[str, str]:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    return str(error.get("code") or ""), str(error.get("message") or "")[:200]


def graph_error(status: int, body: Any, headers: Mapping[str, str] | None = None, *,
                what: str = "request") -> ProviderError:
    """Translate one Graph HTTP answer (status >= 400)."""
    code, message = _error_body(body)
    lowered = code.lower()
    detail = f"graph {what}: {status} {code or 'no error code'}"
    if status == 410 or lowered in CURSOR_CODES:
        return ProviderError(ErrorCode.CURSOR_INVALID, detail)
    if status in (429, 503):
        return ProviderError(ErrorCode.THROTTLED, detail,
                             retry_after=retry_after_seconds(headers) or DEFAULT_RETRY_AFTER)
    if status == 401 or (status == 403 and lowered in REVOKED_CODES):
        return ProviderError(ErrorCode.AUTH_REVOKED, detail)
    if status == 404 and (lowered in MAILBOX_CODES or "inactive" in message.lower()):
        return ProviderError(ErrorCode.PERMANENT, f"{detail}: the mailbox is not available through Graph "
                                                  f"(inactive, unlicensed or on-premises)")
    if status == 404:
        return ProviderError(ErrorCode.NOT_FOUND, detail)
    if status >= 500:       # the request arrived: for a send, Exchange may have taken the message (maybe_sent)
        return ProviderError(ErrorCode.TEMPORARY, detail, retry_after=retry_after_seconds(headers), maybe_sent=True)
    return ProviderError(ErrorCode.PERMANENT, f"{detail}: {message}".rstrip(": "))


def _never_arrived(exc: Exception) -> bool:
    """A connection that was never made (refused, unresolvable, connect timeout, TLS handshake): requests wraps
    urllib3's NewConnectionError in a ConnectionError. A ConnectionError around a ProtocolError is a connection
    lost while waiting for the answer — the request may have arrived."""
    if isinstance(exc, (requests.ConnectTimeout, requests.exceptions.SSLError)):
        return True
    cause = exc.args[0] if exc.args else None
    return isinstance(getattr(cause, "reason", cause), NewConnectionError)


def network_error(exc: Exception) -> ProviderError:
    """A transport failure. Only a connection never made proves the request never arrived; after a read
    timeout or a lost answer a send may have been taken (`maybe_sent`, which only the outbox reads)."""
    return ProviderError(ErrorCode.TEMPORARY, f"graph unreachable ({type(exc).__name__})",
                         maybe_sent=not _never_arrived(exc))


def msal_error(result: Mapping[str, Any] | None) -> ProviderError:
    """An MSAL result dict with `error` (or None: nothing usable in the cache) as a ProviderError."""
    if not result:
        return ProviderError(ErrorCode.AUTH_REVOKED, "microsoft: no token in the cache: the user must consent again")
    status = 400 if result.get("error") else None
    return token_error(status, dict(result), None, provider="microsoft")
