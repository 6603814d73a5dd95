"""OAuth access tokens for providers, refreshed beside the engine, not in it (closeio `TokenManager`).

A `TokenSource` hands a provider a valid access token: cached until `skew` seconds before it expires, then
refreshed. When a refresh changes the stored credentials (Google may return a new refresh token; Microsoft
rotates refresh tokens and MSAL's serialized cache changes with every refresh — the Microsoft source hands it
back at most every 12 h, `providers/graph/tokens.py`) the new credentials are written back through the
`CredentialStore` with a conditional update on the version read. On a conflict another process
refreshed first: its credentials are reloaded and used.

Warm tokens: each sync job builds a new provider, so a token cached only on the source would cost every job a
token-endpoint round trip. The access token is kept for the process (`_WARM`, a warm Lambda's), keyed by mailbox
and a digest of the stored secrets it was obtained with — a new grant (re-consent, a rotated refresh token or
MSAL cache written back) never reuses an old access token — and dropped by `invalidate()`. A consent's code
exchange seeds it (`remember_granted_token`), so the push start that follows needs no refresh. Access tokens are
never stored: they live an hour (Google: "OAuth 2.0 for Web Server Applications"; Microsoft: "Access tokens in
the Microsoft identity platform", 60-90 minutes) and a mailbox is synced every 30, so a stored one would be
stale most of the time it is read while every mailbox write pays for its size.

Errors: the refresh raises `ProviderError`; the translation from the token endpoint's answer (RFC 6749 §5.2
error codes, HTTP status) is the provider's own (`translate` is given by the provider's `errors.py`, see
`providers/oauth_errors.py` for the shared RFC 6749 table).
"""
from __future__ import annotations

import abc
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import requests

from chalicelib.credentials.store import CredentialConflict, Credentials, CredentialStore
from chalicelib.logs import logger
from chalicelib.providers.base import ErrorCode, ProviderError

DEFAULT_SKEW_SECONDS = 120
TOKEN_TIMEOUT_SECONDS = 10.0

_WARM: dict[tuple[str, str, str], "AccessToken"] = {}
_WARM_LIMIT = 1000
_WARM_LOCK = threading.Lock()      # sources of several mailboxes use `_WARM` at once (sync/check.py's threads)


def forget_warm_tokens() -> None:
    """Drop every access token this process keeps (a cold process; tests and benchmarks)."""
    with _WARM_LOCK:
        _WARM.clear()


def _warm_key(tenant_id: str, mailbox_id: str, credentials: Credentials) -> tuple[str, str, str]:
    """Mailbox and a digest of the stored secrets a token is obtained with (see "Warm tokens")."""
    secrets = json.dumps(credentials.secrets, sort_keys=True, separators=(",", ":"))
    return tenant_id, mailbox_id, hashlib.sha256(secrets.encode()).hexdigest()


def _keep_warm(key: tuple[str, str, str], token: "AccessToken") -> None:
    with _WARM_LOCK:
        if len(_WARM) >= _WARM_LIMIT:
            _WARM.clear()
        _WARM[key] = token


def remember_granted_token(tenant_id: str, mailbox_id: str, credentials: Credentials, token: "AccessToken") -> None:
    """Keep the access token a consent's authorization-code exchange returned (RFC 6749 §4.1.4: the answer
    carries an access token beside the refresh token) as this process's warm token for the `credentials` just
    stored from that grant, so a provider built from them next (the push start right after the consent) uses it
    instead of spending a refresh on a token minutes old. Keyed like every warm token: a later grant never
    reuses it."""
    _keep_warm(_warm_key(tenant_id, mailbox_id, credentials), token)


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_at: float          # epoch seconds

    def __repr__(self) -> str:  # never print the token
        return f"AccessToken(expires_at={self.expires_at})"


@dataclass(frozen=True)
class Refreshed:
    """The outcome of one refresh: the token, and the credentials to write back (None = unchanged)."""
    token: AccessToken
    secrets: dict[str, str] | None = None


