"""Mailbox lifecycle: create (verified before stored), update (re-verified when the connection changes),
on-demand connection test with status flips, delete, shares.

Invariants:
- A mailbox item is written only after its IMAP/SMTP login succeeded; a failed verification stores nothing.
- Secrets ({"password", "smtp_password"}) live only in `secret_ciphertext`, sealed by KMS with the context
  (tenant_id, mailbox_id); they are never returned, logged or stored elsewhere.
- After creation the item changes only through `update(actions=...)` on named attributes, conditioned on
  the item still existing, so the API and the sync worker never overwrite each other's attributes and an
  update racing a DELETE cannot resurrect a half item.
- `mailbox.status_changed` is emitted on every status transition made here (auth_error ↔ active).
"""
from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from pynamodb.exceptions import DoesNotExist, UpdateError

from chalicelib.tenancy.principal import Principal
from chalicelib.credentials.store import Credentials
from chalicelib.ids import new_id
from chalicelib.logs import logger
from chalicelib.mailboxes import servers, verify
from chalicelib.mailboxes.endpoints import complete_mailbox_endpoint
from chalicelib.mailboxes.errors import (InvalidField, LimitReached, Missing, NotPermitted,
                                        VerificationFailed)
from chalicelib.models.mailbox import Mailbox, MailboxShare, MailServer, owner_key
from chalicelib.models.privacy import RetiredMailbox
from chalicelib.models.tenant import Tenant
from chalicelib.notify.events import emit
from chalicelib.providers.kinds import UnknownKind, get_kind
from chalicelib.security.crypto import SecretDecryptionError, decrypt_secrets, encrypt_secrets
from chalicelib.security.sanitize import sanitize_html
from chalicelib.sync import cursors, push
from chalicelib.sync.enqueue import enqueue_sync
from chalicelib.sync.store import CONTENT_KEYS
from chalicelib.tenancy import limits
from chalicelib.tenancy.plans import get_plan, import_window_days
from chalicelib.timeutil import now_iso, utcnow

CONNECTION_FIELDS = ("imap", "smtp", "mail_server_id", "password", "smtp_password")
FUTURE_SLACK = timedelta(days=1)   # a client east of UTC may already be on tomorrow's date


def check_import_since(tenant: Tenant, value: date | None) -> str:
    """YYYY-MM-DD within the plan's import window (the product default: 7 days back by default; a tenant setting may
    allow more); not in the future. Omitted = the earliest allowed day."""
    window = import_window_days(tenant.plan, tenant.settings)
    today = utcnow().date()
    earliest = today - timedelta(days=window)
    if value is None:
        return earliest.isoformat()
    if value > today + FUTURE_SLACK:
        raise InvalidField("import_since", "must not be in the future")
    if value < earliest:
        raise InvalidField("import_since", f"must be {earliest.isoformat()} or later: this plan imports at most "
                                           f"{window} days back")
    return value.isoformat()


def _ownership(principal: Principal, kind: str, owner_user_id: str | None) -> str | None:
    """The owner user of a new mailbox (None for shared ones)."""
    if kind == "shared":
        if not principal.is_tenant_admin:
            raise NotPermitted("Only the tenant admin (a call without X-User-Id) can create a shared mailbox.")
        if owner_user_id is not None:
            raise InvalidField("owner_user_id", "a shared mailbox has no owner; share it with users instead")
        return None
    if principal.user_id is not None:
        if owner_user_id is not None and owner_user_id != principal.user_id:
            raise NotPermitted("Only the tenant admin can create a personal mailbox for another user.")
        return principal.user_id
    if owner_user_id is None:
        raise InvalidField("owner_user_id", "required for a personal mailbox created without X-User-Id")
    return owner_user_id


def _preset(tenant_id: str, server_id: str | None) -> MailServer | None:
    if server_id is None:
        return None
    server = servers.get_server(tenant_id, server_id)
    if server is None:
        raise InvalidField("mail_server_id", f"no mail server with id {server_id!r}")
    if server.type != "imap":
        raise InvalidField("mail_server_id", f"{server_id!r} is a {server.type} server, not an IMAP/SMTP preset")
    return server


def _signature(value: str | None) -> str | None:
    return sanitize_html(value) if value else None


