"""Email digests of user notifications: the tenant's SMTP relay and the scheduling, at most one digest per user
per interval. Sending a due digest is `digest_mail.py` (the notifier's; the API never loads an SMTP client).

Relay: host/port/security (`tls` = implicit TLS RFC 8314, `starttls` RFC 3207, `none` only where plain-text
mail transport is allowed, i.e. the local stage), optional login, From address and `digest_minutes`
(default 15). The host is vetted by the SSRF guard when saved and again before each digest, and the
connection dials the vetted address with TLS verified against the host name (`providers/imap/smtp.py`).

Batching: an email notification calls `schedule()`, which sets the user's `digest_due_at` =
max(now, last_digest_at + interval) only if none is set (a conditional update) and then queues one
`notify.digest` message due then — so a burst of events yields one message and one email. `on_message()`
sends every notification waiting in `by_digest` as one message, stamps `last_digest_at` and clears the due
time; a message arriving early re-sends itself for the rest of the wait (SQS delays are ≤ 900 s) —
`digest_mail.py`.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from pynamodb.exceptions import DoesNotExist, UpdateError

from chalicelib.config import get_settings
from chalicelib.logs import logger
from chalicelib.models.notification import NotificationRelay, NotificationSettings
from chalicelib.notify import queue
from chalicelib.security.crypto import encrypt_secrets
from chalicelib.security.ssrf import UnreachableHost, resolve_and_vet
from chalicelib.timeutil import now_iso

MESSAGE_KIND = "notify.digest"
SECRET_OWNER = "notification-relay"
# A due time this far past has lost its message: the claim (`digest_mail._claim`) moves a due time 5 min on, a
# waiting message re-sends itself in ≤ 900 s hops, so a live one is never an hour behind.
LOST_AFTER_SECONDS = 3600

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
    item when the caller has just read it (the conditional update decides either way).

    The due time stands for a queued `notify.digest` message, so it is never left without one: when the send
    fails the due time is removed again (conditionally) before the error goes up — the caller's record is
    redelivered and schedules again —, and a due time more than `LOST_AFTER_SECONDS` past is presumed to have
    lost its message (dead-lettered after repeated failures, or a crash between the write and the send) and is
    taken over by this call. A message that was only late then finds the digest claimed or already mailed
    (`digest_mail._claim`), so the user still gets one digest."""
    now = clock() if now is None else now
    settings = settings or NotificationSettings.get(tenant_id, user_id)
    previous = settings.digest_due_at
    if previous is not None and previous >= now - LOST_AFTER_SECONDS:
        return False
    due = int(max(now, (settings.last_digest_at or 0) + interval_seconds(tenant_id)))
    condition = (NotificationSettings.digest_due_at.does_not_exist() if previous is None
                 else NotificationSettings.digest_due_at == previous)
    try:
        settings.update(actions=[NotificationSettings.digest_due_at.set(due)], condition=condition)
    except UpdateError as exc:
        if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
            return False
        raise
    if previous is not None:
        logger.warning("digest message presumed lost; scheduled again", extra={"tenant_id": tenant_id})
    try:
        queue.send({"kind": MESSAGE_KIND, "tenant_id": tenant_id, "user_id": user_id}, due - now)
    except Exception:
        with contextlib.suppress(UpdateError):
            NotificationSettings(tenant_id, user_id).update(
                actions=[NotificationSettings.digest_due_at.remove()],
                condition=NotificationSettings.digest_due_at == due)
        raise
    return True
