"""Google access tokens for a Gmail mailbox.

`google_token_source` refreshes through `MAILBRIDGE_GOOGLE_TOKEN_URI` with the RFC 6749 §6 refresh-token grant
(`credentials.tokens.RefreshTokenGrant`, client authentication in the body as Google's OAuth 2.0 for web
server apps documents). Google normally keeps the refresh token; when an answer carries a new one it is written
back through the `CredentialStore` (conditional on the version read). `invalid_grant` (revoked, expired after
6 months unused, password change with Gmail scopes) → AUTH_REVOKED.

`TokenSourceCredentials` lets googleapiclient/google-auth-httplib2 use that token source: every request (and
every batch part) carries the current token; on a 401 google-auth-httplib2 calls `refresh()`, which drops the
cached token and fetches a new one ONCE (`AuthorizedHttp` retries a request at most twice); a second 401 is
translated to AUTH_REVOKED by `errors.py`.
"""
from __future__ import annotations

from typing import Any, Callable

from google.auth import credentials as google_credentials

from chalicelib.credentials.store import Credentials, CredentialStore
from chalicelib.credentials.tokens import RefreshTokenGrant
from chalicelib.providers.base import AccessTokens
from chalicelib.providers.gmail.errors import translate_token

SCOPES = ("https://www.googleapis.com/auth/gmail.readonly", "https://www.googleapis.com/auth/gmail.send")


def google_token_source(store: CredentialStore, *, token_uri: str, client_id: str,
                        client_secret: str | Callable[[], str],
                        credentials: Credentials | None = None, **kwargs: Any) -> RefreshTokenGrant:
    """A token source for one mailbox (its stored secrets hold `refresh_token`); `client_secret` may be a callable,
    called only when a refresh is sent (`credentials.app_secret`). Its access token outlives the provider in a
    warm process (`credentials.tokens`, "Warm tokens")."""
    return RefreshTokenGrant(store, token_uri=token_uri, client_id=client_id, client_secret=client_secret,
                             translate=translate_token, credentials=credentials, **kwargs)


class TokenSourceCredentials(google_credentials.Credentials):
    """google-auth credentials backed by a mailbox `TokenSource` (which caches, refreshes and writes back)."""

    def __init__(self, tokens: AccessTokens):
        super().__init__()
        self._tokens = tokens
        self.refresh_calls = 0

    @property
    def expired(self) -> bool:
        return False              # the token source refreshes ahead of expiry itself

    @property
    def valid(self) -> bool:
        return True

    def refresh(self, request: Any) -> None:
        """Called by google-auth-httplib2 / the batch after a 401: forget the token and get a new one."""
        self.refresh_calls += 1
        self._tokens.invalidate()
        self.token = self._tokens.access_token()

    def apply(self, headers: dict, token: str | None = None) -> None:
        self.token = token or self._tokens.access_token()
        headers["authorization"] = f"Bearer {self.token}"

    def before_request(self, request: Any, method: str, url: str, headers: dict) -> None:
        self.apply(headers)