def _verify_or_raise(tenant_id: str, mailbox_id: str, email: str, imap: dict, smtp: dict,
                     secrets: dict[str, str]) -> None:
    outcome = verify.check_connection(tenant_id=tenant_id, mailbox_id=mailbox_id, email=email, imap=imap,
                                      smtp=smtp, secrets=secrets)
    if not outcome.ok:
        raise VerificationFailed(outcome)


def _request_first_sync(mailbox: Mailbox, reason: str) -> None:
    """Best effort: the scheduler picks every active mailbox up at the next :00/:30 anyway."""
    try:
        enqueue_sync(mailbox.tenant_id, mailbox.mailbox_id, reason=reason)
    except Exception:  # noqa: BLE001 - the mailbox is saved; a lost enqueue only delays the first import
        logger.exception("first sync enqueue failed", extra={"mailbox_id": mailbox.mailbox_id})


def _check_mailbox_limit(tenant: Tenant) -> None:
    """The plan's `max_mailboxes` (a strongly consistent COUNT query on the tenant's partition; no items are
    read). Before the login check, so a full tenant gets its answer without a connection; `_save_within_limit`
    asks again where it counts."""
    limit = get_plan(tenant.plan).max_mailboxes
    if Mailbox.count(tenant.tenant_id, consistent_read=True) >= limit:
        raise LimitReached(f"The '{tenant.plan}' plan allows {limit} mailboxes; delete one or change the plan.")


def _save_within_limit(tenant: Tenant, mailbox: Mailbox) -> None:
    """Stores a new mailbox only while the tenant has fewer than its plan's `max_mailboxes` — exactly, also when
    creates race (a COUNT, then a save seconds later after the login check, let two creates that both counted
    99 of 100 both save): the count and the put go through `limits.create_counted` with the tenant's
    `mailbox_version` (of creates racing for the last slot one commits, the others count again and get
    `LimitReached`; a burst that wins every round gives `Contended`, 409)."""
    try:
        limits.create_counted(tenant.tenant_id, mailbox, Mailbox.mailbox_id.does_not_exist(),
                              version=Tenant.mailbox_version, check=lambda: _check_mailbox_limit(tenant),
                              what="mailboxes")
    except DoesNotExist:
        raise NotPermitted("This tenant no longer exists.") from None


def _oauth_server(tenant_id: str, mailbox_type: str, server_id: str | None) -> MailServer:
    """The OAuth app (mail server of the mailbox's type, with client_id and client_secret)."""
    if server_id is None:
        raise InvalidField("mail_server_id", f"required: the {mailbox_type} OAuth app (a mail server of type "
                                             f"{mailbox_type})")
    server = servers.get_server(tenant_id, server_id)
    if server is None:
        raise InvalidField("mail_server_id", f"no mail server with id {server_id!r}")
    if server.type != mailbox_type:
        raise InvalidField("mail_server_id", f"{server_id!r} is a {server.type} server, not a {mailbox_type} OAuth app")
    if not (server.oauth or {}).get("client_id") or not server.secret_ciphertext:
        raise InvalidField("mail_server_id", "the OAuth app needs client_id and client_secret")
    return server


def _create_oauth_mailbox(tenant: Tenant, principal: Principal, data: dict[str, Any]) -> Mailbox:
    """An OAuth kind (gmail, outlook): stored `pending_auth` without secrets; the consent link activates it."""
    for name in ("imap", "smtp", "password", "smtp_password"):
        if data.get(name):
            raise InvalidField(name, f"a {data['type']} mailbox connects through OAuth consent; omit {name}")
    owner = _ownership(principal, data["kind"], data.get("owner_user_id"))
    _check_mailbox_limit(tenant)
    import_since = check_import_since(tenant, data.get("import_since"))
    server = _oauth_server(tenant.tenant_id, data["type"], data.get("mail_server_id"))
    now = now_iso()
    mailbox = Mailbox(
        tenant.tenant_id, new_id("mbx"), name=data["name"], type=data["type"], email=data["email"],
        sender_name=data.get("sender_name"), import_since=import_since, pairing_mode=data["pairing_mode"],
        show_snippet=data["show_snippet"], kind=data["kind"], owner_user_id=owner,
        owner_key=owner_key(tenant.tenant_id, owner) if owner else None,
        signature_html=_signature(data.get("signature_html")), signature_on_replies=data["signature_on_replies"],
        mail_server_id=server.server_id, status="pending_auth", store_keys=CONTENT_KEYS, created_at=now,
        updated_at=now, sync_folders=data.get("sync_folders"))
    _save_within_limit(tenant, mailbox)
    return mailbox


