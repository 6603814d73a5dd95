"""Microsoft access tokens from MSAL, with one serialized token cache per mailbox.

The cache (MSAL `SerializableTokenCache`, JSON) lives in the mailbox's sealed credentials under `msal_cache`.
`acquire_token_silent_with_error` answers from the cache while the access token is valid and otherwise redeems
the refresh token; Microsoft rotates refresh tokens, so every refresh changes the cache. `refresh()` returns
the serialized cache for write-back ONLY when `cache.has_state_changed` — the `CredentialStore` then writes it
with a conditional update on the version read (a concurrent refresh elsewhere wins; its cache is reloaded).

Scopes are the resource scopes only (`Mail.Read`, `Mail.Send`, `User.Read`): MSAL adds and refuses to be
given `openid`/`profile`/`offline_access` itself. With an authority host other than Microsoft's, MSAL must not
run instance discovery against Microsoft (`instance_discovery=False`). The OpenID metadata answer is cached for
the process (`http_cache`), so an idle sync costs no identity-platform request while the token is valid.
"""
from __future__ import annotations

import threading
from typing import Any

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

_http_cache: dict = {}
_http_cache_lock = threading.Lock()


def authority_url(host: str, ms_tenant: str) -> str:
    return f"{host.rstrip('/')}/{ms_tenant or 'organizations'}"


def msal_app(*, client_id: str, client_secret: str, authority_host: str, ms_tenant: str,
             cache: msal.TokenCache | None = None) -> msal.ConfidentialClientApplication:
    """A confidential client for one Microsoft tenant (`common`, `organizations` or a tenant id)."""
    default_host = authority_host.rstrip("/") == DEFAULT_AUTHORITY_HOST
    with _http_cache_lock:
        return msal.ConfidentialClientApplication(
            client_id, client_credential=client_secret, authority=authority_url(authority_host, ms_tenant),
            instance_discovery=None if default_host else False, token_cache=cache, http_cache=_http_cache)


class MsalTokenSource(TokenSource):
    def __init__(self, store: CredentialStore, *, client_id: str, client_secret: str, authority_host: str,
                 ms_tenant: str, **kwargs: Any):
        super().__init__(store, **kwargs)
        self._app_args = {"client_id": client_id, "client_secret": client_secret,
                          "authority_host": authority_host, "ms_tenant": ms_tenant}
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
        try:
            app = msal_app(cache=cache, **self._app_args)
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
        if not cache.has_state_changed:
            return Refreshed(token)
        return Refreshed(token, {**credentials.secrets, CACHE_KEY: cache.serialize()})
