"""Gmail consent: OAuth 2.0 authorization code flow for web server apps with PKCE
(developers.google.com/identity/protocols/oauth2/web-server; RFC 7636 S256).

Authorize URL parameters: `response_type=code`, `access_type=offline` and `prompt=consent` (Google returns a
refresh token only when the consent screen is shown), `login_hint=<mailbox address>`, and only the scopes sync
and sending need — `gmail.readonly` and `gmail.send`. The callback exchanges the code with the verifier, checks
that every scope was granted (granular consent lets users untick one) and that `users.getProfile` names the
mailbox's address; only then are secrets returned to be stored — with the exchange's access token (valid for
`expires_in` seconds, "OAuth 2.0 for Web Server Applications" step 5), which the service keeps warm for the
push start, so a connection costs the process one token request and one `getProfile` read.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import requests

from chalicelib.config import get_settings
from chalicelib.credentials.tokens import AccessToken
from chalicelib.logs import logger
from chalicelib.models.mailbox import Mailbox, MailServer
from chalicelib.oauthflow.flows import Begun, ConsentFailed, Granted
from chalicelib.providers.base import ProviderError
from chalicelib.push import gmail_push_key
from chalicelib.providers.gmail.client import GmailClient
from chalicelib.providers.gmail.tokens import SCOPES

TIMEOUT_SECONDS = 10.0


class _StaticToken:
    """The access token of the code exchange, for the one getProfile call."""

    def __init__(self, token: str):
        self._token = token

    def access_token(self) -> str:
        return self._token

    def invalidate(self) -> None:
        return None


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge): 43-128 unreserved characters; BASE64URL(SHA256(verifier)) (RFC 7636 §4)."""
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


class GmailConsent:
    kind = "gmail"

    def begin(self, *, mailbox: Mailbox, server: MailServer, client_secret: str, redirect_uri: str,
              state: str) -> Begun:
        verifier, challenge = pkce_pair()
        query = {"client_id": (server.oauth or {}).get("client_id", ""), "redirect_uri": redirect_uri,
                 "response_type": "code", "scope": " ".join(SCOPES), "state": state,
                 "code_challenge": challenge, "code_challenge_method": "S256", "access_type": "offline",
                 "prompt": "consent", "login_hint": mailbox.email}
        return Begun(f"{get_settings().google_auth_uri}?{urlencode(query)}", {"code_verifier": verifier})

    def complete(self, *, mailbox: Mailbox, server: MailServer, client_secret: str, redirect_uri: str,
                 pending: dict, params: dict[str, str]) -> Granted:
        if params.get("error"):
            outcome = "denied" if params["error"] == "access_denied" else "exchange_failed"
            raise ConsentFailed(outcome, f"Google answered {params['error'][:64]}")
        if not params.get("code"):
            raise ConsentFailed("exchange_failed", "no authorization code in the callback")
        started = time.time()
        answer = self._exchange(server, client_secret, redirect_uri, params["code"], pending.get("code_verifier", ""))
        granted = set(str(answer.get("scope") or "").split())
        if not set(SCOPES) <= granted:
            raise ConsentFailed("denied", "not every requested permission was granted")
        if not answer.get("refresh_token"):
            raise ConsentFailed("exchange_failed", "Google returned no refresh token")
        client = GmailClient(_StaticToken(str(answer["access_token"])), api_root=get_settings().gmail_api_root,
                             timeout=TIMEOUT_SECONDS, attempts=1)
        try:
            address = str(client.get_profile().get("emailAddress") or "")
        except ProviderError as exc:
            raise ConsentFailed("exchange_failed", f"users.getProfile failed ({exc.code.value})") from None
        if address.lower() != mailbox.email.lower():
            raise ConsentFailed("wrong_account", "the Google account is not the mailbox's address")
        token = AccessToken(str(answer["access_token"]), started + float(answer.get("expires_in") or 3600))
        return Granted({"refresh_token": str(answer["refresh_token"])}, address.lower(), token)

    def _exchange(self, server: MailServer, client_secret: str, redirect_uri: str, code: str,
                  verifier: str) -> dict[str, Any]:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "client_id": (server.oauth or {}).get("client_id", ""), "client_secret": client_secret,
                "code_verifier": verifier}
        try:
            response = requests.post(get_settings().google_token_uri, data=form, timeout=TIMEOUT_SECONDS,
                                     headers={"Accept": "application/json"})
            body = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise ConsentFailed("exchange_failed", f"token endpoint unreachable ({type(exc).__name__})") from None
        if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
            error = body.get("error") if isinstance(body, dict) else None
            logger.info("gmail code exchange refused", extra={"status": response.status_code, "error": error})
            raise ConsentFailed("exchange_failed", f"Google refused the code ({error or response.status_code})")
        return body

    @staticmethod
    def push_key(mailbox: Mailbox) -> str:
        """What Gmail push notifications name the mailbox by (`emailAddress`)."""
        return gmail_push_key(mailbox.email)
