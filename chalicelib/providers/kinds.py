"""Provider kinds: for each registered kind, ONE entry that builds its context from a mailbox and makes its
adapter — used alike by the sync worker, the API's connection test and mailbox creation.

- `imap`: both endpoints are resolved once and SSRF-vetted (`security.ssrf`); the provider dials the vetted
  address and verifies TLS against the host name. Secrets: the passwords.
- OAuth kinds (`gmail`, `outlook`): their context carries a `TokenSource` (`credentials.tokens`) instead of
  passwords, and their adapters also implement `base.PushSubscriber`.

Every kind's adapter module (and, for the OAuth kinds, its context builder) is named here as a
`"package.module:attribute"` string and imported on first use (`chalicelib.lazy.lazy_callable`, the one lazy-import
mechanism): the provider SDKs — imapclient with
imaplib and smtplib, googleapiclient with google-auth, msal with requests — load only in a process that builds
a provider of that kind (the worker, a connection test), never on the API's cold start
(tests/unit/test_cold_start_imports.py lists the modules `import app` must not load).

An unknown kind raises `UnknownKind` (no silent default; twenty `messaging-get-message-list.service.ts`).
`UnreachableEndpoint` (a ProviderError) says which endpoint the SSRF guard refused, so the API can name the
field while telling nothing about the network (one generic message).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from chalicelib.credentials.store import Credentials, CredentialStore, CredentialsUnreadable
from chalicelib.lazy import lazy_callable
from chalicelib.logs import logger
from chalicelib.models.mailbox import Mailbox
from chalicelib.providers.base import ConnectionSettings, ErrorCode, MailProvider, ProviderContext, ProviderError
from chalicelib.providers.imap.context import ImapContext
from chalicelib.security.ssrf import UnreachableHost, resolve_and_vet

ContextBuilder = Callable[[Mailbox, Credentials, float], ProviderContext]
Factory = Callable[[ProviderContext], MailProvider]


class UnknownKind(ValueError):
    pass


class UnreachableEndpoint(ProviderError):
    """The SSRF guard refused (or DNS could not resolve) the `protocol` endpoint's host."""

    def __init__(self, protocol: str, exc: UnreachableHost):
        super().__init__(ErrorCode.TEMPORARY if exc.temporary else ErrorCode.PERMANENT, f"{protocol}: {exc}")
        self.protocol = protocol


@dataclass(frozen=True)
class ProviderKind:
    name: str
    build_context: ContextBuilder
    factory: Factory
    oauth: bool = False
    connection_fields: tuple[str, ...] = ()   # mailbox fields whose change means "another account": cursors reset


_KINDS: dict[str, ProviderKind] = {}


def register_kind(kind: ProviderKind) -> None:
    _KINDS[kind.name] = kind


def get_kind(name: str) -> ProviderKind:
    try:
        return _KINDS[name]
    except KeyError:
        raise UnknownKind(f"unknown mail provider kind {name!r}") from None


def registered_kinds() -> tuple[str, ...]:
    return tuple(_KINDS)


def provider_for(mailbox: Mailbox, credentials: Credentials, *, timeout: float = 30.0) -> MailProvider:
    """The mailbox's provider; raises ProviderError (PERMANENT for an unknown kind)."""
    try:
        kind = get_kind(mailbox.type)
    except UnknownKind as exc:
        raise ProviderError(ErrorCode.PERMANENT, str(exc)) from None
    return kind.factory(kind.build_context(mailbox, credentials, timeout))


def build_provider(mailbox: Mailbox) -> MailProvider:
    """The stored mailbox's provider with its decrypted credentials (resealed first when stored in the legacy
    format: `CredentialStore.upgrade`); raises ProviderError."""
    store = CredentialStore(mailbox.tenant_id, mailbox.mailbox_id)
    try:
        credentials = store.upgrade(mailbox, store.decode(mailbox))
    except CredentialsUnreadable:
        raise ProviderError(ErrorCode.PERMANENT, "stored credentials cannot be decrypted; save them again") from None
    return provider_for(mailbox, credentials)


# ---- imap -------------------------------------------------------------------------------------------------

def vetted_endpoint(protocol: str, endpoint: dict[str, Any]) -> ConnectionSettings:
    host, port = endpoint["host"], int(endpoint["port"])
    try:
        address = resolve_and_vet(host, port)
    except UnreachableHost as exc:
        logger.info("mail host refused", extra={"protocol": protocol, "reason": exc.reason})
        raise UnreachableEndpoint(protocol, exc) from None
    return ConnectionSettings(host=host, port=port, security=endpoint.get("security") or "tls",
                              username=endpoint.get("username") or "",
                              login_method=endpoint.get("login_method") or "plain", address=address)


def imap_context(mailbox: Mailbox, credentials: Credentials, timeout: float) -> ImapContext:
    if not mailbox.imap:
        raise ProviderError(ErrorCode.PERMANENT, "mailbox has no IMAP settings")
    imap = vetted_endpoint("imap", mailbox.imap)
    smtp = vetted_endpoint("smtp", mailbox.smtp) if mailbox.smtp else None
    return ImapContext(tenant_id=mailbox.tenant_id, mailbox_id=mailbox.mailbox_id, email=mailbox.email,
                       imap=imap, smtp=smtp, secrets=dict(credentials.secrets), timeout=timeout)


# ---- each kind's module loads only when a provider of the kind is built ----------------------------------------

register_kind(ProviderKind("imap", imap_context, lazy_callable("chalicelib.providers.imap.adapter:ImapProvider"),
                           connection_fields=("imap.host", "imap.username")))

register_kind(ProviderKind("gmail", lazy_callable("chalicelib.providers.gmail.kind:gmail_context"),
                           lazy_callable("chalicelib.providers.gmail.kind:gmail_provider"), oauth=True,
                           connection_fields=("email", "mail_server_id")))

register_kind(ProviderKind("outlook", lazy_callable("chalicelib.providers.graph.context:graph_context"),
                           lazy_callable("chalicelib.providers.graph.adapter:GraphProvider"), oauth=True,
                           connection_fields=("email", "mail_server_id")))
