"""Outlook consent (OAuth connect) through MSAL's auth-code flow, for the generic consent plumbing.

learn.microsoft.com "Microsoft identity platform and OAuth 2.0 authorization code flow", "Admin consent on the
Microsoft identity platform", MSAL Python `initiate_auth_code_flow` / `acquire_token_by_auth_code_flow`:
- begin: PKCE (S256) and nonce come from MSAL; `login_hint` = the mailbox address; `response_mode=form_post`
  (the code arrives in a POST body, not in the URL); scopes `Mail.Read Mail.Send User.Read` (MSAL adds
  openid/profile/offline_access). The flow dict (holds the PKCE verifier) stays server-side: `pending` is
  `{"flow": <JSON>}` (the generic state store seals string values).
- complete: MSAL checks `state` and redeems the code; `/me` (`mail`, else `userPrincipalName`) must be the
  mailbox address; the serialized MSAL cache is the mailbox's secret.
- `consent_required` / AADSTS65001 (the organisation lets only administrators consent) → outcome
  `needs_admin_consent`; `admin_consent_url` is `<host>/<tenant>/v2.0/adminconsent?client_id&redirect_uri&state&
  scope`, and the administrator's approval comes back as `admin_consent=True&tenant=<id>`.
- MSAL reads the authority's OpenID metadata (`<host>/<tenant>/v2.0/.well-known/openid-configuration`) when the
  client is built, so `begin` may fail: unreachable (or a 5xx) → `BeginFailed(temporary=True)`; a 4xx (Microsoft
  answers 400 `invalid_tenant`, AADSTS90002, for a tenant it does not know) → `BeginFailed(temporary=False)`.
"""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import msal
import requests

from chalicelib.config import get_settings
from chalicelib.oauthflow.flows import Begun, BeginFailed, ConsentFailed, Granted
from chalicelib.providers.base import ProviderError
from chalicelib.providers.graph.client import GraphClient
from chalicelib.providers.graph.tokens import CACHE_KEY, SCOPES, authority_url, msal_app, stored_cache
from chalicelib.providers.oauth_errors import ADMIN_CONSENT_CODES

GRAPH_RESOURCE = "https://graph.microsoft.com"


class _StaticToken:
    """The freshly granted access token, for the one `/me` check."""

    def __init__(self, token: str):
        self.token = token

    def access_token(self) -> str:
        return self.token

    def invalidate(self) -> None:
        pass


def _needs_admin(answer: dict[str, Any]) -> bool:
    text = f"{answer.get('error_description') or ''} {answer.get('error_codes') or ''}"
    return answer.get("error") == "consent_required" or any(code in text or code[6:] in text
                                                            for code in ADMIN_CONSENT_CODES)


class OutlookConsent:
    kind = "outlook"

    def __init__(self, *, authority_host: str | None = None, graph_root: str | None = None):
        settings = get_settings()
        self.authority_host = authority_host or settings.microsoft_authority_host
        self.graph_root = graph_root or settings.graph_api_root

    def _app(self, server, client_secret: str, cache: msal.TokenCache | None = None):
        return msal_app(client_id=server.oauth["client_id"], client_secret=client_secret,
                        authority_host=self.authority_host, ms_tenant=(server.oauth or {}).get("ms_tenant") or "",
                        cache=cache)

    def admin_consent_url(self, *, server, redirect_uri: str, state: str) -> str:
        scope = " ".join(f"{GRAPH_RESOURCE}/{s}" for s in SCOPES)
        query = urlencode({"client_id": server.oauth["client_id"], "redirect_uri": redirect_uri, "state": state,
                           "scope": scope})
        return f"{authority_url(self.authority_host, (server.oauth or {}).get('ms_tenant') or '')}" \
               f"/v2.0/adminconsent?{query}"

    @staticmethod
    def admin_consent_result(params: dict[str, str]) -> str:
        """The approving organisation's tenant id from the admin-consent redirect; ConsentFailed otherwise."""
        if params.get("error"):
            raise ConsentFailed("denied", str(params.get("error_description") or params["error"])[:200])
        if params.get("admin_consent") != "True" or not params.get("tenant"):
            raise ConsentFailed("exchange_failed", "admin consent answer without admin_consent=True")
        return params["tenant"]

    def begin(self, *, mailbox, server, client_secret: str, redirect_uri: str, state: str) -> Begun:
        try:
            flow = self._app(server, client_secret).initiate_auth_code_flow(
                list(SCOPES), redirect_uri=redirect_uri, state=state, login_hint=mailbox.email,
                response_mode="form_post")
        except (requests.RequestException, RuntimeError) as exc:
            raise BeginFailed(f"the Microsoft identity platform could not be reached ({type(exc).__name__}); "
                              f"try again later", temporary=True) from None
        except ValueError:      # MSAL: the authority's OpenID metadata answered 4xx
            tenant = (server.oauth or {}).get("ms_tenant") or "organizations"
            raise BeginFailed(f"Microsoft has no sign-in endpoint for tenant {tenant!r}: check the mail server's "
                              f"oauth.ms_tenant", temporary=False) from None
        return Begun(authorize_url=flow["auth_uri"], pending={"flow": json.dumps(flow)})

    def complete(self, *, mailbox, server, client_secret: str, redirect_uri: str, pending: dict,
                 params: dict[str, str]) -> Granted:
        if params.get("error"):
            self._refused(params, server=server, redirect_uri=redirect_uri, state=params.get("state") or "")
        cache = msal.SerializableTokenCache()
        try:
            result = self._app(server, client_secret, cache).acquire_token_by_auth_code_flow(
                json.loads(pending.get("flow") or "{}"), params)
        except ValueError as exc:          # MSAL: state mismatch / malformed flow
            raise ConsentFailed("invalid_state", str(exc)[:200]) from None
        except requests.RequestException as exc:
            raise ConsentFailed("exchange_failed", type(exc).__name__) from None
        if "access_token" not in result:
            self._refused(result, server=server, redirect_uri=redirect_uri, state=params.get("state") or "")
        address = self._account(result["access_token"])
        if address != (mailbox.email or "").strip().lower():
            raise ConsentFailed("wrong_account", "signed in with another account than the mailbox's address")
        return Granted(secrets={CACHE_KEY: stored_cache(cache)}, account_email=address)

    def _refused(self, answer: dict, *, server, redirect_uri: str, state: str) -> None:
        if _needs_admin(answer):
            raise ConsentFailed("needs_admin_consent", "the organisation requires an administrator's approval")
        if answer.get("error") in {"access_denied", "interaction_required", "login_required"}:
            raise ConsentFailed("denied", str(answer.get("error_description") or answer["error"])[:200])
        raise ConsentFailed("exchange_failed", str(answer.get("error") or "no token")[:100])

    def _account(self, access_token: str) -> str:
        try:
            client = GraphClient(self.graph_root, _StaticToken(access_token), mailbox_key="consent")
        except ProviderError as exc:        # a misconfigured (non-https) Graph root
            raise ConsentFailed("exchange_failed", exc.detail) from None
        try:
            profile = client.get_json("me", params={"$select": "mail,userPrincipalName"}, what="profile")
        except ProviderError as exc:
            raise ConsentFailed("exchange_failed", exc.detail) from None
        finally:
            client.session.close()
        return str(profile.get("mail") or profile.get("userPrincipalName") or "").strip().lower()

