"""Microsoft access tokens from MSAL, with one serialized token cache per mailbox.

The cache (MSAL `SerializableTokenCache`, JSON) lives in the mailbox's sealed credentials under `msal_cache`.
A refresh builds the confidential client (opening the app's client secret, `credentials.app_secret`) and
`acquire_token_silent_with_error` redeems the refresh token; Microsoft rotates refresh tokens, so every refresh
changes the cache. The access token then stays in the process for its lifetime (`credentials.tokens`, "Warm
tokens"): later syncs of the mailbox in a warm Lambda send no token request and open no secret.

Write-back: at most every `PERSIST_AFTER_SECONDS` (12 h). "The Microsoft identity platform doesn't revoke old
refresh tokens when used to fetch new access tokens"; refresh tokens live 90 days
(https://learn.microsoft.com/entra/identity-platform/refresh-tokens), so the stored one keeps working while a
refresh's rotated one is only used for the rest of the run. `refresh()` returns the serialized cache for
write-back when the cache changed AND the stored refresh token was written (MSAL's `last_modification_time`)
more than 12 h ago — the `CredentialStore` then writes it with a conditional update on the version read (a
concurrent refresh elsewhere wins; its cache is reloaded). Why: an access token lives 60-90 minutes and a
mailbox is synced every 30, so writing every refresh back rewrote the sealed cache on the mailbox item every
other tick (its size in write units, plus the lease and counter writes it weighs on); refreshing again at the
next tick costs one token request, most of it waiting that a check batch overlaps (docs/benchmarks.md,
"Cost per mailbox-month"). The stored refresh token is at most 12 h older than the newest one.

What is stored is `stored_cache`: the refresh token and account sections, compact. MSAL's own `serialize()`
indents its JSON and keeps the access token, ID token and app metadata. The silent flow reads the account (it
names the user) and redeems the refresh token; app metadata only marks "family" refresh tokens of Microsoft's
public clients; the ID token is never read; and an access token (60-90 minutes,
https://learn.microsoft.com/entra/identity-platform/access-tokens) written back at most every 12 h is expired
for 11 of them, while a real one is 1.5-2.5 KB. The sealed cache rides on the mailbox item, so its size is paid
in write units by every write of that item (the write-back, the lease) and in read units by every read
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html). A cache
stored before this rule still holds an access token: MSAL answers from it while it is valid.

Scopes are the resource scopes only (`Mail.Read`, `Mail.Send`, `User.Read`): MSAL adds and refuses to be
given `openid`/`profile`/`offline_access` itself. With an authority host other than Microsoft's, MSAL must not
run instance discovery against Microsoft (`instance_discovery=False`). The OpenID metadata answer is cached per
thread (`http_cache`), so a refresh costs no metadata request once its thread has fetched it. Per thread, not per
process: MSAL guards the dict it is given with a lock of each client's own (`msal.throttled_http_client`,
`ExpiringMapping(mapping=http_cache, lock=Lock())`) and keeps its expiry index inside the dict, changed in place,
so clients of several mailboxes sharing one dict from several threads (the check function checks records at once)
could corrupt it.
"""
from __future__ import annotations

import json
import threading
from typing import Any, Callable

import msal
import requests

from chalicelib.credentials.store import Credentials, CredentialStore
from chalicelib.credentials.tokens import AccessToken, Refreshed, TokenSource
from chalicelib.providers.base import ErrorCode, ProviderError
from chalicelib.providers.graph.errors import msal_error
from chalicelib.providers.oauth_errors import token_error

SCOPES = ("Mail.Read", "Mail.Send", "User.Read")
CACHE_KEY = "msal_cache"
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"

PERSIST_AFTER_SECONDS = 12 * 3600       # a refreshed cache is written back once the stored one is this old
STORED_SECTIONS = ("RefreshToken", "Account")
_http_caches = threading.local()


