"""Opaque, signed pagination cursors.

A cursor is base64url(JSON{"t": tenant, "s": scope, "k": DynamoDB LastEvaluatedKey}) + "." + HMAC-SHA256
over it with the service signing key. A cursor altered by the client, or minted for another tenant or
another listing, is rejected (400, naming `query.cursor` in `errors`) — and queries are anyway keyed by the
caller's tenant.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from chalicelib.api.errors import BadRequest
from chalicelib.config import get_settings


def _invalid() -> BadRequest:
    return BadRequest("Invalid pagination cursor.", errors=[{
        "field": "query.cursor",
        "message": "invalid pagination cursor: start again without it, or pass next_cursor of this same listing "
                   "unchanged"}])


def _key() -> bytes:
    key = get_settings().signing_key
    if not key:
        raise RuntimeError("MAILBRIDGE_SIGNING_KEY is not configured")
    return key.encode("utf-8")


def _sign(payload: bytes) -> str:
    return base64.urlsafe_b64encode(hmac.new(_key(), payload, hashlib.sha256).digest()).decode().rstrip("=")


def encode_cursor(tenant_id: str | None, scope: str, last_key: dict[str, Any] | None) -> str | None:
    if not last_key:
        return None
    payload = json.dumps({"t": tenant_id, "s": scope, "k": last_key}, separators=(",", ":"), sort_keys=True)
    body = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
    return f"{body}.{_sign(body.encode())}"


def decode_cursor(cursor: str | None, tenant_id: str | None, scope: str) -> dict[str, Any] | None:
    if not cursor:
        return None
    body, _, signature = cursor.partition(".")
    # compare bytes: hmac.compare_digest raises TypeError on str with non-ASCII characters (client input)
    if not body or not signature or not hmac.compare_digest(_sign(body.encode()).encode(), signature.encode()):
        raise _invalid()
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except ValueError:
        raise _invalid() from None
    if data.get("t") != tenant_id or data.get("s") != scope or not isinstance(data.get("k"), dict):
        raise _invalid()
    return data["k"]
