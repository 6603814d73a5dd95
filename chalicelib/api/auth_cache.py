"""Verified tenant API keys, kept in the API process for a bounded time.

Without it every call reads the key and its tenant (two GetItems) before its own work. An API Gateway Lambda
authorizer makes the same trade: its result is cached for `authorizerResultTtlInSeconds`, 300 s by default
(https://docs.aws.amazon.com/apigateway/latest/developerguide/configure-api-gateway-lambda-authorization.html).

- Keyed by the SHA-256 of the whole presented key (what `ApiKey.key_sha256` stores): only a key that was
  verified against its stored digest is ever found here; a wrong secret with a known key id misses.
- Holds the key's record as read and whether its tenant was active then, for `auth_cache_seconds`
  (`MAILBRIDGE_AUTH_CACHE_SECONDS`, default 30; 0 turns it off), at most `MAX_ENTRIES` keys.
- Per call checks stay per call: the client address against the key's allowlist, `X-User-Id`.
- A key renamed, deactivated, restricted or revoked, or a tenant changed, through this process is forgotten at
  once (`forget_all`); another warm API process sees the change within the TTL.
"""
from __future__ import annotations

from dataclasses import dataclass

from chalicelib.config import get_settings
from chalicelib.models.tenant import ApiKey
from chalicelib.ttlcache import TtlCache

MAX_ENTRIES = 1024


@dataclass(frozen=True)
class VerifiedKey:
    """A key whose presented secret matched its stored digest: its record as read, and whether its tenant was
    active then."""
    record: ApiKey
    tenant_active: bool


_entries: TtlCache[str, VerifiedKey] = TtlCache(lambda: get_settings().auth_cache_seconds, MAX_ENTRIES)


def lookup(key_sha256: str) -> VerifiedKey | None:
    return _entries.get(key_sha256)


def remember(key_sha256: str, verified: VerifiedKey) -> None:
    _entries.put(key_sha256, verified)


def forget_all() -> None:
    _entries.clear()
