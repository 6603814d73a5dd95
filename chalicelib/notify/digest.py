"""Email digests of user notifications through the tenant's SMTP relay, at most one per user per interval.

Relay: host/port/security (`tls` = implicit TLS RFC 8314, `starttls` RFC 3207, `none` only where plain-text
mail transport is allowed, i.e. the local stage), optional login, From address and `digest_minutes`
(default 15). The host is vetted by the SSRF guard when saved and again before each digest, and the
connection dials the vetted address with TLS verified against the host name (`providers/imap/smtp.py`).

Batching: an email notification calls `schedule()`, which sets the user's `digest_due_at` =
max(now, last_digest_at + interval) only if none is set (a conditional update) and then queues one
`notify.digest` message due then — so a burst of events yields one message and one email. `on_message()`
sends every notification waiting in `by_digest` as one message, stamps `last_digest_at` and clears the due
time; a message arriving early re-sends itself for the rest of the wait (SQS delays are ≤ 900 s).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from pynamodb.exceptions import DoesNotExist, UpdateError

from chalicelib.config import get_settings
from chalicelib.logs import logger
from chalicelib.models.notification import Notification, NotificationRelay, NotificationSettings
from chalicelib.notify import queue
from chalicelib.providers.base import ConnectionSettings, ProviderError
from chalicelib.providers.imap.client import default_ssl_context
from chalicelib.providers.imap.smtp import SmtpSession
from chalicelib.security.crypto import decrypt_secrets, encrypt_secrets
from chalicelib.security.ssrf import UnreachableHost, resolve_and_vet
from chalicelib.timeutil import now_iso

MESSAGE_KIND = "notify.digest"
SECRET_OWNER = "notification-relay"
SMTP_TIMEOUT_SECONDS = 20
RETRY_SECONDS = 300
MAX_ITEMS = 200

clock = time.time  # injectable (tests simulate time)


class RelayRefused(ValueError):
    """The relay's host or transport is not allowed (`str()` is safe to show; `field` names the input)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class RelayInput:
    host: str
    port: int
    security: str
    from_address: str
    username: str | None = None
    password: str | None = None
    digest_minutes: int = 15


# --- relay --------------------------------------------------------------------------------------------------
def get_relay(tenant_id: str) -> NotificationRelay | None:
    try:
        return NotificationRelay.get(tenant_id)
    except DoesNotExist:
        return None


def put_relay(tenant_id: str, data: RelayInput) -> NotificationRelay:
    if data.security == "none" and not get_settings().allow_insecure_mail_transport:
        raise RelayRefused("security", "plain-text transport ('none') is not allowed here; use 'tls' or 'starttls'")
    try:
        resolve_and_vet(data.host, data.port)
    except UnreachableHost as exc:
        logger.warning("relay host refused", extra={"reason": exc.reason})
        raise RelayRefused("host", str(exc)) from None
    existing = get_relay(tenant_id)
    if data.password is not None:
        ciphertext = encrypt_secrets(tenant_id, SECRET_OWNER, {"password": data.password})
    else:
        ciphertext = existing.secret_ciphertext if existing else None
    now = now_iso()
    relay = NotificationRelay(tenant_id, host=data.host, port=data.port, security=data.security,
                              username=data.username, secret_ciphertext=ciphertext, from_address=data.from_address,
                              digest_minutes=data.digest_minutes, created_at=existing.created_at if existing else now,
                              updated_at=now)
    relay.save()
    return relay


def delete_relay(tenant_id: str) -> bool:
    relay = get_relay(tenant_id)
    if relay is None:
        return False
    relay.delete()
    return True


def interval_seconds(tenant_id: str) -> int:
    relay = get_relay(tenant_id)
    return int(relay.digest_minutes if relay else 15) * 60


# --- scheduling ---------------------------------------------------------------------------------------------
def schedule(tenant_id: str, user_id: str, now: float | None = None,
             settings: NotificationSettings | None = None) -> bool:
    """Make sure one digest is due for the user; True when this call scheduled it. `settings`: the user's
    item when the caller has just read it (the conditional update decides either way)."""
    now = clock() if now is None else now
    settings = settings or NotificationSettings.get(tenant_id, user_id)
    if settings.digest_due_at is not None:
        return False
    due = max(now, (settings.last_digest_at or 0) + interval_seconds(tenant_id))
    try:
        settings.update(actions=[NotificationSettings.digest_due_at.set(int(due))],
                        condition=NotificationSettings.digest_due_at.does_not_exist())
    except UpdateError as exc:
        if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
            return False
        raise
    queue.send({"kind": MESSAGE_KIND, "tenant_id": tenant_id, "user_id": user_id}, due - now)
    return True


def on_message(body: dict[str, Any], now: float | None = None) -> str:
    now = clock() if now is None else now
    tenant_id, user_id = str(body["tenant_id"]), str(body["user_id"])
    try:
        settings = NotificationSettings.get(tenant_id, user_id)
    except DoesNotExist:
        return "stale"
    if settings.digest_due_at is None:
        return "stale"
    if settings.digest_due_at > now:
        queue.send(body, settings.digest_due_at - now)
        return "deferred"
    return send_digest(settings, body, now)


def send_digest(settings: NotificationSettings, body: dict[str, Any], now: float) -> str:
    key = f"{settings.tenant_id}#{settings.user_id}"
    items = list(Notification.by_digest.query(key, limit=MAX_ITEMS))
    relay = get_relay(settings.tenant_id)
    if items and (relay is None or not settings.email):
        logger.warning("digest not sent: no relay or no address", extra={"tenant_id": settings.tenant_id})
        items = []  # they stay waiting; the next email notification schedules again
    if items:
        try:
            _submit(relay, settings.email, items)
        except (ProviderError, UnreachableHost) as exc:
            logger.warning("digest send failed; retrying", extra={"tenant_id": settings.tenant_id,
                                                                   "error": type(exc).__name__})
            queue.send(body, RETRY_SECONDS)
            return "retry"
        stamp = now_iso()
        for item in items:
            item.update(actions=[Notification.digest_key.remove(), Notification.emailed_at.set(stamp)])
    actions = [NotificationSettings.digest_due_at.remove()]
    if items:
        actions.append(NotificationSettings.last_digest_at.set(int(now)))
    settings.update(actions=actions)
    return "sent" if items else "empty"


def render(items: list[Notification], *, sender: str, recipient: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = f"mailbridge: {len(items)} new notification{'s' if len(items) != 1 else ''}"
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1])
    lines = []
    for item in sorted(items, key=lambda n: n.notification_id):
        details = ", ".join(f"{k}: {v}" for k, v in sorted((item.data or {}).items()) if not isinstance(v, dict))
        lines.append(f"- {item.created_at}  {item.title}" + (f" ({details})" if details else ""))
    message.set_content("Your notifications since the last digest:\n\n" + "\n".join(lines) + "\n")
    return message


def _submit(relay: NotificationRelay, recipient: str, items: list[Notification]) -> None:
    address = resolve_and_vet(relay.host, int(relay.port))
    password = decrypt_secrets(relay.tenant_id, SECRET_OWNER, relay.secret_ciphertext).get("password", "")
    connection = ConnectionSettings(host=relay.host, port=int(relay.port), security=relay.security,
                                    username=relay.username or "", address=address)
    session = SmtpSession(connection, password, ehlo_name=relay.from_address.rsplit("@", 1)[-1],
                          timeout=SMTP_TIMEOUT_SECONDS, ssl_context=default_ssl_context())
    raw = render(items, sender=relay.from_address, recipient=recipient).as_bytes()
    session.send(raw, sender=relay.from_address, recipients=[recipient])
