"""The ONE translator of Gmail API / transport failures into `ProviderError`.

Sources: Gmail API "Resolve errors" (developers.google.com/gmail/api/guides/handle-errors) and "Usage limits"
(developers.google.com/gmail/api/reference/quota), "Synchronize clients" (…/guides/sync):

| answer | where | ErrorCode |
|---|---|---|
| 404 | `history.list` | CURSOR_INVALID — the startHistoryId is older than the retained history: full resync |
| 404 | a message (`messages.get`, a batch part) | NOT_FOUND — the message vanished |
| 404 | anything else (`getProfile`, `watch`) | PERMANENT — the mailbox itself is gone |
| 429; 403 `rateLimitExceeded`/`userRateLimitExceeded` | any | THROTTLED with `retry_after` (Retry-After or backoff) |
| 403 `dailyLimitExceeded` | any | THROTTLED, retry in an hour |
| 403 other (`insufficientPermissions`, `forbidden`, domain policy) | any | AUTH_REVOKED — consent again |
| 401 (after one token refresh) | any | AUTH_REVOKED |
| 400 | any | PERMANENT |
| 5xx, transport errors, timeouts | any | TEMPORARY |

Token endpoint failures are translated by `providers.oauth_errors.token_error` (RFC 6749 §5.2).
"""
from __future__ import annotations

import json
import socket
from typing import Any

import httplib2
from googleapiclient.errors import HttpError

from chalicelib.providers.base import ErrorCode, ProviderError
from chalicelib.providers.oauth_errors import token_error

RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
DAILY_LIMIT_SECONDS = 3600.0
DEFAULT_THROTTLE_SECONDS = 30.0
MAX_RETRY_AFTER_SECONDS = 3600.0


def retry_after_seconds(headers: Any) -> float | None:
    """RFC 9110 §10.2.3 Retry-After as delay-seconds (the HTTP-date form is treated as absent)."""
    if headers is None:
        return None
    value = headers.get("retry-after") if hasattr(headers, "get") else None
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_SECONDS) if value is not None else None
    except (TypeError, ValueError):
        return None


def error_reason(content: bytes | str | None) -> tuple[str, str]:
    """(reason, message) of a Google JSON error body `{"error": {"errors": [{"reason"}], "message"}}`."""
    try:
        body = json.loads(content or b"{}")
    except (TypeError, ValueError):
        return "", ""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return (str(error), "") if error else ("", "")
    reasons = [str(e.get("reason")) for e in error.get("errors") or [] if isinstance(e, dict) and e.get("reason")]
    return (reasons[0] if reasons else str(error.get("status") or "")), str(error.get("message") or "")[:200]


def translate_status(status: int, content: bytes | str | None, headers: Any = None, *,
                     resource: str = "call") -> ProviderError:
    """An HTTP answer of the Gmail API (`resource`: "history", "message" or anything else)."""
    reason, message = error_reason(content)
    retry_after = retry_after_seconds(headers)
    detail = f"gmail {resource} answered {status}" + (f" {reason}" if reason else "") + (
        f": {message}" if message else "")
    if status == 404:
        if resource == "history":
            return ProviderError(ErrorCode.CURSOR_INVALID, "gmail historyId expired: full resync needed")
        if resource == "message":
            return ProviderError(ErrorCode.NOT_FOUND, detail)
        return ProviderError(ErrorCode.PERMANENT, detail)
    if status == 429 or (status == 403 and reason in RATE_REASONS):
        return ProviderError(ErrorCode.THROTTLED, detail, retry_after=retry_after or DEFAULT_THROTTLE_SECONDS)
    if status == 403 and reason == "dailyLimitExceeded":
        return ProviderError(ErrorCode.THROTTLED, detail, retry_after=retry_after or DAILY_LIMIT_SECONDS)
    if status in (401, 403):
        return ProviderError(ErrorCode.AUTH_REVOKED, detail)
    if status >= 500 or status == 408:
        return ProviderError(ErrorCode.TEMPORARY, detail, retry_after=retry_after)
    return ProviderError(ErrorCode.PERMANENT, detail)


def translate(exc: BaseException, *, resource: str = "call") -> ProviderError:
    """Any exception raised while calling Gmail through googleapiclient/httplib2."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, HttpError):
        return translate_status(int(exc.resp.status), exc.content, exc.resp, resource=resource)
    if isinstance(exc, (httplib2.HttpLib2Error, socket.timeout, TimeoutError, ConnectionError, OSError)):
        return ProviderError(ErrorCode.TEMPORARY, f"gmail unreachable ({type(exc).__name__})")
    return ProviderError(ErrorCode.TEMPORARY, f"gmail call failed ({type(exc).__name__})")


def translate_token(status: int | None, body: dict[str, Any], exc: Exception | None) -> ProviderError:
    """The Google token endpoint (refresh) — RFC 6749 §5.2 via the shared table."""
    return token_error(status, body, exc, provider="google")
