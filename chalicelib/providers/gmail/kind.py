"""The `gmail` provider kind: its context (a Google token source, the API root and the mail server's push
settings) and its adapter. Imported only when a gmail provider is built (`providers.kinds` refers to it lazily),
so the API's cold start never loads googleapiclient.

The OAuth application is the mailbox's mail server (`type: gmail`): `oauth.client_id` and the encrypted
`client_secret`; `push: {topic, audience, service_account}` configures `users.watch` and push verification.
"""
from __future__ import annotations

from pynamodb.exceptions import DoesNotExist

from chalicelib.config import get_settings
from chalicelib.credentials.app_secret import AppSecret
from chalicelib.credentials.store import Credentials, CredentialStore
from chalicelib.models.mailbox import Mailbox, MailServer, synced_folders
from chalicelib.providers.base import ErrorCode, OAuthContext, ProviderError
from chalicelib.providers.gmail.adapter import GmailProvider
from chalicelib.providers.gmail.tokens import google_token_source

UNUSABLE = "the gmail OAuth app lacks client_id or client_secret"


def oauth_app(tenant_id: str, server_id: str | None) -> tuple[MailServer, str, AppSecret]:
    """(server, client_id, client secret decrypted on first use) of a gmail mail server; PERMANENT when it is
    missing or incomplete (an undecryptable secret: when a token refresh first needs it)."""
    if not server_id:
        raise ProviderError(ErrorCode.PERMANENT, "gmail mailbox has no mail server (OAuth app)")
    try:
        server = MailServer.get(tenant_id, server_id)
    except DoesNotExist:
        raise ProviderError(ErrorCode.PERMANENT, "the mailbox's mail server was deleted") from None
    if server.type != "gmail":
        raise ProviderError(ErrorCode.PERMANENT, f"mail server {server_id} is not a gmail OAuth app")
    client_id = (server.oauth or {}).get("client_id") or ""
    if not client_id:
        raise ProviderError(ErrorCode.PERMANENT, UNUSABLE)
    return server, client_id, AppSecret(server, UNUSABLE)


def gmail_context(mailbox: Mailbox, credentials: Credentials, timeout: float) -> OAuthContext:
    server, client_id, client_secret = oauth_app(mailbox.tenant_id, mailbox.mail_server_id)
    settings = get_settings()
    tokens = google_token_source(CredentialStore(mailbox.tenant_id, mailbox.mailbox_id),
                                 token_uri=settings.google_token_uri, client_id=client_id,
                                 client_secret=client_secret, credentials=credentials)
    return OAuthContext(tenant_id=mailbox.tenant_id, mailbox_id=mailbox.mailbox_id, email=mailbox.email,
                        timeout=timeout, tokens=tokens,
                        settings={"api_root": settings.gmail_api_root, "push": dict(server.push or {}),
                                  "sent_synced": "sent" in synced_folders(mailbox)})


def gmail_provider(context: OAuthContext) -> GmailProvider:
    return GmailProvider(context)
