"""Gmail push: a Pub/Sub push delivery → a coalesced sync request, without calling Google.

Wire format (cloud.google.com/pubsub/docs/push, developers.google.com/gmail/api/guides/push): a POST with
`{"message": {"data": base64(JSON {"emailAddress", "historyId"}), "messageId", ...}, "subscription"}` and, for an
authenticated push subscription, `Authorization: Bearer <OIDC token>` signed by Google (RS256, keys at
`MAILBRIDGE_GOOGLE_CERTS_URI`). Verification (cloud.google.com/pubsub/docs/authenticate-push-subscriptions):
signature and expiry, `aud` = the audience configured on the subscription (NEVER unchecked), `iss` in
{accounts.google.com, https://accounts.google.com}, `email` = the subscription's service account and
`email_verified`.

Which audience and service account apply is configured per gmail mail server (`push`), so the order is:
decode the notification → find the mailboxes connected with that address (`Mailbox.by_push_key`, one per
tenant that connected it) → verify the token against the audiences those mailboxes' servers configure → keep
only mailboxes whose server names the token's `aud` and `email` (a tenant's subscription cannot wake another
tenant's mailbox) → leave out the mailboxes of tenants that may not sync (suspended: `chalicelib.push`), which are
acknowledged without a job. With no mailbox for the address the token is verified against the default audience
(`<public base URL>/v1/push/gmail`) and the push is acknowledged. A historyId not newer than the one the
mailbox's cursors already reached is acknowledged without a sync.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from pynamodb.exceptions import DoesNotExist

from chalicelib.config import get_settings
from chalicelib.logs import logger
from chalicelib.models.mailbox import Mailbox, MailServer
from chalicelib.push import gmail_push_key, tenant_may_sync
from chalicelib.push.certs import CachedCertsRequest, CertsUnavailable
from chalicelib.sync import cursors
from chalicelib.sync.enqueue import request_sync

ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
CLOCK_SKEW_SECONDS = 10
_CERTS = CachedCertsRequest()


class PushRejected(Exception):
    """The push is not authentic: `status` 401 (no/invalid/expired token) or 403 (valid token, wrong party)."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


class BadNotification(ValueError):
    """`message.data` is not a Gmail notification."""


@dataclass(frozen=True)
class Notification:
    email: str
    history_id: int


@dataclass
class PushOutcome:
    queued: list[str] = field(default_factory=list)
    coalesced: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    suspended: list[str] = field(default_factory=list)     # verified, but the tenant may not sync: no job


def decode_notification(data: str) -> Notification:
    """`{"emailAddress": "...", "historyId": 1234}` (historyId is a number or a decimal string)."""
    try:
        padded = data.replace("+", "-").replace("/", "_") + "=" * (-len(data) % 4)   # either base64 alphabet
        payload = json.loads(base64.urlsafe_b64decode(padded))
        email, history_id = str(payload["emailAddress"]), int(str(payload["historyId"]))
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise BadNotification("message.data is not a Gmail notification") from None
    if "@" not in email or history_id <= 0:
        raise BadNotification("message.data is not a Gmail notification")
    return Notification(email.lower(), history_id)


def _candidates(email: str) -> list[tuple[Mailbox, dict]]:
    """(mailbox, its server's push config) for every active gmail mailbox connected with `email`."""
    found = []
    for key in Mailbox.by_push_key.query(gmail_push_key(email)):
        try:
            mailbox = Mailbox.get(key.tenant_id, key.mailbox_id)
        except DoesNotExist:
            continue
        if mailbox.type != "gmail" or mailbox.status != "active" or not mailbox.mail_server_id:
            continue
        try:
            server = MailServer.get(mailbox.tenant_id, mailbox.mail_server_id)
        except DoesNotExist:
            continue
        push = server.push or {}
        if push.get("audience") and push.get("service_account"):
            found.append((mailbox, push))
    return found


def default_audience() -> str:
    return get_settings().public_url("/v1/push/gmail")


def verify(authorization: str | None, audiences: list[str]) -> dict[str, Any]:
    """The verified claims of the push's OIDC token; PushRejected otherwise."""
    # google-auth (~90 modules) loads on the first push, not with the API's blueprints on every cold start
    # (tests/unit/test_cold_start_imports.py).
    from google.auth import exceptions as auth_exceptions
    from google.oauth2 import id_token
    if not audiences:
        raise ValueError("an audience is required")      # never verify_token(audience=None)
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise PushRejected(401, "missing bearer token")
    certs_uri = get_settings().google_certs_uri
    for attempt in range(2):
        try:
            claims = id_token.verify_token(token.strip(), _CERTS, audience=audiences, certs_url=certs_uri,
                                           clock_skew_in_seconds=CLOCK_SKEW_SECONDS)
            break
        except (auth_exceptions.TransportError, CertsUnavailable):
            raise PushRejected(401, "token keys unavailable") from None
        except (auth_exceptions.GoogleAuthError, ValueError) as exc:
            text = str(exc)
            if "key id" in text and attempt == 0 and _CERTS.forget_if_older(certs_uri):
                continue                              # keys rotated since they were cached
            if "audience" in text:
                raise PushRejected(403, "token audience is not configured") from None
            raise PushRejected(401, "invalid or expired token") from None
        except Exception:  # noqa: BLE001 - whatever a malformed token trips in the decoder, it is not authentic
            raise PushRejected(401, "invalid token") from None
    if claims.get("iss") not in ISSUERS:
        raise PushRejected(403, "token issuer is not Google")
    if claims.get("email_verified") is not True:
        raise PushRejected(403, "token email is not verified")
    return claims


def stored_history_id(mailbox: Mailbox) -> int | None:
    """The lowest historyId the mailbox's gmail cursors reached (None before the first sync)."""
    ids = []
    for folder_state in cursors.load_all(mailbox).values():
        cursor = str(folder_state.cursor or "")
        parts = cursor.split(":")
        if len(parts) >= 2 and parts[1].isdigit():
            ids.append(int(parts[1]))
    return min(ids) if ids else None


def handle_push(authorization: str | None, data: str) -> PushOutcome:
    """Verify and route one push; raises PushRejected / BadNotification. Never calls Google's API."""
    notification = decode_notification(data)
    candidates = _candidates(notification.email)
    audiences = sorted({push["audience"] for _, push in candidates}) or [default_audience()]
    claims = verify(authorization, audiences)
    matched = [mailbox for mailbox, push in candidates
               if push["audience"] == claims.get("aud") and push["service_account"] == claims.get("email")]
    if candidates and not matched:
        raise PushRejected(403, "token is not from the configured service account")
    outcome = PushOutcome()
    for mailbox in matched:
        if not tenant_may_sync(mailbox.tenant_id):
            outcome.suspended.append(mailbox.mailbox_id)
            continue
        stored = stored_history_id(mailbox)
        if stored is not None and notification.history_id <= stored:
            outcome.stale.append(mailbox.mailbox_id)
            continue
        result = request_sync(mailbox.tenant_id, mailbox.mailbox_id, "push")
        (outcome.queued if result == "queued" else outcome.coalesced).append(mailbox.mailbox_id)
    logger.info("gmail push", extra={"queued": len(outcome.queued), "coalesced": len(outcome.coalesced),
                                     "stale": len(outcome.stale), "suspended": len(outcome.suspended)})
    return outcome
