"""Request/response models for mailboxes (docs/api.md) and their shares. Passwords are write-only."""

import re
from datetime import date
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, StringConstraints, field_validator

from chalicelib.api.schemas.common import ApiModel, ListQuery, Strict
from chalicelib.api.schemas.mail_servers import LoginMethod, Security, normalize_host
from chalicelib.config import INSECURE_URL_STAGES, get_settings
from chalicelib.security.addresses import has_header_break, is_plain_address, with_ascii_domain

MailboxType = Literal["imap", "gmail", "outlook"]
PairingMode = Literal["auto", "signal", "off"]
Kind = Literal["personal", "shared"]
Access = Literal["read", "read_write"]
Status = Literal["pending_auth", "active", "auth_error", "needs_admin_consent", "disabled", "purging"]
FolderRole = Literal["inbox", "sent"]
FOLDER_NAME_MAX = 255
MAX_SYNC_FOLDERS = 20

# Secrets are taken byte-exact: `Strict` strips whitespace from strings, which would change a password.
Password = Annotated[str, StringConstraints(strip_whitespace=False, min_length=1, max_length=1024)]

_USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_email(value: str) -> str:
    """A plain addr-spec `local@domain` (`security.addresses.is_plain_address`: RFC 5322 §3.4.1 dot-atom, safe
    in a header and an SMTP envelope as it is); an international domain as A-labels, the domain lower-cased."""
    value = with_ascii_domain(value)
    if not is_plain_address(value):
        raise ValueError("must be an email address like name@example.com")
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"


def check_header_text(value: str | None) -> str | None:
    """Text that ends up in a mail header (sender name) may not carry CR/LF or other controls (RFC 5322 §2.2),
    C1 controls or the Unicode line/paragraph separators (`security.addresses.has_header_break`)."""
    if value is not None and has_header_break(value):
        raise ValueError("must not contain control characters or line breaks")
    return value


def check_sync_folders(values: list[str] | None) -> list[str] | None:
    """Roles (`inbox`, `sent`, any case) or named folders: an IMAP mailbox name, a Gmail label name or id, a
    Microsoft mail folder's display name or well-known name (e.g. `archive`). Names are kept as given (the
    provider resolves them at sync time; one it does not have is a per-folder error, `last_error`)."""
    if values is None:
        return None
    out: list[str] = []
    for value in values:
        name = value.strip()
        if not name or len(name) > FOLDER_NAME_MAX or _CONTROL.search(name):
            raise ValueError(f"each folder must be 1-{FOLDER_NAME_MAX} characters without control characters")
        out.append(name.lower() if name.lower() in ("inbox", "sent") else name)
    return list(dict.fromkeys(out))


def check_return_url(value: str | None) -> str | None:
    """Where the browser goes after an OAuth consent: an absolute https URL (http:// in the local stage)."""
    if value is None:
        return value
    parts = urlsplit(value)
    insecure_ok = get_settings().stage in INSECURE_URL_STAGES
    if parts.scheme not in (("https", "http") if insecure_ok else ("https",)) or not parts.hostname \
            or parts.fragment or _CONTROL.search(value):
        raise ValueError("must be an absolute https:// URL without a fragment")
    return value


ReturnUrl = Annotated[str, StringConstraints(strip_whitespace=True, min_length=8, max_length=2048)]


def check_user_id(value: str | None) -> str | None:
    if value is not None and not _USER_ID.fullmatch(value):     # `$` alone also matches before a final "\n"
        raise ValueError("must be 1-128 characters of letters, digits and ._:@-")
    return value


class EndpointIn(Strict):
    """IMAP or SMTP connection settings; omitted fields come from `mail_server_id`'s preset or defaults
    (IMAP 993/tls, SMTP 587/starttls; username = the mailbox email)."""
    host: str | None = Field(None, min_length=1, max_length=255)
    port: int | None = Field(None, ge=1, le=65535)
    security: Security | None = None
    username: str | None = Field(None, min_length=1, max_length=320)
    login_method: LoginMethod | None = None

    @field_validator("host")
    @classmethod
    def _host(cls, value):
        return None if value is None else normalize_host(value)

    _username = field_validator("username")(check_header_text)


class CreateMailbox(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "name": "Jan's inbox", "type": "imap", "email": "jan@acme.example", "import_since": "2026-12-01",
        "imap": {"host": "imap.acme.example", "port": 993, "security": "tls", "username": "jan@acme.example"},
        "smtp": {"host": "smtp.acme.example", "port": 587, "security": "starttls", "username": "jan@acme.example"},
        "password": "app-password"}]})

    name: str = Field(min_length=1, max_length=200)
    type: MailboxType = "imap"
    email: str = Field(min_length=3, max_length=254)
    sender_name: str | None = Field(None, max_length=200)
    import_since: date | None = Field(None, description="YYYY-MM-DD; default and limit: the plan's import window.")
    pairing_mode: PairingMode = "auto"
    show_snippet: bool = True
    signature_html: str | None = Field(None, max_length=20_000)
    signature_on_replies: bool = False
    append_sent: bool = Field(True, description="IMAP: append a copy of mail sent through SMTP to the \\Sent "
                                                 "folder; off for servers that file sent mail themselves.")
    kind: Kind = "personal"
    sync_folders: list[str] | None = Field(None, min_length=1, max_length=MAX_SYNC_FOLDERS,
                                           description="Folders to sync (default inbox + sent); see the PATCH.")
    owner_user_id: str | None = Field(None, description="Personal mailbox created by the tenant admin for a user.")
    mail_server_id: str | None = Field(None, min_length=1, max_length=64)
    imap: EndpointIn | None = None
    smtp: EndpointIn | None = None
    password: Password | None = Field(None, description="Write-only.")
    smtp_password: Password | None = Field(None, description="Write-only; when SMTP uses another password.")
    return_url: ReturnUrl | None = Field(None, description="gmail/outlook: where the browser goes after consent "
                                                           "(`?mailbox_id=&outcome=` is added); default: the "
                                                           "tenant setting `oauth_return_url`, else a result page.")

    _email = field_validator("email")(check_email)
    _sender = field_validator("sender_name", "name")(check_header_text)
    _owner = field_validator("owner_user_id")(check_user_id)
    _return = field_validator("return_url")(check_return_url)
    _folders = field_validator("sync_folders")(check_sync_folders)


