"""IMAP/SMTP endpoint settings: merging a preset with explicit fields, defaults, transport policy.

Defaults (docs/api.md): IMAP 993 with implicit TLS, SMTP 587 with STARTTLS. When only the security mode is
given the port follows it: IMAP 993 tls / 143 starttls|none; SMTP 465 tls (RFC 8314 §3.3) / 587 starttls|none
(RFC 6409). `security: "none"` (plain TCP, password in the clear) is refused unless the stage allows it
(`Settings.allow_insecure_mail_transport`, e.g. the local stack).
"""
from __future__ import annotations

from typing import Any

from chalicelib.config import get_settings
from chalicelib.mailboxes.errors import InvalidField

DEFAULT_SECURITY = {"imap": "tls", "smtp": "starttls"}
DEFAULT_PORTS = {("imap", "tls"): 993, ("imap", "starttls"): 143, ("imap", "none"): 143,
                 ("smtp", "tls"): 465, ("smtp", "starttls"): 587, ("smtp", "none"): 587}
PRESET_FIELDS = ("host", "port", "security", "login_method")


def _given(fields: dict[str, Any] | None) -> dict[str, Any]:
    return {key: value for key, value in (fields or {}).items() if value is not None}


def check_transport(protocol: str, security: str) -> None:
    if security == "none" and not get_settings().allow_insecure_mail_transport:
        raise InvalidField(f"{protocol}.security",
                           "plain-text transport ('none') is not allowed here; use 'tls' or 'starttls'")


def complete_preset(protocol: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A mail-server preset endpoint with every field filled: {host, port, security, login_method}."""
    merged = _given(fields)
    security = merged.get("security") or DEFAULT_SECURITY[protocol]
    check_transport(protocol, security)
    return {"host": merged["host"], "port": merged.get("port") or DEFAULT_PORTS[(protocol, security)],
            "security": security, "login_method": merged.get("login_method") or "plain"}


def complete_mailbox_endpoint(protocol: str, *layers: dict[str, Any] | None, default_username: str
                              ) -> dict[str, Any]:
    """Later layers win (preset, then stored, then request). Returns {host, port, security, username,
    login_method}; raises InvalidField naming e.g. `imap.host`."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(_given(layer))
    if not merged.get("host"):
        raise InvalidField(f"{protocol}.host", "required (or give mail_server_id of a preset)")
    security = merged.get("security") or DEFAULT_SECURITY[protocol]
    check_transport(protocol, security)
    return {"host": merged["host"], "port": int(merged.get("port") or DEFAULT_PORTS[(protocol, security)]),
            "security": security, "username": merged.get("username") or default_username,
            "login_method": merged.get("login_method") or "plain"}
