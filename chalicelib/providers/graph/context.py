"""Builds an `OAuthContext` for an `outlook` mailbox: the Microsoft app (mail server preset), an MSAL token
source over the mailbox's sealed cache, and Graph settings (root, notification URLs). Loads msal: imported
only when an outlook provider is built (`providers.kinds`), never on the API's cold start."""
from __future__ import annotations

from pynamodb.exceptions import DoesNotExist

from chalicelib.config import get_settings
from chalicelib.credentials.app_secret import AppSecret
from chalicelib.credentials.store import Credentials, CredentialStore
from chalicelib.models.mailbox import Mailbox, MailServer
from chalicelib.providers.base import ErrorCode, OAuthContext, ProviderError
from chalicelib.providers.graph.tokens import MsalTokenSource

PUSH_PATH = "/v1/push/graph"
LIFECYCLE_PATH = "/v1/push/graph/lifecycle"


def microsoft_app(tenant_id: str, server_id: str | None) -> tuple[MailServer, AppSecret]:
    """The outlook mail server preset and its client secret (decrypted on first use: only a token refresh
    needs it); PERMANENT when unusable (an undecryptable secret: when a refresh first needs it)."""
    try:
        server = MailServer.get(tenant_id, server_id or "")
    except DoesNotExist:
        raise ProviderError(ErrorCode.PERMANENT, "the mailbox's Microsoft app (mail server) is gone") from None
    if server.type != "outlook" or not (server.oauth or {}).get("client_id"):
        raise ProviderError(ErrorCode.PERMANENT, "the mail server is not a Microsoft app")
    return server, AppSecret(server, "the Microsoft app has no usable client secret")


def graph_settings() -> dict[str, str]:
    settings = get_settings()
    return {"graph_root": settings.graph_api_root,
            "notification_url": settings.public_url(PUSH_PATH),
            "lifecycle_url": settings.public_url(LIFECYCLE_PATH)}


def graph_context(mailbox: Mailbox, credentials: Credentials, timeout: float) -> OAuthContext:
    server, secret = microsoft_app(mailbox.tenant_id, mailbox.mail_server_id)
    tokens = MsalTokenSource(CredentialStore(mailbox.tenant_id, mailbox.mailbox_id), credentials=credentials,
                             client_id=server.oauth["client_id"], client_secret=secret,
                             authority_host=get_settings().microsoft_authority_host,
                             ms_tenant=server.oauth.get("ms_tenant") or "organizations")
    return OAuthContext(tenant_id=mailbox.tenant_id, mailbox_id=mailbox.mailbox_id, email=mailbox.email,
                        timeout=timeout, tokens=tokens, settings=graph_settings())
