"""Request/response models for mail servers: IMAP/SMTP presets and OAuth applications (secrets write-only)."""

import ipaddress
import re
from datetime import date
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints, field_validator, model_validator

from chalicelib.api.schemas.common import ApiModel, Strict

Security = Literal["tls", "starttls", "none"]
LoginMethod = Literal["plain", "login"]
ServerType = Literal["imap", "gmail", "outlook"]

# Secrets are taken byte-exact (`Strict` would strip whitespace).
ClientSecret = Annotated[str, StringConstraints(strip_whitespace=False, min_length=1, max_length=4096)]

# RFC 1123 host names: dot-separated labels of letters, digits and hyphens, 1-63 chars, ≤253 in all.
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalize_host(value: str) -> str:
    """A DNS name (lower-cased, no trailing dot) or an IP literal; never a URL, port or path."""
    host = value.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not host or len(host) > 253 or not all(_LABEL.fullmatch(label) for label in host.split(".")):
        raise ValueError("must be a host name or IP address (no scheme, port or path)")
    return host


class EndpointPreset(Strict):
    """Where a mail server listens. Port defaults follow the security mode (IMAP: 993 implicit TLS,
    RFC 8314; 143 STARTTLS. SMTP submission: 465 implicit TLS, 587 STARTTLS, RFC 6409/8314)."""
    host: str = Field(min_length=1, max_length=255)
    port: int | None = Field(None, ge=1, le=65535)
    security: Security | None = None
    login_method: LoginMethod = "plain"

    _host = field_validator("host")(normalize_host)


# The tenant segment of the authority URL `<host>/<tenant>` (learn.microsoft.com "Application configuration
# options" (MSAL), audience: a tenant id (GUID), a domain name such as contoso.onmicrosoft.com, or `common`,
# `organizations`, `consumers`): letters, digits, dots and hyphens only, so nothing else enters the URL's path.
MS_TENANT = r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,198}[A-Za-z0-9])?$"


class OAuthAppIn(Strict):
    client_id: str = Field(min_length=1, max_length=512)
    client_secret: ClientSecret | None = Field(None, description="Write-only; stored encrypted, never returned.")
    ms_tenant: str | None = Field(None, min_length=1, max_length=200, pattern=MS_TENANT,
                                  description="Microsoft Entra tenant (id, domain, 'organizations' or 'common').")
    client_secret_expires_at: date | None = Field(
        None, description="When the client secret expires (Entra app secrets do): the mailboxes' users are "
                          "warned (`mailbox.credentials_expiring`) 14 days ahead.")


class GmailPushIn(Strict):
    """Gmail push (developers.google.com/gmail/api/guides/push): the Pub/Sub topic `users.watch` publishes to,
    and what the push subscription's OIDC token must carry (its `aud` and the service account `email`)."""
    topic: str = Field(pattern=r"^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/topics/[A-Za-z][A-Za-z0-9._~+%-]{2,254}$",
                       description="projects/PROJECT/topics/TOPIC")
    audience: str = Field(min_length=1, max_length=500,
                          description="The audience set on the push subscription (e.g. the push endpoint URL).")
    service_account: str = Field(min_length=3, max_length=254,
                                 description="The service account the push subscription signs its tokens as.")


class OAuthAppPatch(Strict):
    client_id: str | None = Field(None, min_length=1, max_length=512)
    client_secret: ClientSecret | None = None
    ms_tenant: str | None = Field(None, min_length=1, max_length=200, pattern=MS_TENANT)
    client_secret_expires_at: date | None = None


def _check_shape(server_type: str, imap, smtp, oauth, push=None) -> None:
    if push is not None and server_type != "gmail":
        raise ValueError("'push' applies to gmail servers only")
    if server_type == "imap":
        if imap is None:
            raise ValueError("an imap preset needs 'imap' settings")
        if oauth is not None:
            raise ValueError("'oauth' applies to gmail/outlook servers only")
    else:
        if imap is not None or smtp is not None:
            raise ValueError(f"a {server_type} server takes 'oauth', not imap/smtp settings")
        if oauth is None:
            raise ValueError(f"a {server_type} server needs 'oauth' (client_id, client_secret)")
        if server_type == "gmail" and oauth.ms_tenant is not None:
            raise ValueError("ms_tenant applies to outlook servers only")


class CreateMailServer(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "Acme IMAP", "type": "imap", "imap": {"host": "imap.acme.example", "port": 993, "security": "tls"},
         "smtp": {"host": "smtp.acme.example", "port": 587, "security": "starttls"}}]})
    name: str = Field(min_length=1, max_length=200)
    type: ServerType = "imap"
    imap: EndpointPreset | None = None
    smtp: EndpointPreset | None = None
    oauth: OAuthAppIn | None = None
    push: GmailPushIn | None = None

    @model_validator(mode="after")
    def _shape(self):
        _check_shape(self.type, self.imap, self.smtp, self.oauth, self.push)
        return self


class UpdateMailServer(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "Acme IMAP (new name)"}]})

    name: str | None = Field(None, min_length=1, max_length=200)
    imap: EndpointPreset | None = None
    smtp: EndpointPreset | None = None
    oauth: OAuthAppPatch | None = None
    push: GmailPushIn | None = None


class PresetEndpointOut(ApiModel):
    host: str
    port: int
    security: Security
    login_method: LoginMethod


class OAuthAppOut(ApiModel):
    client_id: str | None
    ms_tenant: str | None = None
    client_secret_expires_at: str | None = None
    has_client_secret: bool


class MailServerOut(ApiModel):
    id: str
    name: str
    type: ServerType
    imap: PresetEndpointOut | None = None
    smtp: PresetEndpointOut | None = None
    oauth: OAuthAppOut | None = None
    push: GmailPushIn | None = None
    redirect_uri: str | None = Field(None, description="Register this at the provider (OAuth servers).")
    admin_consent_redirect_uri: str | None = Field(None, description="outlook: register this too (Microsoft "
                                                                     "sends administrators back here).")
    created_at: str
    updated_at: str


class MailServerList(ApiModel):
    items: list[MailServerOut]
    next_cursor: str | None
