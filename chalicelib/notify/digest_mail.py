"""Sends a due email digest (the notifier's side of `digest.py`): the user's waiting notifications as one message
through the tenant's SMTP relay, then `last_digest_at` stamped and the due time cleared.

A `notify.digest` queue message that arrives before the due time re-sends itself for the rest of the wait (SQS
delays are at most 900 s: "Amazon SQS delay queues", SQS Developer Guide). The relay's host is vetted by the SSRF
guard again before each digest and dialled at the vetted address, TLS verified against the host name
(`providers/imap/smtp.py`). A relay that fails leaves every notification waiting and the message is retried after
`RETRY_SECONDS`: nothing is stamped as mailed before the relay accepted it. A due digest is claimed first
(`_claim`, a conditional update), so a message delivered twice at once mails it once.
"""
from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from pynamodb.exceptions import DoesNotExist, UpdateError

from chalicelib.logs import logger
from chalicelib.models.notification import Notification, NotificationRelay, NotificationSettings
from chalicelib.notify import digest, queue
from chalicelib.providers.base import ConnectionSettings, ProviderError
from chalicelib.providers.imap.client import default_ssl_context
from chalicelib.providers.imap.smtp import SmtpSession
from chalicelib.security.crypto import decrypt_secrets
from chalicelib.security.ssrf import UnreachableHost, resolve_and_vet
from chalicelib.timeutil import now_iso

SMTP_TIMEOUT_SECONDS = 20
RETRY_SECONDS = 300
MAX_ITEMS = 200


def on_message(body: dict[str, Any], now: float | None = None) -> str:
    now = digest.clock() if now is None else now
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
    if not _claim(settings, now):
        return "taken"
    return send_digest(settings, body, now)


def _claim(settings: NotificationSettings, now: float) -> bool:
    """Take a due digest: its due time moves `RETRY_SECONDS` ahead, conditional on the value read, so a second
    consumer of the same message (SQS delivers at least once) finds it not due and only re-queues itself. A
    consumer that dies after the claim leaves it due again then (the message's redelivery sends it)."""
    try:
        settings.update(actions=[NotificationSettings.digest_due_at.set(int(now + RETRY_SECONDS))],
                        condition=NotificationSettings.digest_due_at == settings.digest_due_at)
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


def send_digest(settings: NotificationSettings, body: dict[str, Any], now: float) -> str:
    key = f"{settings.tenant_id}#{settings.user_id}"
    items = list(Notification.by_digest.query(key, limit=MAX_ITEMS))
    relay = digest.get_relay(settings.tenant_id)
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
    if items and next(iter(Notification.by_digest.query(key, limit=1)), None) is not None:
        # still waiting: arrived while this digest was mailed (its scheduling saw the due time set and did
        # nothing), or beyond MAX_ITEMS — the next digest, one interval on
        digest.schedule(settings.tenant_id, settings.user_id, now, settings=settings)
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
    password = decrypt_secrets(relay.tenant_id, digest.SECRET_OWNER, relay.secret_ciphertext).get("password", "")
    connection = ConnectionSettings(host=relay.host, port=int(relay.port), security=relay.security,
                                    username=relay.username or "", address=address)
    session = SmtpSession(connection, password, ehlo_name=relay.from_address.rsplit("@", 1)[-1],
                          timeout=SMTP_TIMEOUT_SECONDS, ssl_context=default_ssl_context())
    raw = render(items, sender=relay.from_address, recipient=recipient).as_bytes()
    session.send(raw, sender=relay.from_address, recipients=[recipient])