def create_mailbox(tenant: Tenant, principal: Principal, data: dict[str, Any]) -> Mailbox:
    """`data` is the validated request (CreateMailbox.model_dump()). IMAP: verifies the login, then stores.
    OAuth kinds: stored `pending_auth` (the caller issues the consent link)."""
    try:
        kind = get_kind(data["type"])
    except UnknownKind:
        raise InvalidField("type", f"{data['type']} mailboxes are not supported yet") from None
    if kind.oauth:
        return _create_oauth_mailbox(tenant, principal, data)
    owner = _ownership(principal, data["kind"], data.get("owner_user_id"))
    _check_mailbox_limit(tenant)
    import_since = check_import_since(tenant, data.get("import_since"))
    preset = _preset(tenant.tenant_id, data.get("mail_server_id"))
    imap = complete_mailbox_endpoint("imap", preset.imap if preset else None, data.get("imap"),
                                     default_username=data["email"])
    smtp = complete_mailbox_endpoint("smtp", preset.smtp if preset else None, data.get("smtp"),
                                     default_username=imap["username"])
    if not data.get("password"):
        raise InvalidField("password", "required for an imap mailbox")
    secrets = {"password": data["password"]}
    if data.get("smtp_password"):
        secrets["smtp_password"] = data["smtp_password"]

    mailbox_id = new_id("mbx")
    _verify_or_raise(tenant.tenant_id, mailbox_id, data["email"], imap, smtp, secrets)
    now = now_iso()
    mailbox = Mailbox(
        tenant.tenant_id, mailbox_id, name=data["name"], type=data["type"], email=data["email"],
        sender_name=data.get("sender_name"), import_since=import_since, pairing_mode=data["pairing_mode"],
        show_snippet=data["show_snippet"], kind=data["kind"], owner_user_id=owner,
        owner_key=owner_key(tenant.tenant_id, owner) if owner else None,
        signature_html=_signature(data.get("signature_html")), signature_on_replies=data["signature_on_replies"],
        append_sent=data.get("append_sent", True),
        mail_server_id=preset.server_id if preset else None, imap=imap, smtp=smtp,
        secret_ciphertext=encrypt_secrets(tenant.tenant_id, mailbox_id, secrets), status="active",
        store_keys=CONTENT_KEYS, sync_folders=data.get("sync_folders"),
        created_at=now, updated_at=now)
    _save_within_limit(tenant, mailbox)
    _request_first_sync(mailbox, "created")
    return mailbox


def stored_secrets(mailbox: Mailbox) -> dict[str, str]:
    return decrypt_secrets(mailbox.tenant_id, mailbox.mailbox_id, mailbox.secret_ciphertext)


def _status_actions(mailbox: Mailbox, status: str, reason: str | None) -> list:
    return [Mailbox.status.set(status),
            Mailbox.status_reason.set(reason) if reason else Mailbox.status_reason.remove()]


def _emit_status(mailbox: Mailbox, previous: str, reason: str | None) -> None:
    if previous != mailbox.status:
        emit(mailbox.tenant_id, "mailbox.status_changed",
             {"mailbox_id": mailbox.mailbox_id, "status": mailbox.status, "previous_status": previous,
              "reason": reason})


def _apply(mailbox: Mailbox, actions: list, condition=None) -> None:
    cond = Mailbox.mailbox_id.exists()
    if condition is not None:
        cond = cond & condition
    try:
        mailbox.update(actions=actions + [Mailbox.updated_at.set(now_iso())], condition=cond)
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            raise Missing(f"No mailbox with id {mailbox.mailbox_id!r}.") from None
        raise


