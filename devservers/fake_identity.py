"""The identity-platform half of the fake Microsoft: OpenID metadata, authorize, token, admin consent.

Wire format (learn.microsoft.com "Microsoft identity platform and OAuth 2.0 authorization code flow",
"Admin consent on the Microsoft identity platform", "OpenID Connect on the Microsoft identity platform"):

- `GET /{tenant}/v2.0/.well-known/openid-configuration` → issuer, authorization/token endpoints; a tenant that
  is neither `common`/`organizations`/`consumers` nor a user's tenant id or mail domain → 400 `invalid_tenant`
  (AADSTS90002), as Microsoft answers for a tenant it does not know.
- `GET /{tenant}/oauth2/v2.0/authorize` → 302 to `redirect_uri?code&state` (or, with `response_mode=form_post`,
  an HTML form POSTing them); when the user's organisation requires an administrator's approval and none was
  given: `error=consent_required&error_description=AADSTS65001: ...`.
- `POST /{tenant}/oauth2/v2.0/token`: `authorization_code` (PKCE S256, RFC 7636 §4.6) and `refresh_token`
  grants. Refresh tokens ROTATE: each refresh answers a new one, and — as Microsoft documents ("doesn't revoke
  old refresh tokens when used to fetch new access tokens", learn.microsoft.com "Refresh tokens in the Microsoft
  identity platform") — the used one keeps working until revoked (`revoke`) or dropped from `refresh_tokens` (its
  lifetime over: `invalid_grant`, AADSTS700082 style).
- `GET /{tenant}/v2.0/adminconsent?client_id&redirect_uri&state&scope` → records the approval, redirects with
  `admin_consent=True&tenant=<tenant id>&state&scope`.

ID tokens are unsigned JWTs (MSAL ≥ 1.38 does not validate ID tokens); `client_info` carries uid/utid so MSAL
keys the account in its cache.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

from devservers.fake_graph_state import MailState


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@dataclass
class Grant:
    user: str
    client_id: str
    scope: str
    expires_at: float = 0.0


@dataclass
class IdentityState:
    mail: MailState
    apps: dict[str, dict] = field(default_factory=dict)          # client_id → {secret}
    admin_approval_required: set[str] = field(default_factory=set)   # tenant ids
    admin_consented: set[tuple[str, str]] = field(default_factory=set)  # (tenant id, client id)
    codes: dict[str, dict] = field(default_factory=dict)
    access_tokens: dict[str, Grant] = field(default_factory=dict)
    refresh_tokens: dict[str, Grant] = field(default_factory=dict)
    token_lifetime: int = 3600
    sign_in_as: str | None = None                               # a different account signs in (wrong account)
    token_requests: list[str] = field(default_factory=list)     # grant types, in order
    lock: threading.RLock = field(default_factory=threading.RLock)

    def register_app(self, client_id: str, client_secret: str) -> None:
        self.apps[client_id] = {"secret": client_secret}

    def revoke(self, address: str) -> None:
        with self.lock:
            for store in (self.refresh_tokens, self.access_tokens):
                for token in [t for t, g in store.items() if g.user == address.lower()]:
                    del store[token]

    def knows_tenant(self, tenant: str) -> bool:
        known = {"common", "organizations", "consumers"}
        for user in self.mail.users.values():
            known |= {user.tenant_id.lower(), user.email.rpartition("@")[2]}
        return tenant.lower() in known

    def user_for_access_token(self, token: str) -> str | None:
        grant = self.access_tokens.get(token)
        if grant is None or grant.expires_at < time.time():
            return None
        return grant.user


def metadata(base: str, tenant: str) -> dict:
    issuer_tenant = "{tenantid}" if tenant in {"common", "organizations", "consumers"} else tenant
    return {"issuer": f"{base}/{issuer_tenant}/v2.0",
            "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
            "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "response_types_supported": ["code"], "scopes_supported": ["openid", "profile", "email",
                                                                       "offline_access"],
            "subject_types_supported": ["pairwise"], "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"]}


def _redirect(redirect_uri: str, params: dict[str, str], response_mode: str) -> tuple[int, dict, bytes]:
    if response_mode == "form_post":
        inputs = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}"/>'
                         for k, v in params.items())
        page = (f'<html><body onload="document.forms[0].submit()"><form method="POST" '
                f'action="{html.escape(redirect_uri)}">{inputs}</form></body></html>')
        return 200, {"Content-Type": "text/html; charset=utf-8"}, page.encode()
    separator = "&" if "?" in redirect_uri else "?"
    return 302, {"Location": f"{redirect_uri}{separator}{urlencode(params)}"}, b""


def authorize(state: IdentityState, base: str, tenant: str, query: dict[str, str]) -> tuple[int, dict, bytes]:
    client_id, redirect_uri = query.get("client_id", ""), query.get("redirect_uri", "")
    mode = query.get("response_mode") or "query"
    if client_id not in state.apps or not redirect_uri:
        return 400, {"Content-Type": "text/plain"}, b"AADSTS700016: application not found"
    out = {"state": query.get("state", "")}
    address = (state.sign_in_as or query.get("login_hint") or "").lower()
    user = state.mail.users.get(address)
    if user is None:
        return _redirect(redirect_uri, {**out, "error": "access_denied",
                                        "error_description": "AADSTS50020: user account does not exist"}, mode)
    if user.tenant_id in state.admin_approval_required and (user.tenant_id, client_id) not in state.admin_consented:
        return _redirect(redirect_uri, {**out, "error": "consent_required",
                                        "error_description": "AADSTS65001: The user or administrator has not "
                                                             "consented to use the application."}, mode)
    if query.get("code_challenge_method", "S256") != "S256" or not query.get("code_challenge"):
        return _redirect(redirect_uri, {**out, "error": "invalid_request",
                                        "error_description": "AADSTS9002325: PKCE is required"}, mode)
    code = secrets.token_urlsafe(32)
    with state.lock:
        state.codes[code] = {"user": user.email, "client_id": client_id, "redirect_uri": redirect_uri,
                             "challenge": query["code_challenge"], "scope": query.get("scope", ""),
                             "nonce": query.get("nonce"), "tenant": tenant}
    return _redirect(redirect_uri, {"code": code, **out, "session_state": secrets.token_hex(8)}, mode)


def admin_consent(state: IdentityState, tenant: str, query: dict[str, str]) -> tuple[int, dict, bytes]:
    client_id, redirect_uri = query.get("client_id", ""), query.get("redirect_uri", "")
    if client_id not in state.apps or not redirect_uri:
        return 400, {"Content-Type": "text/plain"}, b"AADSTS700016: application not found"
    known = {user.tenant_id for user in state.mail.users.values()}
    approving = state.mail.users.get((state.sign_in_as or "").lower())
    if tenant in known:
        tenant_id = tenant
    elif approving is not None:
        tenant_id = approving.tenant_id
    elif len(state.admin_approval_required) == 1:
        tenant_id = next(iter(state.admin_approval_required))
    else:
        return 400, {"Content-Type": "text/plain"}, b"AADSTS90002: tenant not found"
    state.admin_consented.add((tenant_id, client_id))
    return _redirect(redirect_uri, {"admin_consent": "True", "tenant": tenant_id, "state": query.get("state", ""),
                                    "scope": query.get("scope", "")}, "query")


def _error(status: int, error: str, description: str, code: int) -> tuple[int, dict, bytes]:
    body = {"error": error, "error_description": f"AADSTS{code}: {description}", "error_codes": [code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()), "trace_id": secrets.token_hex(8)}
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def _tokens(state: IdentityState, base: str, user_address: str, client_id: str, scope: str,
            nonce: str | None) -> tuple[int, dict, bytes]:
    user = state.mail.user(user_address)
    now = int(time.time())
    access, refresh = "at-" + secrets.token_urlsafe(24), "rt-" + secrets.token_urlsafe(32)
    state.access_tokens[access] = Grant(user.email, client_id, scope, now + state.token_lifetime)
    state.refresh_tokens[refresh] = Grant(user.email, client_id, scope)
    claims = {"aud": client_id, "iss": f"{base}/{user.tenant_id}/v2.0", "iat": now, "nbf": now,
              "exp": now + 3600, "oid": user.object_id, "sub": user.object_id, "tid": user.tenant_id,
              "preferred_username": user.upn or user.email, "name": user.email.split("@")[0], "ver": "2.0"}
    if nonce:
        claims["nonce"] = nonce
    id_token = ".".join([b64url(b'{"alg":"none","typ":"JWT"}'), b64url(json.dumps(claims).encode()), ""])
    granted = " ".join(s for s in scope.split() if s not in {"openid", "profile", "offline_access"})
    body = {"token_type": "Bearer", "scope": granted or scope, "expires_in": state.token_lifetime,
            "ext_expires_in": state.token_lifetime, "access_token": access, "refresh_token": refresh,
            "id_token": id_token,
            "client_info": b64url(json.dumps({"uid": user.object_id, "utid": user.tenant_id}).encode())}
    return 200, {"Content-Type": "application/json", "Cache-Control": "no-store"}, json.dumps(body).encode()


def token(state: IdentityState, base: str, form: dict[str, str]) -> tuple[int, dict, bytes]:
    client_id = form.get("client_id", "")
    app = state.apps.get(client_id)
    grant_type = form.get("grant_type", "")
    state.token_requests.append(grant_type)
    if app is None or form.get("client_secret") != app["secret"]:
        return _error(401, "invalid_client", "Invalid client secret provided.", 7000215)
    with state.lock:
        if grant_type == "authorization_code":
            pending = state.codes.pop(form.get("code", ""), None)
            if pending is None or pending["client_id"] != client_id:
                return _error(400, "invalid_grant", "The provided authorization code is invalid or expired.", 70000)
            if pending["redirect_uri"] != form.get("redirect_uri"):
                return _error(400, "invalid_grant", "redirect_uri does not match.", 50148)
            verifier = form.get("code_verifier", "")
            if b64url(hashlib.sha256(verifier.encode()).digest()) != pending["challenge"]:
                return _error(400, "invalid_grant", "The code_verifier does not match the code_challenge.", 501481)
            return _tokens(state, base, pending["user"], client_id, pending["scope"], pending["nonce"])
        if grant_type == "refresh_token":
            grant = state.refresh_tokens.get(form.get("refresh_token", ""))   # a used one stays valid
            if grant is None or grant.client_id != client_id:
                return _error(400, "invalid_grant", "The refresh token has expired or was revoked.", 700082)
            user = state.mail.users[grant.user]
            if user.tenant_id in state.admin_approval_required and (user.tenant_id, client_id) not in \
                    state.admin_consented:
                return _error(400, "invalid_grant", "The user or administrator has not consented.", 65001)
            return _tokens(state, base, grant.user, client_id, form.get("scope") or grant.scope, None)
    return _error(400, "unsupported_grant_type", f"grant_type {grant_type!r} is not supported.", 70003)
