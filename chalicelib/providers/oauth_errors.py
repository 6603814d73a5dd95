"""The OAuth 2.0 token-endpoint failures every OAuth provider shares, as `ProviderError`s.

RFC 6749 §5.2: `invalid_grant` (refresh token expired, revoked, or issued to another client) and
`unauthorized_client`/`invalid_client` (the app was deleted or its secret changed) cannot be fixed by
retrying → AUTH_REVOKED (the user consents again; Google also answers `invalid_grant` for a revoked grant,
Microsoft `invalid_grant` with AADSTS codes). Microsoft identity platform: `consent_required`/`interaction_required`
with AADSTS65001 means the organisation requires an administrator's approval → NEEDS_ADMIN_CONSENT
(learn.microsoft.com "Microsoft identity platform error codes"). 429 → THROTTLED; 5xx and network errors →
TEMPORARY. Descriptions are kept short; tokens never appear in them (the endpoint never echoes them).
"""
from __future__ import annotations

from typing import Any

from chalicelib.providers.base import ErrorCode, ProviderError

REVOKED_ERRORS = frozenset({"invalid_grant", "unauthorized_client", "invalid_client", "access_denied"})
CONSENT_ERRORS = frozenset({"consent_required", "interaction_required"})
ADMIN_CONSENT_CODES = ("AADSTS65001", "AADSTS90094", "AADSTS90008")


def token_error(status: int | None, body: dict[str, Any], exc: Exception | None, *,
                provider: str = "oauth", retry_after: float | None = None) -> ProviderError:
    if exc is not None or status is None:
        return ProviderError(ErrorCode.TEMPORARY, f"{provider} token endpoint unreachable "
                                                  f"({type(exc).__name__ if exc else 'no answer'})")
    error = str(body.get("error") or "")
    description = str(body.get("error_description") or "")[:200]
    codes = {str(code) for code in body.get("error_codes") or []}
    if any(code in description or code[6:] in codes for code in ADMIN_CONSENT_CODES):
        return ProviderError(ErrorCode.NEEDS_ADMIN_CONSENT, f"{provider}: an administrator must approve the app")
    if error in CONSENT_ERRORS:
        return ProviderError(ErrorCode.AUTH_REVOKED, f"{provider}: consent required ({error})")
    if error in REVOKED_ERRORS:
        return ProviderError(ErrorCode.AUTH_REVOKED, f"{provider}: {error}: {description}".rstrip(": "))
    if status == 429:
        return ProviderError(ErrorCode.THROTTLED, f"{provider} token endpoint throttled", retry_after=retry_after)
    if status >= 500:
        return ProviderError(ErrorCode.TEMPORARY, f"{provider} token endpoint answered {status}",
                             retry_after=retry_after)
    return ProviderError(ErrorCode.PERMANENT, f"{provider} token endpoint refused the refresh "
                                              f"({status} {error or 'no error code'})")
