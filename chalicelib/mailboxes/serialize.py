"""API views of mail servers and mailboxes. Secrets never appear: only `has_password` / `has_client_secret`."""
from __future__ import annotations

from typing import Any

from chalicelib.mailboxes.servers import OAUTH_TYPES, admin_consent_redirect_uri, redirect_uri
from chalicelib.models.mailbox import Mailbox, MailboxShare, MailServer, synced_folders

_ENDPOINT_KEYS = ("host", "port", "security", "username", "login_method")
_PRESET_KEYS = ("host", "port", "security", "login_method")


def _pick(data: dict[str, Any] | None, keys: tuple[str, ...]) -> dict[str, Any] | None:
    return {key: data.get(key) for key in keys} if data else None


def server_out(server: MailServer) -> dict[str, Any]:
    oauth = None
    if server.type in OAUTH_TYPES:
        oauth = {"client_id": (server.oauth or {}).get("client_id"),
                 "ms_tenant": (server.oauth or {}).get("ms_tenant"),
                 "client_secret_expires_at": (server.oauth or {}).get("client_secret_expires_at"),
                 "has_client_secret": bool(server.secret_ciphertext)}
    return {"id": server.server_id, "name": server.name, "type": server.type,
            "imap": _pick(server.imap, _PRESET_KEYS), "smtp": _pick(server.smtp, _PRESET_KEYS), "oauth": oauth,
            "push": server.push if server.type == "gmail" else None,
            "redirect_uri": redirect_uri() if server.type in OAUTH_TYPES else None,
            "admin_consent_redirect_uri": admin_consent_redirect_uri() if server.type == "outlook" else None,
            "created_at": server.created_at, "updated_at": server.updated_at}


def mailbox_out(mailbox: Mailbox, access: str) -> dict[str, Any]:
    return {"id": mailbox.mailbox_id, "name": mailbox.name, "type": mailbox.type, "email": mailbox.email,
            "sender_name": mailbox.sender_name, "import_since": mailbox.import_since,
            "pairing_mode": mailbox.pairing_mode, "show_snippet": bool(mailbox.show_snippet),
            "signature_html": mailbox.signature_html, "signature_on_replies": bool(mailbox.signature_on_replies),
            "append_sent": mailbox.append_sent is not False, "sync_folders": synced_folders(mailbox),
            "kind": mailbox.kind, "owner_user_id": mailbox.owner_user_id, "mail_server_id": mailbox.mail_server_id,
            "imap": _pick(mailbox.imap, _ENDPOINT_KEYS), "smtp": _pick(mailbox.smtp, _ENDPOINT_KEYS),
            "has_password": bool(mailbox.secret_ciphertext), "status": mailbox.status,
            "status_reason": mailbox.status_reason, "access": access, "authorize_url": None,
            "created_at": mailbox.created_at, "updated_at": mailbox.updated_at}


def share_out(share: MailboxShare) -> dict[str, Any]:
    return {"mailbox_id": share.mailbox_id, "user_id": share.user_id, "access": share.access,
            "created_at": share.created_at}
