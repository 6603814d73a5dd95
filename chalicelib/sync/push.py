"""Push registrations kept alive by the renewer (Gmail `users.watch`, Graph subscriptions).

For each active mailbox whose provider implements `PushSubscriber` and whose settings configure push
(`push_configured`: a gmail mail server may have no `push`; such a mailbox syncs on schedule only):
- no registration yet → `start_push()`;
- registration made `RENEW_EVERY` ago or more, or expiring within `RENEW_WITHIN` → `renew_push(state)`: a
  daily renewal, as Google recommends for watches, which last 7 days
  (developers.google.com/gmail/api/guides/push, "Renewing mailbox watch"); Graph mail subscriptions last at
  most 4,230 minutes (learn.microsoft.com/graph/api/resources/subscription), so a daily renewal keeps about
  two days in hand and the hourly runs of the last day are retries;
- otherwise nothing (no provider call).
The new `PushState` is stored on the mailbox (`push_state`, `push_expires_at`, `push_renewed_at`); its secrets
(a Graph `clientState`) join the mailbox's credentials through the credential store. A failure is recorded in
`push_error` (visible in sync status) and, when the registration is missing or will lapse within a day,
`mailbox.push_expiring` is emitted once per expiry (stable event id). Sync still runs on the :00/:30 schedule.

Lifecycle events (Graph's `reauthorizationRequired` and `subscriptionRemoved`,
learn.microsoft.com/graph/change-notifications-lifecycle-events) are settled here too, never inside the webhook:
the push endpoint verifies the notification, records the event on the mailbox (`push_lifecycle`, `owe`) and
requests a sync; the worker settles it before that sync (`settle`: reauthorize, falling back to a renewal; or
subscribe again after removing what is left), and the renewer settles any still owed — one whose job was lost
(`SETTLE_AFTER`), or whose settling failed (`failed_at`: the worker then leaves it to the renewer's hourly retry
instead of calling the provider at every sync). The record is removed only if unchanged since it was read, so
an event that arrives while another is settled is settled next.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Callable

from pynamodb.exceptions import UpdateError

from chalicelib.credentials.store import CredentialConflict, CredentialStore
from chalicelib.logs import logger
from chalicelib.models.mailbox import Mailbox
from chalicelib.notify.events import emit, stable_event_id
from chalicelib.providers.base import MailProvider, ProviderError, PushState, PushSubscriber
from chalicelib.providers.kinds import UnknownKind, build_provider, get_kind
from chalicelib.sync.enqueue import request_sync
from chalicelib.timeutil import now_iso, parse_iso, utcnow

RENEW_WITHIN = timedelta(hours=24)
# A little under a day, so that the hourly renewer renews once a day rather than every 25 hours.
RENEW_EVERY = timedelta(hours=23)


def current_state(mailbox: Mailbox) -> PushState | None:
    if not mailbox.push_state or not mailbox.push_expires_at:
        return None
    return PushState(expires_at=mailbox.push_expires_at, resource=dict(mailbox.push_state))


def _store_secrets(mailbox: Mailbox, secrets: dict) -> None:
    store = CredentialStore(mailbox.tenant_id, mailbox.mailbox_id)
    for _ in range(3):
        credentials = store.load()
        try:
            store.save({**credentials.secrets, **secrets}, credentials.version)
            return
        except CredentialConflict:
            continue
    raise RuntimeError("credentials kept changing while storing the push secret")


def save_state(mailbox: Mailbox, state: PushState) -> None:
    if state.secrets:
        _store_secrets(mailbox, state.secrets)
    actions = [Mailbox.push_state.set(dict(state.resource)), Mailbox.push_expires_at.set(state.expires_at),
               Mailbox.push_renewed_at.set(now_iso()), Mailbox.push_error.remove()]
    if state.resource.get("push_key"):      # what a push names the mailbox by (Graph: hash of the clientState)
        actions.append(Mailbox.push_key.set(state.resource["push_key"]))
    mailbox.update(actions=actions, condition=Mailbox.mailbox_id.exists())


def _warn(mailbox: Mailbox, state: PushState | None, error: ProviderError) -> None:
    expires = state.expires_at if state else None
    mailbox.update(actions=[Mailbox.push_error.set({"code": error.code.value, "detail": error.detail[:500],
                                                    "at": now_iso()})],
                   condition=Mailbox.mailbox_id.exists())
    if expires is None or parse_iso(expires) - utcnow() < RENEW_WITHIN:
        emit(mailbox.tenant_id, "mailbox.push_expiring",
             {"mailbox_id": mailbox.mailbox_id, "push_expires_at": expires, "reason": error.detail[:300]},
             event_id=stable_event_id(mailbox.tenant_id, "mailbox.push_expiring",
                                      f"{mailbox.mailbox_id}#{expires}"))


def renewal_due(mailbox: Mailbox, state: PushState) -> bool:
    """Renewed a day ago or more (or never recorded: registrations made before `push_renewed_at` existed), or
    lapsing within `RENEW_WITHIN`."""
    now = utcnow()
    if parse_iso(state.expires_at) - now <= RENEW_WITHIN:
        return True
    return mailbox.push_renewed_at is None or now - parse_iso(mailbox.push_renewed_at) >= RENEW_EVERY


LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved")
SETTLE_AFTER = timedelta(minutes=10)     # the worker settles an owed event within seconds of its push job


def owe(mailbox: Mailbox, event: str, subscription_id: str) -> None:
    """Record a lifecycle event for the worker or the renewer to settle (see the module docstring)."""
    if event not in LIFECYCLE_EVENTS:
        raise ValueError(f"not a lifecycle event to settle: {event}")
    mailbox.update(actions=[Mailbox.push_lifecycle.set({"event": event, "subscription_id": subscription_id,
                                                         "at": now_iso()})],
                   condition=Mailbox.mailbox_id.exists())


def settle(mailbox: Mailbox, *, provider_factory: Callable[[Mailbox], MailProvider] = build_provider) -> str:
    """Settle the lifecycle event `mailbox.push_lifecycle` records: "reauthorized" | "renewed" | "resubscribed" |
    "n/a" | "failed" (recorded in `push_error`, the record kept with `failed_at`; never raises for a provider
    failure)."""
    owed = dict(mailbox.push_lifecycle or {})
    state = current_state(mailbox)
    try:
        with provider_factory(mailbox) as provider:
            if not isinstance(provider, PushSubscriber) or not provider.push_configured():
                outcome = "n/a"
            elif owed.get("event") == "reauthorizationRequired":
                outcome = _reauthorize(mailbox, provider, state, str(owed.get("subscription_id") or ""))
            else:                                   # subscriptionRemoved: what is left goes, then subscribe again
                if state is not None:
                    provider.stop_push(state)
                save_state(mailbox, provider.start_push())
                outcome = "resubscribed"
    except ProviderError as exc:
        logger.warning("push lifecycle event not settled", extra={"event": owed.get("event"),
                                                                  "code": exc.code.value})
        _warn(mailbox, state, exc)
        _update_owed(mailbox, owed, Mailbox.push_lifecycle.set({**owed, "failed_at": now_iso()}))
        return "failed"
    _update_owed(mailbox, owed, Mailbox.push_lifecycle.remove())
    return outcome


def _reauthorize(mailbox: Mailbox, provider: MailProvider, state: PushState | None, subscription_id: str) -> str:
    """Graph `POST /subscriptions/{id}/reauthorize`; when that fails, a renewal (or a new registration)."""
    reauthorize = getattr(provider, "reauthorize_push", None)
    if reauthorize is not None and subscription_id:
        try:
            reauthorize(subscription_id)
            return "reauthorized"
        except ProviderError:
            pass
    save_state(mailbox, provider.renew_push(state) if state else provider.start_push())
    return "renewed"


def _update_owed(mailbox: Mailbox, owed: dict, action) -> None:
    """Apply `action` to the lifecycle record only while it is still `owed` (a newer event stays owed)."""
    try:
        mailbox.update(actions=[action], condition=Mailbox.push_lifecycle == owed)
    except UpdateError as exc:
        if getattr(exc, "cause_response_code", None) != "ConditionalCheckFailedException":
            raise


def left_to_the_renewer(owed: dict | None) -> bool:
    """An owed lifecycle event the renewer settles: one whose settling failed, or one older than
    `SETTLE_AFTER` (its job was lost). A younger one is its job's, which a concurrent settle would race (two
    `subscriptionRemoved` settles would each subscribe, and one set of subscriptions would be left behind)."""
    if not owed:
        return False
    if owed.get("failed_at"):
        return True
    try:
        return utcnow() - parse_iso(str(owed.get("at"))) >= SETTLE_AFTER
    except (TypeError, ValueError):
        return True


def needs_provider(mailbox: Mailbox) -> bool:
    """Whether `maintain` would call the provider for `mailbox` (an owed lifecycle event left to the renewer, or
    an OAuth kind's registration missing or due); read from the item alone, no call."""
    if left_to_the_renewer(mailbox.push_lifecycle):
        return True
    try:
        if not get_kind(mailbox.type).oauth:
            return False
    except UnknownKind:
        return False
    state = current_state(mailbox)
    return state is None or renewal_due(mailbox, state)


def maintain(mailbox: Mailbox, *, provider_factory: Callable[[Mailbox], MailProvider] = build_provider) -> str:
    """"n/a" | "current" | "started" | "renewed" | "failed" — or, when a lifecycle event is owed, what settling
    it gave (`settle`) — never raises for a provider failure."""
    if left_to_the_renewer(mailbox.push_lifecycle):
        outcome = settle(mailbox, provider_factory=provider_factory)
        if outcome == "resubscribed":           # what arrived while no subscription was there
            request_sync(mailbox.tenant_id, mailbox.mailbox_id, "push")
        return outcome
    try:
        if not get_kind(mailbox.type).oauth:
            return "n/a"
    except UnknownKind:
        return "n/a"
    state = current_state(mailbox)
    if state is not None and not renewal_due(mailbox, state):
        return "current"
    try:
        with provider_factory(mailbox) as provider:
            if not isinstance(provider, PushSubscriber) or not provider.push_configured():
                return "n/a"
            new = provider.start_push() if state is None else provider.renew_push(state)
    except ProviderError as exc:
        logger.warning("push registration failed", extra={"code": exc.code.value, "mailbox_id": mailbox.mailbox_id})
        _warn(mailbox, state, exc)
        return "failed"
    save_state(mailbox, new)
    return "started" if state is None else "renewed"


def stop(mailbox: Mailbox, *, provider_factory: Callable[[Mailbox], MailProvider] = build_provider) -> str:
    """Remove the registration at the provider (mailbox deleted or disconnected); failures are logged, not
    raised. Returns "none" (no registration), "stopped", or "failed: <code>" (a purge reports it)."""
    state = current_state(mailbox)
    if state is None:
        return "none"
    try:
        with provider_factory(mailbox) as provider:
            if isinstance(provider, PushSubscriber):
                provider.stop_push(state)
    except Exception as exc:  # noqa: BLE001 - the registration lapses by itself; deleting must not fail on it
        code = getattr(getattr(exc, "code", None), "value", type(exc).__name__)
        logger.warning("push stop failed", extra={"error": code, "mailbox_id": mailbox.mailbox_id})
        return f"failed: {code}"
    return "stopped"
