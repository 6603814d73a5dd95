"""Mail servers of a tenant: IMAP/SMTP presets and OAuth applications (Gmail, Microsoft).

The OAuth client secret is stored only as a KMS envelope (`crypto.encrypt_secrets(tenant, server_id, ...)`)
in `secret_ciphertext`; `oauth` holds the non-secret part ({client_id, ms_tenant}). Mailboxes copy a preset's
host/port/security when they are created, so editing or deleting a preset never changes a working mailbox.
`security.crypto` (cryptography's AES-GCM) loads when a secret is first sealed, not with the views that read
`OAUTH_TYPES` and the redirect URIs (`serialize.py`: every mailbox listing; `chalicelib.lazy`).
"""
from __future__ import annotations

from typing import Any

from pynamodb.exceptions import DoesNotExist

from chalicelib.config import get_settings
from chalicelib.ids import new_id
from chalicelib.lazy import lazy_module
from chalicelib.mailboxes.endpoints import complete_preset
from chalicelib.mailboxes.errors import InvalidField
from chalicelib.models.mailbox import MailServer
from chalicelib.timeutil import now_iso

crypto = lazy_module("chalicelib.security.crypto")

OAUTH_TYPES = ("gmail", "outlook")


def redirect_uri() -> str:
    """The OAuth redirect URI the admin registers at Google / Microsoft Entra."""
    return get_settings().public_url("/v1/oauth/callback")


def admin_consent_redirect_uri() -> str:
    """Where Microsoft's admin-consent endpoint sends the administrator back (also registered in Entra)."""
    return get_settings().public_url("/v1/oauth/admin-consent")


def _oauth_public(oauth: dict[str, Any]) -> dict[str, Any]:
    expires = oauth.get("client_secret_expires_at")
    return {"client_id": oauth.get("client_id"), "ms_tenant": oauth.get("ms_tenant"),
            "client_secret_expires_at": str(expires) if expires else None}


def create_server(tenant_id: str, data: dict[str, Any]) -> MailServer:
    """`data` is the validated request (CreateMailServer.model_dump())."""
    server_id = new_id("srv")
    now = now_iso()
    server = MailServer(tenant_id, server_id, name=data["name"], type=data["type"], created_at=now,
                        updated_at=now)
    if data["type"] == "imap":
        server.imap = complete_preset("imap", data["imap"])
        server.smtp = complete_preset("smtp", data["smtp"]) if data.get("smtp") else None
    else:
        oauth = data["oauth"]
        server.oauth = _oauth_public(oauth)
        server.push = data.get("push")
        if oauth.get("client_secret"):
            server.secret_ciphertext = crypto.encrypt_secrets(tenant_id, server_id,
                                                       {"client_secret": oauth["client_secret"]})
    server.save(condition=MailServer.server_id.does_not_exist())
    return server


def get_server(tenant_id: str, server_id: str) -> MailServer | None:
    try:
        return MailServer.get(tenant_id, server_id)
    except DoesNotExist:
        return None


def list_servers(tenant_id: str, limit: int, last_key: dict | None) -> tuple[list[MailServer], dict | None]:
    result = MailServer.query(tenant_id, limit=limit, last_evaluated_key=last_key)
    items = list(result)
    return items, result.last_evaluated_key


def update_server(server: MailServer, changes: dict[str, Any]) -> MailServer:
    """`changes` holds only the fields the caller sent (UpdateMailServer.model_dump(exclude_unset=True))."""
    actions = []
    if changes.get("name") is not None:
        actions.append(MailServer.name.set(changes["name"]))
    is_oauth = server.type in OAUTH_TYPES
    for protocol in ("imap", "smtp"):
        if changes.get(protocol) is None:
            continue
        if is_oauth:
            raise InvalidField(protocol, f"a {server.type} server has no {protocol} settings")
        merged = {**(getattr(server, protocol) or {}), **{k: v for k, v in changes[protocol].items()
                                                          if v is not None}}
        actions.append(getattr(MailServer, protocol).set(complete_preset(protocol, merged)))
    if changes.get("push") is not None:
        if server.type != "gmail":
            raise InvalidField("push", "applies to gmail servers only")
        actions.append(MailServer.push.set(changes["push"]))
    if changes.get("oauth") is not None:
        if not is_oauth:
            raise InvalidField("oauth", "an imap preset has no OAuth application")
        patch = changes["oauth"]
        if server.type == "gmail" and patch.get("ms_tenant"):
            raise InvalidField("oauth.ms_tenant", "applies to outlook servers only")
        oauth = {**(server.oauth or {}), **{k: v for k, v in patch.items()
                                            if v is not None and k != "client_secret"}}
        actions.append(MailServer.oauth.set(_oauth_public(oauth)))
        if patch.get("client_secret"):
            actions.append(MailServer.secret_ciphertext.set(
                crypto.encrypt_secrets(server.tenant_id, server.server_id, {"client_secret": patch["client_secret"]})))
    if actions:
        actions.append(MailServer.updated_at.set(now_iso()))
        server.update(actions=actions, condition=MailServer.server_id.exists())
    return server


def delete_server(server: MailServer) -> None:
    server.delete()