def update_mailbox(tenant: Tenant, mailbox: Mailbox, changes: dict[str, Any]) -> Mailbox:
    """`changes` holds only the fields sent (UpdateMailbox.model_dump(exclude_unset=True))."""
    actions = []
    for name in ("name", "email", "pairing_mode", "show_snippet", "signature_on_replies", "append_sent"):
        if changes.get(name) is not None:
            actions.append(getattr(Mailbox, name).set(changes[name]))
    if "sender_name" in changes:
        value = changes["sender_name"]
        actions.append(Mailbox.sender_name.set(value) if value else Mailbox.sender_name.remove())
    if "signature_html" in changes:
        value = _signature(changes["signature_html"])
        actions.append(Mailbox.signature_html.set(value) if value else Mailbox.signature_html.remove())
    if changes.get("sync_folders") is not None:    # a folder turned off keeps its cursor and its stored mail
        actions.append(Mailbox.sync_folders.set(list(dict.fromkeys(changes["sync_folders"]))))
    if changes.get("import_since") is not None:
        actions.append(Mailbox.import_since.set(check_import_since(tenant, changes["import_since"])))

    previous_status = mailbox.status
    if get_kind(mailbox.type).oauth:
        reconnect = _oauth_account_changes(mailbox, changes)
        actions += reconnect
    else:
        reconnect = any(changes.get(name) is not None for name in CONNECTION_FIELDS)
        if reconnect:
            actions += _reconnect_actions(mailbox, changes)
    if actions:
        _apply(mailbox, actions)
        mailbox.refresh()
    if reconnect:
        _emit_status(mailbox, previous_status, None)
        if mailbox.status == "active" and previous_status != "active":
            _request_first_sync(mailbox, "reconnected")
    return mailbox


def _oauth_account_changes(mailbox: Mailbox, changes: dict[str, Any]) -> list:
    """Another address or OAuth app for a gmail/outlook mailbox is another grant: the old one is dropped (its
    push registration stopped at the provider), the folders start afresh, and the mailbox waits for consent
    (`pending_auth`; `POST /v1/mailboxes/{id}/authorize` gives the link)."""
    for name in ("imap", "smtp", "password", "smtp_password"):
        if changes.get(name):
            raise InvalidField(name, f"a {mailbox.type} mailbox connects through OAuth consent; omit {name}")
    email = changes.get("email")
    server_id = changes.get("mail_server_id")
    if server_id is not None:
        _oauth_server(mailbox.tenant_id, mailbox.type, server_id)
    if not ((email and email.lower() != mailbox.email.lower())
            or (server_id and server_id != mailbox.mail_server_id)):
        return []
    push.stop(mailbox)
    actions = [Mailbox.status.set("pending_auth"), Mailbox.status_reason.remove(),
               Mailbox.secret_ciphertext.remove(), Mailbox.secret_version.add(1), Mailbox.cursor_epoch.add(1),
               Mailbox.push_state.remove(), Mailbox.push_expires_at.remove(), Mailbox.push_renewed_at.remove(),
               Mailbox.push_key.remove()]
    if server_id:
        actions.append(Mailbox.mail_server_id.set(server_id))
    return actions


def _host_changed(stored: dict | None, new: dict) -> bool:
    return ((stored or {}).get("host") or "").lower() != (new.get("host") or "").lower()


def _account_changed(stored: dict | None, new: dict) -> bool:
    """Another IMAP host or login is another mailbox: UIDs and UIDVALIDITY of the old one mean nothing there."""
    stored = stored or {}
    return _host_changed(stored, new) or (stored.get("username") or "") != (new.get("username") or "")


def _reconnect_actions(mailbox: Mailbox, changes: dict[str, Any]) -> list:
    preset = _preset(mailbox.tenant_id, changes.get("mail_server_id"))
    email = changes.get("email") or mailbox.email
    imap = complete_mailbox_endpoint("imap", mailbox.imap, preset.imap if preset else None, changes.get("imap"),
                                     default_username=email)
    smtp = complete_mailbox_endpoint("smtp", mailbox.smtp, preset.smtp if preset else None, changes.get("smtp"),
                                     default_username=imap["username"])
    try:
        secrets = stored_secrets(mailbox)
    except SecretDecryptionError:
        secrets = {}
    if _host_changed(mailbox.imap, imap) or _host_changed(mailbox.smtp, smtp):
        secrets = {}     # stored passwords are never sent to a server they were not given for
    for name in ("password", "smtp_password"):
        if changes.get(name):
            secrets[name] = changes[name]
    if not secrets.get("password"):
        raise InvalidField("password", "send the password again (the stored one cannot be used, or the server "
                                       "changed)")
    _verify_or_raise(mailbox.tenant_id, mailbox.mailbox_id, email, imap, smtp, secrets)
    actions = [Mailbox.imap.set(imap), Mailbox.smtp.set(smtp),
               Mailbox.secret_ciphertext.set(encrypt_secrets(mailbox.tenant_id, mailbox.mailbox_id, secrets)),
               Mailbox.secret_version.add(1)]
    if _account_changed(mailbox.imap, imap):
        actions.append(Mailbox.cursor_epoch.add(1))   # another account: its folders start afresh (sync/cursors.py)
    if preset is not None:
        actions.append(Mailbox.mail_server_id.set(preset.server_id))
    if mailbox.status in ("active", "auth_error", "pending_auth"):
        actions += _status_actions(mailbox, "active", None)
    return actions


