"""`mailbox.credentials_expiring`: warn before a known credential expiry lapses (run by the hourly renewer).

What the data supports: the OAuth application's client secret of a gmail/outlook mail server, whose expiry
the tenant records with the secret (`oauth.client_secret_expires_at`; Microsoft Entra client secrets expire
after at most 24 months, learn.microsoft.com/entra/identity-platform/how-to-add-credentials). When that date is
less than `WARN_WITHIN` away (or passed), each active mailbox using the server gets ONE event per expiry date
(stable event id over mailbox + credential + date), which reaches the tenant's webhook and — through the
user-notification path — the mailbox's users ("mailbox needs attention"). Setting a new secret and date
starts a new warning cycle. Refresh tokens carry no expiry the service can read (Google and Microsoft
revoke them on their own terms), so they surface as `auth_error` when refused, not here.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from chalicelib.models.mailbox import Mailbox, MailServer
from chalicelib.notify.events import emit, stable_event_id

WARN_WITHIN = timedelta(days=14)
EVENT_TYPE = "mailbox.credentials_expiring"


def _server(mailbox: Mailbox, cache: dict) -> MailServer | None:
    if not mailbox.mail_server_id:
        return None
    key = (mailbox.tenant_id, mailbox.mail_server_id)
    if key not in cache:
        try:
            cache[key] = MailServer.get(*key)
        except MailServer.DoesNotExist:
            cache[key] = None
    return cache[key]


def check(mailbox: Mailbox, *, today: date | None = None, cache: dict | None = None) -> bool:
    """Emit the warning for `mailbox` when its OAuth app's client secret expires soon; True when emitted
    (or already emitted: the stable id keeps it one event)."""
    server = _server(mailbox, {} if cache is None else cache)
    expires = ((server.oauth or {}).get("client_secret_expires_at") if server and server.oauth else None)
    if not expires:
        return False
    try:
        expiry = date.fromisoformat(str(expires)[:10])
    except ValueError:
        return False
    today = today or datetime.now(timezone.utc).date()
    if expiry - today > WARN_WITHIN:
        return False
    subject = f"{mailbox.mailbox_id}#client_secret#{expiry.isoformat()}"
    emit(mailbox.tenant_id, EVENT_TYPE,
         {"mailbox_id": mailbox.mailbox_id, "mail_server_id": server.server_id, "credential": "client_secret",
          "expires_at": expiry.isoformat(), "days_left": (expiry - today).days},
         event_id=stable_event_id(mailbox.tenant_id, EVENT_TYPE, subject))
    return True