class UpdateMailbox(Strict):
    """Only what is sent changes; `null` clears sender_name/signature_html. Changing imap/smtp, the server
    preset or a password re-verifies the login before anything is stored."""
    model_config = ConfigDict(json_schema_extra={"examples": [{"pairing_mode": "signal", "sender_name": "Acme Sales"}]})

    name: str | None = Field(None, min_length=1, max_length=200)
    email: str | None = Field(None, min_length=3, max_length=254)
    sender_name: str | None = Field(None, max_length=200)
    import_since: date | None = None
    pairing_mode: PairingMode | None = None
    show_snippet: bool | None = None
    signature_html: str | None = Field(None, max_length=20_000)
    signature_on_replies: bool | None = None
    append_sent: bool | None = None
    sync_folders: list[str] | None = Field(
        None, min_length=1, max_length=MAX_SYNC_FOLDERS,
        description="Which folders are synced (default inbox + sent): the roles `inbox` and `sent`, and named "
                    "folders — an IMAP mailbox name, a Gmail label (name or id), a Microsoft mail folder (display "
                    "name or well-known name such as `archive`). A named folder the provider does not have is "
                    "reported in `last_error` (code not_found) while the others sync; a folder turned off is no "
                    "longer read, its stored mail and cursor stay.")
    mail_server_id: str | None = Field(None, min_length=1, max_length=64)
    imap: EndpointIn | None = None
    smtp: EndpointIn | None = None
    password: Password | None = None
    smtp_password: Password | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value):
        return None if value is None else check_email(value)

    _sender = field_validator("sender_name", "name")(check_header_text)
    _folders = field_validator("sync_folders")(check_sync_folders)


class EndpointOut(ApiModel):
    host: str
    port: int
    security: Security
    username: str
    login_method: LoginMethod


class MailboxOut(ApiModel):
    id: str
    name: str
    type: MailboxType
    email: str
    sender_name: str | None
    import_since: str
    pairing_mode: PairingMode
    show_snippet: bool
    signature_html: str | None
    signature_on_replies: bool
    append_sent: bool
    sync_folders: list[str]
    kind: Kind
    owner_user_id: str | None
    mail_server_id: str | None
    imap: EndpointOut | None
    smtp: EndpointOut | None
    has_password: bool
    status: Status
    status_reason: str | None
    access: Literal["owner", "read_write", "read"] = Field(description="The caller's access to this mailbox.")
    authorize_url: str | None = None
    created_at: str
    updated_at: str


class MailboxList(ApiModel):
    items: list[MailboxOut]
    next_cursor: str | None


class MailboxListQuery(ListQuery):
    pass


class AuthorizeIn(Strict):
    return_url: ReturnUrl | None = None

    _return = field_validator("return_url")(check_return_url)


class AuthorizeOut(ApiModel):
    authorize_url: str = Field(description="Open in the mailbox owner's browser; valid once, for expires_in s.")
    expires_in: int
    admin_consent_url: str | None = Field(None, description="Only while the mailbox is `needs_admin_consent`: "
                                                            "for an administrator of the organisation (Microsoft).")


class AdminConsentQuery(ApiModel):
    """Microsoft's admin-consent redirect: `admin_consent=True&tenant=…&state=…`, or `error=…&state=…`."""
    model_config = ConfigDict(extra="ignore")
    state: str | None = Field(None, max_length=512)
    admin_consent: str | None = Field(None, max_length=10)
    tenant: str | None = Field(None, max_length=100)
    error: str | None = Field(None, max_length=200)
    error_description: str | None = Field(None, max_length=1000)


class CallbackQuery(ApiModel):
    """The provider's redirect back (RFC 6749 §4.1.2): `code` + `state`, or `error` + `state`."""
    model_config = ConfigDict(extra="ignore")
    state: str | None = Field(None, max_length=512)
    code: str | None = Field(None, max_length=4096)
    error: str | None = Field(None, max_length=200)
    error_description: str | None = Field(None, max_length=2000)
    scope: str | None = Field(None, max_length=4096)


class ConnectionTest(ApiModel):
    ok: bool
    detail: str
    status: Status


class ShareIn(Strict):
    access: Access


class ShareOut(ApiModel):
    mailbox_id: str
    user_id: str
    access: Access
    created_at: str


class ShareList(ApiModel):
    items: list[ShareOut]
    next_cursor: str | None