class TokenSource(abc.ABC):
    """A valid access token for one mailbox; thread-safe (one refresh at a time). `_WARM` is the process's, so
    it is read and written under `_WARM_LOCK`, always taken after `self._lock`."""

    def __init__(self, store: CredentialStore, *, credentials: Credentials | None = None,
                 clock: Callable[[], float] = time.time, skew: float = DEFAULT_SKEW_SECONDS):
        self.store, self.clock, self.skew = store, clock, skew
        self._credentials = credentials
        self._token: AccessToken | None = None
        self._lock = threading.Lock()
        self.refreshes = 0

    @property
    def credentials(self) -> Credentials:
        if self._credentials is None:
            self._credentials = self.store.load()
        return self._credentials

    def access_token(self) -> str:
        with self._lock:
            if self._token is None:
                key = self._warm_key()
                with _WARM_LOCK:
                    self._token = _WARM.get(key)
            if self._token is None or self._token.expires_at - self.skew <= self.clock():
                self._token = self._refresh_and_save()
                _keep_warm(self._warm_key(), self._token)     # the credentials a refresh wrote back, if it did
            return self._token.token

    def invalidate(self) -> None:
        """Forget the cached token (the provider answered 401 with it): the next call refreshes."""
        with self._lock:
            self._token = None
            key = self._warm_key()
            with _WARM_LOCK:
                _WARM.pop(key, None)

    def _warm_key(self) -> tuple[str, str, str]:
        """Mailbox and a digest of the stored secrets the token is (or would be) obtained with (may load them:
        never called under `_WARM_LOCK`)."""
        return _warm_key(self.store.tenant_id, self.store.mailbox_id, self.credentials)

    def _refresh_and_save(self) -> AccessToken:
        credentials = self.credentials
        refreshed = self.refresh(credentials)
        self.refreshes += 1
        if refreshed.secrets is not None and refreshed.secrets != credentials.secrets:
            try:
                self._credentials = self.store.save(refreshed.secrets, credentials.version)
            except CredentialConflict:
                # Another process wrote newer credentials meanwhile: keep theirs (ours were derived from an
                # older version), and use the access token we already have.
                logger.info("credentials changed meanwhile; keeping the stored ones")
                self._credentials = self.store.load()
        return refreshed.token

    @abc.abstractmethod
    def refresh(self, credentials: Credentials) -> Refreshed:
        """Obtain a new access token from `credentials`; raise ProviderError (translated) on failure."""


Translate = Callable[[int | None, dict[str, Any], Exception | None], ProviderError]


class RefreshTokenGrant(TokenSource):
    """RFC 6749 §6 refresh-token grant against `token_uri` (form-encoded POST; client authentication in the
    body, §2.3.1). A `refresh_token` in the answer replaces the stored one (rotation, §6 last paragraph).
    `client_secret` may be a callable (`credentials.app_secret.AppSecret`): it is called only when a refresh
    is sent, so a sync with a valid access token never decrypts it."""

    def __init__(self, store: CredentialStore, *, token_uri: str, client_id: str,
                 client_secret: str | Callable[[], str],
                 translate: Translate, scopes: tuple[str, ...] = (), session: requests.Session | None = None,
                 **kwargs: Any):
        super().__init__(store, **kwargs)
        self.token_uri, self.client_id, self.client_secret = token_uri, client_id, client_secret
        self.translate, self.scopes = translate, scopes
        self.session = session or requests.Session()

    def refresh(self, credentials: Credentials) -> Refreshed:
        refresh_token = credentials.secrets.get("refresh_token")
        if not refresh_token:
            raise ProviderError(ErrorCode.AUTH_REVOKED, "no refresh token stored: the user must consent again")
        secret = self.client_secret() if callable(self.client_secret) else self.client_secret
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": self.client_id,
                "client_secret": secret}
        if self.scopes:
            form["scope"] = " ".join(self.scopes)
        started = self.clock()
        try:
            response = self.session.post(self.token_uri, data=form, timeout=TOKEN_TIMEOUT_SECONDS,
                                         headers={"Accept": "application/json"})
        except requests.RequestException as exc:
            raise self.translate(None, {}, exc) from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
            raise self.translate(response.status_code, body if isinstance(body, dict) else {}, None)
        token = AccessToken(str(body["access_token"]), started + float(body.get("expires_in") or 3600))
        rotated = body.get("refresh_token")
        secrets = None
        if rotated and rotated != refresh_token:
            secrets = {**credentials.secrets, "refresh_token": str(rotated)}
        return Refreshed(token, secrets)