def test_mailbox(mailbox: Mailbox) -> verify.Outcome:
    """Run the live check; flip auth_error → active on success and active → auth_error when the login is
    refused. Unreachable servers change nothing (the sync engine's retry policy owns temporary failures)."""
    try:
        secrets = stored_secrets(mailbox)
    except SecretDecryptionError:
        outcome = verify.Outcome(False, "auth", "The stored credentials cannot be read; set the password again.",
                                 "password")
    else:
        if get_kind(mailbox.type).oauth:        # the stored grant, through the kind's provider
            outcome = verify.check_mailbox(mailbox, Credentials(secrets, int(mailbox.secret_version or 0)))
        else:
            outcome = verify.check_connection(tenant_id=mailbox.tenant_id, mailbox_id=mailbox.mailbox_id,
                                              email=mailbox.email, imap=mailbox.imap, smtp=mailbox.smtp,
                                              secrets=secrets)
    previous = mailbox.status
    target = None
    if outcome.ok and previous == "auth_error":
        target, reason = "active", None
    elif outcome.kind == "auth" and previous == "active":
        target, reason = "auth_error", outcome.detail
    if target is not None:
        try:
            _apply(mailbox, _status_actions(mailbox, target, reason), condition=Mailbox.status == previous)
        except Missing:
            return outcome   # deleted meanwhile, or the worker changed the status first: leave it
        mailbox.refresh()
        _emit_status(mailbox, previous, reason)
        if target == "active":
            _request_first_sync(mailbox, "reconnected")
    return outcome


def delete_mailbox(mailbox: Mailbox) -> None:
    """Stops its push registration at the provider, then removes the mailbox item (with its sealed credentials),
    its sync cursors and its shares. Stored messages stay: no mailbox route reaches them any more, the CRM's
    record tabs keep what was paired, and a `RetiredMailbox` item keeps the mailbox id for erasure and
    retention (written first, so a failure in between leaves no mail they cannot find)."""
    push.stop(mailbox)          # Gmail users.stop / Graph subscription DELETE; failures are logged, not fatal
    RetiredMailbox(mailbox.tenant_id, mailbox.mailbox_id, retired_at=now_iso()).save()
    mailbox.delete()
    cursors.delete_all(mailbox)
    for share in MailboxShare.query(mailbox.mailbox_id):
        share.delete()


def put_share(mailbox: Mailbox, user_id: str, access: str) -> MailboxShare:
    if mailbox.kind == "personal" and user_id == mailbox.owner_user_id:
        raise InvalidField("user_id", "the owner already has full access to this mailbox")
    try:
        created_at = MailboxShare.get(mailbox.mailbox_id, user_id).created_at
    except DoesNotExist:
        created_at = now_iso()
    share = MailboxShare(mailbox.mailbox_id, user_id, tenant_id=mailbox.tenant_id,
                         user_key=owner_key(mailbox.tenant_id, user_id), access=access, created_at=created_at)
    share.save()
    return share


def delete_share(mailbox: Mailbox, user_id: str) -> None:
    try:
        share = MailboxShare.get(mailbox.mailbox_id, user_id)
    except DoesNotExist:
        raise Missing(f"Mailbox {mailbox.mailbox_id!r} is not shared with {user_id!r}.") from None
    share.delete()


def list_shares(mailbox: Mailbox, limit: int, last_key: dict | None) -> tuple[list[MailboxShare], dict | None]:
    """One page of the mailbox's shares (by user id) and the key to continue from (None: the last page)."""
    result = MailboxShare.query(mailbox.mailbox_id, limit=limit, last_evaluated_key=last_key)
    return list(result), result.last_evaluated_key
