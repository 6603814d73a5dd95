"""Begin and complete an OAuth consent for a mailbox (any OAuth kind).

Completion, in order — nothing is stored unless the flow granted:
1. consume the state (signature, single use, 10-minute expiry) → tenant + mailbox + kind + sealed pending data;
2. the kind's flow exchanges the code and checks the account (`ConsentFailed` → that outcome, nothing stored;
   `needs_admin_consent` also shows on the mailbox);
3. secrets are written through the `CredentialStore` (conditional on the version read) and the exchange's
   access token, if the flow returned it, kept warm for them (`tokens.remember_granted_token`); the mailbox
   turns `active` (`mailbox.status_changed`), its `push_key` is set;
4. push is started through the kind's `PushSubscriber` (a failure is recorded in `push_error`, not fatal; the
   renewer retries) and the first import is queued.
"""
from __future__ import annotations

from dataclasses import dataclass

from pynamodb.exceptions import DeleteError, DoesNotExist, PynamoDBException

from chalicelib.credentials.store import CredentialConflict, CredentialStore
from chalicelib.credentials.tokens import remember_granted_token
from chalicelib.logs import logger
from chalicelib.mailboxes.servers import admin_consent_redirect_uri, redirect_uri
from chalicelib.models.mailbox import Mailbox, MailServer
from chalicelib.models.tenant import Tenant
from chalicelib.notify.events import emit
from chalicelib.oauthflow import state
from chalicelib.oauthflow.flows import ConsentFailed, Granted, get_flow
from chalicelib.providers.base import ProviderError, PushSubscriber
from chalicelib.providers.kinds import provider_for
from chalicelib.security.crypto import SecretDecryptionError, decrypt_secrets
from chalicelib.sync import push
from chalicelib.sync.enqueue import enqueue_sync
from chalicelib.timeutil import now_iso


class ConsentUnavailable(Exception):
    """The mailbox cannot start a consent (not an OAuth kind, or its OAuth app is missing/incomplete)."""


@dataclass(frozen=True)
class ConsentResult:
    outcome: str
    detail: str
    tenant_id: str | None = None
    mailbox_id: str | None = None
    return_url: str | None = None


def _oauth_app(mailbox: Mailbox) -> tuple[MailServer, str]:
    """(server, client_secret) of the mailbox's OAuth app."""
    try:
        server = MailServer.get(mailbox.tenant_id, mailbox.mail_server_id or "-")
    except DoesNotExist:
        raise ConsentUnavailable("the mailbox's mail server (OAuth app) does not exist") from None
    if server.type != mailbox.type:
        raise ConsentUnavailable(f"mail server {server.server_id!r} is not a {mailbox.type} OAuth app")
    try:
        client_secret = decrypt_secrets(server.tenant_id, server.server_id, server.secret_ciphertext).get(
            "client_secret", "")
    except SecretDecryptionError:
        client_secret = ""
    if not client_secret or not (server.oauth or {}).get("client_id"):
        raise ConsentUnavailable("the OAuth app needs client_id and client_secret")
    return server, client_secret


def default_return_url(tenant_id: str) -> str | None:
    try:
        return (Tenant.get(tenant_id).settings or {}).get("oauth_return_url")
    except DoesNotExist:
        return None


def begin_consent(mailbox: Mailbox, *, return_url: str | None = None) -> str:
    """A fresh authorize URL for `mailbox` (valid for `state.STATE_TTL_SECONDS`)."""
    server, client_secret = _oauth_app(mailbox)
    flow = get_flow(mailbox.type)
    state_id, signed = state.new_state()
    begun = flow.begin(mailbox=mailbox, server=server, client_secret=client_secret, redirect_uri=redirect_uri(),
                       state=signed)
    state.save(state_id, mailbox.tenant_id, mailbox.mailbox_id, mailbox.type, begun.pending,
               return_url or default_return_url(mailbox.tenant_id))
    return begun.authorize_url


