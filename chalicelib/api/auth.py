"""Authentication of API calls: tenant keys, the operator key, X-User-Id, client address allowlists.

Order of checks (each failure a problem+json): missing/malformed/unknown key → 401; inactive key → 403
`key-inactive`; client address outside the key's allowlist → 403 `address-not-allowed`; suspended tenant →
403; a `require_user` key without `X-User-Id` → 403. Nothing in an error reveals another tenant's data.
`Authorization` and `X-User-Id` are single-valued (RFC 9110 §5.3: a field that is not a list must not be sent
twice): API Gateway passes only a repeated header's last line in `headers` and every line in
`multiValueHeaders`, so two lines of either are refused (401 / 400) rather than one picked by their order.
A verified key and its tenant's state are kept for a few seconds (`auth_cache.py`), so a warm API process
authenticates without reading them again.
"""
from __future__ import annotations

import re
from datetime import timedelta

from pynamodb.exceptions import DoesNotExist, UpdateError

from chalicelib.api import auth_cache
from chalicelib.api.context import Principal
from chalicelib.api.errors import AddressNotAllowed, BadRequest, Forbidden, KeyInactive, Unauthorized
from chalicelib.config import get_settings
from chalicelib.models.tenant import ApiKey
from chalicelib.security import apikeys
from chalicelib.tenancy.service import get_tenant
from chalicelib.timeutil import isoformat, parse_iso, utcnow

USER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"  # also published in the OpenAPI document
_USER_ID_RE = re.compile(USER_ID_PATTERN)
LAST_USED_RESOLUTION = timedelta(minutes=1)


def source_ip(request) -> str | None:
    """API Gateway's view of the client address; `X-Forwarded-For` is deliberately ignored."""
    return ((request.context or {}).get("identity") or {}).get("sourceIp")


def _lines(request, name: str) -> int:
    """How many lines of header `name` the client sent (API Gateway's `multiValueHeaders`; a local event without
    them counts `headers`)."""
    multi = (request.to_original_event() or {}).get("multiValueHeaders") or {}
    if not multi:
        return 1 if name in request.headers else 0
    return sum(len(values or []) for key, values in multi.items() if key.lower() == name)


def bearer_token(request) -> str:
    if _lines(request, "authorization") > 1:
        raise Unauthorized("Send exactly one Authorization header.")
    header = request.headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>'.")
    return token.strip()


def authenticate_operator(request) -> Principal:
    token = bearer_token(request)
    expected = get_settings().operator_key_sha256
    if not expected or not apikeys.is_operator_key_format(token) or not apikeys.digest_matches(token, expected):
        raise Unauthorized("Invalid operator key.")
    return Principal(tenant_id=None, is_operator=True)


def authenticate_tenant(request) -> Principal:
    token = bearer_token(request)
    key_id = apikeys.parse_key_id(token)
    if key_id is None:
        raise Unauthorized("Malformed API key.")
    verified = _verified_key(token, key_id)
    record = verified.record
    if record.status != "active":
        raise KeyInactive("This API key is inactive.")
    if not apikeys.address_allowed(source_ip(request), list(record.allowed_ips or [])):
        raise AddressNotAllowed("This API key may not be used from this client address.")
    if not verified.tenant_active:
        raise Forbidden("This tenant is suspended; contact the operator.")
    user_id = _user_id(request)
    if record.require_user and user_id is None:
        raise Forbidden("This API key requires the X-User-Id header.")
    _touch_last_used(record)
    return Principal(tenant_id=record.tenant_id, key_id=record.key_id, user_id=user_id)


def _verified_key(token: str, key_id: str) -> auth_cache.VerifiedKey:
    """The key's record and its tenant's state: from `auth_cache` while fresh, else read (2 GetItems)."""
    digest = apikeys.sha256_hex(token)
    cached = auth_cache.lookup(digest)
    if cached is not None:
        return cached
    try:
        record = ApiKey.get(key_id)
    except DoesNotExist:
        record = None
    if record is None or not apikeys.digest_matches(token, record.key_sha256):
        raise Unauthorized("Unknown API key.")
    tenant = get_tenant(record.tenant_id)
    verified = auth_cache.VerifiedKey(record, tenant_active=tenant is not None and tenant.status == "active")
    auth_cache.remember(digest, verified)
    return verified


def is_user_id(value: str) -> bool:
    """Whether `value` can name a CRM user (what an `X-User-Id` header may carry). `fullmatch`: the pattern's `$`
    alone would also match before a final "\n" (Python `re`), and a user id ending in a line break names a user
    no header can carry."""
    return bool(_USER_ID_RE.fullmatch(value))


def _user_id(request) -> str | None:
    value = request.headers.get("x-user-id")
    if value is None:
        return None
    if _lines(request, "x-user-id") > 1:
        raise BadRequest("Send X-User-Id once: a call acts for one user.", errors=[
            {"field": "X-User-Id", "message": "sent more than once"}])
    value = value.strip()
    if not is_user_id(value):
        raise BadRequest("X-User-Id must be 1-128 characters of letters, digits and ._:@-", errors=[
            {"field": "X-User-Id", "message": "must be 1-128 characters of letters, digits and ._:@-"}])
    return value


def _touch_last_used(record: ApiKey) -> None:
    """Record last use at one-minute resolution, so a busy key does not cost a write per call."""
    now = utcnow()
    if record.last_used_at and now - parse_iso(record.last_used_at) < LAST_USED_RESOLUTION:
        return
    try:
        record.update(actions=[ApiKey.last_used_at.set(isoformat(now))], condition=ApiKey.key_id.exists())
    except UpdateError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
        auth_cache.forget_all()   # revoked by another process while cached: never recreate the item
        raise Unauthorized("Unknown API key.") from None