def http_cache() -> dict:
    """This thread's MSAL HTTP cache (see the module docstring)."""
    cache = getattr(_http_caches, "cache", None)
    if cache is None:
        cache = _http_caches.cache = {}
    return cache


def stored_cache(cache: msal.SerializableTokenCache) -> str:
    """The cache as stored: its refresh token and account sections in compact JSON (the module docstring says
    why the rest is left out); `SerializableTokenCache.deserialize` reads it back."""
    whole = json.loads(cache.serialize())
    return json.dumps({name: whole[name] for name in STORED_SECTIONS if name in whole}, separators=(",", ":"))


def refresh_token_written_at(cache: msal.TokenCache) -> float | None:
    """When the cache's newest refresh token was written (MSAL's `last_modification_time`, epoch seconds)."""
    times = [int(entry.get("last_modification_time") or 0)
             for entry in cache.search(msal.TokenCache.CredentialType.REFRESH_TOKEN)]
    return max(times) if times else None


def authority_url(host: str, ms_tenant: str) -> str:
    return f"{host.rstrip('/')}/{ms_tenant or 'organizations'}"


def msal_app(*, client_id: str, client_secret: str, authority_host: str, ms_tenant: str,
             cache: msal.TokenCache | None = None) -> msal.ConfidentialClientApplication:
    """A confidential client for one Microsoft tenant (`common`, `organizations` or a tenant id)."""
    default_host = authority_host.rstrip("/") == DEFAULT_AUTHORITY_HOST
    return msal.ConfidentialClientApplication(
        client_id, client_credential=client_secret, authority=authority_url(authority_host, ms_tenant),
        instance_discovery=None if default_host else False, token_cache=cache, http_cache=http_cache())


class MsalTokenSource(TokenSource):
    """`client_secret` may be a callable (`credentials.app_secret.AppSecret`): it is called only when MSAL has to
    send a token request."""

    def __init__(self, store: CredentialStore, *, client_id: str, client_secret: str | Callable[[], str],
                 authority_host: str, ms_tenant: str, **kwargs: Any):
        super().__init__(store, **kwargs)
        self._client_secret = client_secret
        self._app_args = {"client_id": client_id, "authority_host": authority_host, "ms_tenant": ms_tenant}
        self._force = False

    def invalidate(self) -> None:
        """Graph refused the token (401): the next call redeems the refresh token instead of the cache."""
        super().invalidate()
        self._force = True

    def refresh(self, credentials: Credentials) -> Refreshed:
        serialized = credentials.secrets.get(CACHE_KEY)
        if not serialized:
            raise ProviderError(ErrorCode.AUTH_REVOKED, "no Microsoft token cache stored: the user must consent")
        cache = msal.SerializableTokenCache()
        cache.deserialize(serialized)
        written_at = refresh_token_written_at(cache)
        secret = self._client_secret() if callable(self._client_secret) else self._client_secret
        try:
            app = msal_app(cache=cache, client_secret=secret, **self._app_args)
            accounts = app.get_accounts()
            if not accounts:
                raise msal_error(None)
            result = app.acquire_token_silent_with_error(list(SCOPES), account=accounts[0],
                                                         force_refresh=self._force)
        except requests.RequestException as exc:
            raise token_error(None, {}, exc, provider="microsoft") from None
        except ValueError as exc:   # MSAL: the authority's OpenID metadata could not be read
            raise ProviderError(ErrorCode.TEMPORARY, f"microsoft authority unusable: {str(exc)[:200]}") from None
        if not result or "access_token" not in result:
            raise msal_error(result)
        self._force = False
        token = AccessToken(str(result["access_token"]), self.clock() + float(result.get("expires_in") or 3600))
        if not cache.has_state_changed or (written_at is not None
                                           and self.clock() - written_at < PERSIST_AFTER_SECONDS):
            return Refreshed(token)
        return Refreshed(token, {**credentials.secrets, CACHE_KEY: stored_cache(cache)})