def discard_unconnected(mailbox: Mailbox) -> None:
    """Undo `mailboxes.service.create_mailbox` of an OAuth kind whose consent link could not be issued: the
    item is all it wrote (no secrets, no job, no event). A mailbox that left `pending_auth` meanwhile is kept."""
    try:
        mailbox.delete(condition=Mailbox.status == "pending_auth")
    except DeleteError:
        logger.info("unconnected mailbox not discarded (it changed)", extra={"mailbox_id": mailbox.mailbox_id})


ADMIN_CONSENT = "admin_consent"      # `purpose` of a state issued for the admin-consent round trip
ADMIN_PENDING_REASON = "An administrator of the organisation must approve the app (admin_consent_url)."


def begin_admin_consent(mailbox: Mailbox, *, return_url: str | None = None) -> str:
    """A Microsoft admin-consent URL (`<host>/<tenant>/v2.0/adminconsent?client_id&redirect_uri&state&scope`,
    learn.microsoft.com "Admin consent on the Microsoft identity platform") with its own single-use state; the
    administrator's answer comes back to `GET /v1/oauth/admin-consent`."""
    server, _ = _oauth_app(mailbox)
    flow = get_flow(mailbox.type)
    if not hasattr(flow, "admin_consent_url"):
        raise ConsentUnavailable(f"{mailbox.type} has no admin-consent step")
    state_id, signed = state.new_state()
    url = flow.admin_consent_url(server=server, redirect_uri=admin_consent_redirect_uri(), state=signed)
    state.save(state_id, mailbox.tenant_id, mailbox.mailbox_id, mailbox.type, {"purpose": ADMIN_CONSENT},
               return_url or default_return_url(mailbox.tenant_id))
    return url


def complete_admin_consent(params: dict[str, str]) -> ConsentResult:
    """The administrator's answer (`admin_consent=True&tenant=…&state=…`, or `error=…`): on approval the mailbox
    leaves `needs_admin_consent` for `pending_auth`, and its owner finishes with a fresh authorize link."""
    try:
        pending = state.consume(params.get("state"))
    except state.InvalidState as exc:
        return ConsentResult("invalid_state", str(exc))
    base = dict(tenant_id=pending.tenant_id, mailbox_id=pending.mailbox_id, return_url=pending.return_url)
    if pending.pending.get("purpose") != ADMIN_CONSENT:
        return ConsentResult("invalid_state", "this state was not issued for admin consent", **base)
    try:
        mailbox = Mailbox.get(pending.tenant_id, pending.mailbox_id, consistent_read=True)
    except DoesNotExist:
        return ConsentResult("invalid_state", "the mailbox was deleted", **{**base, "mailbox_id": None})
    try:
        organisation = get_flow(mailbox.type).admin_consent_result(params)
    except ConsentFailed as exc:
        return ConsentResult(exc.outcome, exc.detail, **base)
    if mailbox.status == "needs_admin_consent":
        _set_status(mailbox, "pending_auth", None)
    logger.info("admin consent recorded", extra={"mailbox_id": mailbox.mailbox_id, "organisation": organisation})
    return ConsentResult("admin_consented", "The administrator approved the app; connect the mailbox with a new "
                                            "authorize link.", **base)


def _set_status(mailbox: Mailbox, status: str, reason: str | None, extra: list | None = None) -> None:
    previous = mailbox.status
    actions = [Mailbox.status.set(status), Mailbox.updated_at.set(now_iso()),
               Mailbox.status_reason.set(reason) if reason else Mailbox.status_reason.remove()]
    mailbox.update(actions=actions + (extra or []), condition=Mailbox.mailbox_id.exists())
    if previous != status:
        emit(mailbox.tenant_id, "mailbox.status_changed", {"mailbox_id": mailbox.mailbox_id, "status": status,
                                                           "previous_status": previous, "reason": reason})


def _store_secrets(mailbox: Mailbox, granted: Granted):
    """Replace the mailbox's secrets (conditional on the version read; a concurrent writer → read again).
    Reads the whole item: `CredentialStore.load()` projects only the secret attributes, which a mailbox that
    never had secrets lacks."""
    store = CredentialStore(mailbox.tenant_id, mailbox.mailbox_id)
    for _ in range(3):
        item = Mailbox.get(mailbox.tenant_id, mailbox.mailbox_id, consistent_read=True)
        version = int(item.secret_version or 0)
        try:
            return store.save({**granted.secrets}, version)
        except CredentialConflict:
            continue
    raise CredentialConflict(mailbox.mailbox_id)


def _start_push(mailbox: Mailbox, credentials) -> None:
    try:
        provider = provider_for(mailbox, credentials)
        if not isinstance(provider, PushSubscriber) or not provider.push_configured():
            return
        with provider:
            pushed = provider.start_push()
        push.save_state(mailbox, pushed)    # state, push_key for the push endpoints, secrets sealed
    except ProviderError as exc:
        logger.info("push start failed", extra={"mailbox_id": mailbox.mailbox_id, "code": exc.code.value})
        mailbox.update(actions=[Mailbox.push_error.set({"code": exc.code.value, "detail": exc.detail[:300],
                                                        "at": now_iso()})], condition=Mailbox.mailbox_id.exists())


def complete_consent(params: dict[str, str]) -> ConsentResult:
    """Handle the provider's redirect back (`state`, `code` or `error`); never raises for a bad callback."""
    try:
        pending = state.consume(params.get("state"))
    except state.InvalidState as exc:
        return ConsentResult("invalid_state", str(exc))
    base = dict(tenant_id=pending.tenant_id, mailbox_id=pending.mailbox_id, return_url=pending.return_url)
    try:
        mailbox = Mailbox.get(pending.tenant_id, pending.mailbox_id, consistent_read=True)
    except DoesNotExist:
        return ConsentResult("invalid_state", "the mailbox was deleted", **{**base, "mailbox_id": None})
    if mailbox.type != pending.kind:
        return ConsentResult("invalid_state", "the mailbox changed type", **base)
    try:
        server, client_secret = _oauth_app(mailbox)
        flow = get_flow(mailbox.type)
        granted = flow.complete(mailbox=mailbox, server=server, client_secret=client_secret,
                                redirect_uri=redirect_uri(), pending=pending.pending, params=params)
    except ConsentUnavailable as exc:
        return ConsentResult("exchange_failed", str(exc), **base)
    except ConsentFailed as exc:
        logger.info("consent failed", extra={"mailbox_id": mailbox.mailbox_id, "outcome": exc.outcome})
        if exc.outcome == "needs_admin_consent":
            _set_status(mailbox, "needs_admin_consent", ADMIN_PENDING_REASON)
        return ConsentResult(exc.outcome, exc.detail, **base)
    try:
        credentials = _store_secrets(mailbox, granted)
        if granted.access_token is not None:        # the push start below uses it: no refresh minutes after
            remember_granted_token(mailbox.tenant_id, mailbox.mailbox_id, credentials, granted.access_token)
        push_key = getattr(flow, "push_key", None)
        extra = [Mailbox.push_key.set(push_key(mailbox))] if callable(push_key) else []
        _set_status(mailbox, "active", None, extra)
        mailbox.refresh(consistent_read=True)
    except (CredentialConflict, PynamoDBException, DoesNotExist):
        logger.exception("storing the grant failed", extra={"mailbox_id": mailbox.mailbox_id})
        return ConsentResult("exchange_failed", "the grant could not be stored; try again", **base)
    _start_push(mailbox, credentials)
    try:
        enqueue_sync(mailbox.tenant_id, mailbox.mailbox_id, reason="connected")
    except Exception:  # noqa: BLE001 - the scheduler picks the active mailbox up at the next :00/:30
        logger.exception("first sync enqueue failed", extra={"mailbox_id": mailbox.mailbox_id})
    return ConsentResult("connected", "The mailbox is connected; its first import is queued.", **base)
