"""Delivering outbox items exactly once (the `outbox.send` job on the events queue; the renewer's sweep).

One attempt:
  1. take the item: ONE conditional update queued|scheduled → sending with a fresh `attempt_token`,
     `attempts + 1` and `due_at = now + STALE_AFTER` (so the sweep finds an attempt that died). A duplicate or
     late job fails the condition and does nothing. A job that arrives before `due_at` is re-sent with the
     remaining delay (SQS DelaySeconds ≤ 900).
  2. `provider.send(raw)` with the bytes and Message-ID fixed at acceptance (IMAP: SMTP submission, then
     APPEND of the same bytes to Sent when the mailbox's `append_sent` is on; Gmail `messages.send` with the
     thread id; Graph `sendMail` / reply).
  3. record `sent` (conditional on the attempt token) with the provider's message and thread ids;
  4. store the sent copy (`sync.store.save_sent`, folder "sent", keyed by the Message-ID, so the next sync
     finds it instead of storing it again) and pay what it owes (`sync.effects.complete`: pairing,
     `message.created`); emit `outbox.sent` (stable event id); clear `pending_shard`.
  Steps 3-4 are idempotent, and the item keeps `pending_shard` until 4 is done, so the sweep finishes them.

Before submitting, an item queued through a mailbox share (`via_share`) needs that share still to allow
sending (`may_still_send`); else it is `failed` with `forbidden` and nothing is sent. And the tenant must be
active: nothing goes out on behalf of a suspended (or deleted) tenant — its calls are refused and its mailboxes
not synced, and a send it queued or scheduled before fails with `tenant_suspended` when it comes due (not held:
held mail would go out late and in a burst on reactivation, and a suspended tenant cannot cancel it).

Failures (`ProviderError` codes): TEMPORARY / THROTTLED → back to queued with exponential backoff (30 s × 2^n,
at most 1 h, plus 0-20 % jitter, or the provider's Retry-After), up to MAX_ATTEMPTS; then, or at once for PERMANENT /
AUTH_REVOKED / NEEDS_ADMIN_CONSENT / NOT_FOUND → `failed` with {code, detail} and `outbox.failed`.

The residual window, honestly: an attempt that dies (Lambda timeout, crash) after the provider accepted the
message but before step 3 leaves the item `sending`. It is never resent blindly: when the attempt is stale,
the provider is asked whether Sent holds the Message-ID (IMAP: UID SEARCH HEADER Message-ID in Sent — found
only when the APPEND of step 2 happened or the server files sent mail itself); found → recorded as sent;
otherwise the item ends `failed` with code `unknown_outcome` for a person to check. A failure that may hide
an accepted message (`ProviderError.maybe_sent`: SMTP's connection lost after the final "." before its reply,
RFC 5321 §4.1.1.4; a Gmail or Graph 5xx or a read timeout after the request was sent) takes the same path
after the backoff delay (`_unsure`), instead of a retry that could deliver the message twice.
"""
from __future__ import annotations

import time
from typing import Callable

from pynamodb.exceptions import UpdateError

from chalicelib import aws, ids
from chalicelib.backoff import jittered
from chalicelib.config import get_settings
from chalicelib.logs import logger
from chalicelib.models.mailbox import Mailbox, MailboxShare
from chalicelib.models.outbox import PENDING_SHARD, OutboxItem
from chalicelib.notify.events import emit, stable_event_id
from chalicelib.outbox.service import JOB_KIND, enqueue, get_item
from chalicelib.providers.base import ErrorCode, MailProvider, ProviderError, ThreadHint
from chalicelib.providers.kinds import build_provider
from chalicelib.sync import effects, store
from chalicelib.tenancy.service import get_tenant
from chalicelib.timeutil import now_iso

MAX_ATTEMPTS = 6
BASE_BACKOFF_SECONDS = 30
MAX_BACKOFF_SECONDS = 3600
STALE_AFTER = 900                  # > the notifier Lambda's timeout: a `sending` item older than this died
RECHECK_SECONDS = 300              # Sent could not be searched: ask again after this
CHECK_FOR = 6 * 3600               # ... for this long after the attempt, then `failed` / `unknown_outcome`
RETRIED = (ErrorCode.TEMPORARY, ErrorCode.THROTTLED)
ProviderFactory = Callable[[Mailbox], MailProvider]


def backoff(attempts: int, retry_after: float | None = None) -> float:
    """30 s doubling per attempt up to an hour, plus 0-20 % jitter (`chalicelib.backoff`); never sooner than
    the provider's Retry-After."""
    delay = jittered(min(MAX_BACKOFF_SECONDS, BASE_BACKOFF_SECONDS * 2 ** max(0, attempts - 1)))
    return max(delay, retry_after or 0)


def _error(code: str, detail: str) -> dict:
    return {"code": code, "detail": detail[:500], "at": now_iso()}


def _take(item: OutboxItem, now: float) -> str | None:
    token = ids.new_id("att")
    try:
        item.update(actions=[OutboxItem.status.set("sending"), OutboxItem.attempt_token.set(token),
                             OutboxItem.attempts.add(1), OutboxItem.attempt_started_at.set(int(now)),
                             OutboxItem.due_at.set(int(now) + STALE_AFTER), OutboxItem.updated_at.set(now_iso())],
                    condition=OutboxItem.status.is_in("queued", "scheduled"))
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return None
        raise
    return token


def _mailbox(item: OutboxItem) -> Mailbox | None:
    try:
        return Mailbox.get(item.tenant_id, item.mailbox_id)
    except Mailbox.DoesNotExist:
        return None


def may_still_send(mailbox: Mailbox, user_id: str | None) -> bool:
    """Whether the caller who queued an item through a share (`OutboxItem.via_share`) may still send from
    `mailbox` when it goes out — as the send route asked on acceptance (docs/api.md "Sending mail"): the tenant
    itself (no user), a personal mailbox's owner, or a `read_write` share. A share revoked or lowered to `read`
    while the item waited stops it."""
    if user_id is None or (mailbox.kind == "personal" and mailbox.owner_user_id == user_id):
        return True
    try:
        share = MailboxShare.get(mailbox.mailbox_id, user_id, consistent_read=True)
    except MailboxShare.DoesNotExist:
        return False
    return share.tenant_id == mailbox.tenant_id and share.access in ("read_write", "owner")


def _thread(item: OutboxItem) -> ThreadHint:
    data = dict(item.thread or {})
    return ThreadHint(mode=data.get("mode") or item.mode, in_reply_to=data.get("in_reply_to"),
                      references=tuple(data.get("references") or ()),
                      provider_thread_id=data.get("provider_thread_id"),
                      provider_message_id=data.get("provider_message_id"))


def _raw(item: OutboxItem) -> bytes:
    return aws.s3().get_object(Bucket=get_settings().raw_bucket, Key=item.raw_s3_key)["Body"].read()


def _conditional(item: OutboxItem, actions: list, condition) -> bool:
    try:
        item.update(actions=actions + [OutboxItem.updated_at.set(now_iso())], condition=condition)
        return True
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise


def _fail(item: OutboxItem, error: dict, condition) -> None:
    if _conditional(item, [OutboxItem.status.set("failed"), OutboxItem.last_error.set(error),
                           OutboxItem.pending_shard.remove(), OutboxItem.due_at.remove(),
                           OutboxItem.attempt_token.remove()], condition):
        emit(item.tenant_id, "outbox.failed",
             {"outbox_id": item.outbox_id, "mailbox_id": item.mailbox_id, "error": error},
             event_id=stable_event_id(item.tenant_id, "outbox.failed", item.outbox_id))


def _retry_or_fail(item: OutboxItem, token: str, exc: ProviderError, now: float) -> str:
    error = _error(exc.code.value, exc.detail)
    held = OutboxItem.attempt_token == token
    if exc.code in RETRIED and (item.attempts or 0) < MAX_ATTEMPTS:
        due = int(now + backoff(item.attempts or 1, exc.retry_after))
        if _conditional(item, [OutboxItem.status.set("queued"), OutboxItem.last_error.set(error),
                               OutboxItem.due_at.set(due), OutboxItem.attempt_token.remove()], held):
            item.due_at = due
            enqueue(item, now)
        return "retrying"
    _fail(item, error, held)
    return "failed"


def _unsure(item: OutboxItem, token: str, exc: ProviderError, now: float) -> str:
    """The provider may have accepted the message (`ProviderError.maybe_sent`): it is not submitted again now.
    The item stays `sending`, released by this attempt, and is checked by `recover` after the backoff delay
    (time for the provider to file it in Sent): found → sent; otherwise `failed` with `unknown_outcome` —
    a visible state for a person to check, never a second copy at the recipients. (An absent copy proves
    nothing: over SMTP only our own APPEND, which never happened, would have filed it, and a provider may
    rewrite the Message-ID it is searched by.)"""
    due = int(now + backoff(item.attempts or 1, exc.retry_after))
    if _conditional(item, [OutboxItem.last_error.set(_error(exc.code.value, exc.detail)),
                           OutboxItem.due_at.set(due), OutboxItem.attempt_token.remove()],
                    OutboxItem.attempt_token == token):
        item.due_at = due
        enqueue(item, now)
    return "unsure"


def finish_sent(item: OutboxItem, mailbox: Mailbox, raw: bytes) -> None:
    """Step 4: the stored, paired, announced sent copy and `outbox.sent` (idempotent). An item deleted since
    step 3 (an erasure of a recipient, `erasure.erase`, or a purge) is not written back — an UpdateItem without
    a condition would create it (DynamoDB API Reference, UpdateItem) as a stub with ids only — and nothing is
    announced; the store refuses the copy when it names the erased person (`store.save_sent`)."""
    provider_id = (item.provider_message_id if mailbox.type != "imap" and item.provider_message_id
                   else store.OUTBOX_PROVIDER_PREFIX + item.rfc_message_id)   # IMAP: the UID comes with the sync
    outcome = store.save_sent(mailbox, raw, rfc_message_id=item.rfc_message_id, provider_id=provider_id,
                              thread_id=item.provider_thread_id, attempted_at=item.attempt_started_at)
    if outcome.message.owed:
        effects.complete(outcome.message)
    if not _conditional(item, [OutboxItem.message_id.set(outcome.message.message_id),
                               OutboxItem.pending_shard.remove(), OutboxItem.due_at.remove()],
                        OutboxItem.outbox_id.exists()):
        logger.info("outbox item deleted while it was sent; not announced", extra={"outbox_id": item.outbox_id})
        return
    emit(item.tenant_id, "outbox.sent",
         {"outbox_id": item.outbox_id, "mailbox_id": item.mailbox_id, "message_id": outcome.message.message_id,
          "rfc_message_id": item.rfc_message_id, "provider_message_id": item.provider_message_id,
          "provider_thread_id": item.provider_thread_id},
         event_id=stable_event_id(item.tenant_id, "outbox.sent", item.outbox_id))


def _record_sent(item: OutboxItem, token: str | None, provider_message_id: str | None,
                 thread_id: str | None) -> bool:
    actions = [OutboxItem.status.set("sent"), OutboxItem.sent_at.set(now_iso()), OutboxItem.attempt_token.remove(),
               OutboxItem.last_error.remove(), OutboxItem.due_at.set(int(time.time()) + STALE_AFTER)]
    if provider_message_id:
        actions.append(OutboxItem.provider_message_id.set(provider_message_id))
    if thread_id:
        actions.append(OutboxItem.provider_thread_id.set(thread_id))
    condition = (OutboxItem.attempt_token == token) if token else (OutboxItem.status == "sending")
    if not _conditional(item, actions, condition):
        return False
    item.status, item.provider_message_id = "sent", provider_message_id or item.provider_message_id
    item.provider_thread_id = thread_id or item.provider_thread_id
    return True


def attempt(item: OutboxItem, *, now: float | None = None, provider_factory: ProviderFactory = build_provider) -> str:
    """One delivery attempt of a due queued/scheduled item; returns what happened."""
    now = time.time() if now is None else now
    token = _take(item, now)
    if token is None:
        return "taken"
    item = get_item(item.tenant_id, item.outbox_id) or item
    mailbox = _mailbox(item)
    if mailbox is None or mailbox.status == "disabled":
        _fail(item, _error("permanent", "the mailbox was deleted or disabled"), OutboxItem.attempt_token == token)
        return "failed"
    tenant = get_tenant(item.tenant_id)
    if tenant is None or tenant.status != "active":
        _fail(item, _error("tenant_suspended", "the tenant is suspended; nothing is sent on its behalf (send again "
                                               "once it is active)"), OutboxItem.attempt_token == token)
        return "failed"
    if item.via_share and not may_still_send(mailbox, item.created_by):
        _fail(item, _error("forbidden", "the user who queued it can no longer send from this mailbox (share "
                                        "revoked or lowered to read)"), OutboxItem.attempt_token == token)
        return "failed"
    raw = _raw(item)
    try:
        with provider_factory(mailbox) as provider:
            result = provider.send(raw, sender=item.sender, recipients=list(item.recipients), thread=_thread(item))
            if mailbox.type == "imap" and mailbox.append_sent is not False:
                _append(provider, raw, item)
    except ProviderError as exc:
        logger.warning("outbox attempt failed", extra={"outbox_id": item.outbox_id, "code": exc.code.value,
                                                       "maybe_sent": exc.maybe_sent})
        if exc.maybe_sent:
            return _unsure(item, token, exc, now)
        return _retry_or_fail(item, token, exc, now)
    if not _record_sent(item, token, result.provider_message_id, result.thread_id):
        logger.error("outbox item changed during its attempt", extra={"outbox_id": item.outbox_id})
        return "lost"
    finish_sent(item, mailbox, raw)
    return "sent"


def _append(provider: MailProvider, raw: bytes, item: OutboxItem) -> None:
    """The Sent copy is a convenience: a failure to file it is logged, never a reason to send again."""
    try:
        provider.append_sent_copy(raw)
    except ProviderError as exc:
        logger.warning("sent, but the copy was not appended to Sent",
                       extra={"outbox_id": item.outbox_id, "code": exc.code.value})


def recover(item: OutboxItem, *, now: float | None = None, provider_factory: ProviderFactory = build_provider) -> str:
    """A stale `sending` item (its attempt died) or a `sent` one whose copy was not stored yet."""
    mailbox = _mailbox(item)
    if item.status == "sent":
        if mailbox is not None:
            finish_sent(item, mailbox, _raw(item))
        return "finished"
    if mailbox is None:
        _fail(item, _error("permanent", "the mailbox was deleted"), OutboxItem.status == "sending")
        return "failed"
    try:
        with provider_factory(mailbox) as provider:
            found = provider.has_sent_copy(item.rfc_message_id)
    except ProviderError as exc:
        logger.warning("cannot check Sent for a stale attempt", extra={"outbox_id": item.outbox_id,
                                                                      "code": exc.code.value})
        return _unchecked(item, exc, time.time() if now is None else now)
    if found:
        if _record_sent(item, None, None, None):
            finish_sent(item, mailbox, _raw(item))
        return "sent"
    _fail(item, _error("unknown_outcome", "the delivery attempt stopped while submitting; the message was not "
                                          "found in Sent and is not resent automatically — check and send again"),
          OutboxItem.status == "sending")
    return "failed"


def _unchecked(item: OutboxItem, exc: ProviderError, now: float) -> str:
    """Sent could not be searched: asked again after `RECHECK_SECONDS` (its own job, not only the hourly sweep)
    while the failure is temporary and the attempt is younger than `CHECK_FOR`; otherwise `failed` with
    `unknown_outcome` — an item never stays `sending` for good."""
    if exc.code in RETRIED and now - (item.attempt_started_at or 0) < CHECK_FOR:
        due = int(now + max(RECHECK_SECONDS, exc.retry_after or 0))
        if _conditional(item, [OutboxItem.due_at.set(due)], OutboxItem.status == "sending"):
            item.due_at = due
            enqueue(item, now)
        return "unchecked"
    _fail(item, _error("unknown_outcome", "the delivery attempt stopped while submitting and Sent could not be "
                                          f"searched ({exc.detail}); not resent automatically — check and send "
                                          "again"), OutboxItem.status == "sending")
    return "failed"


def on_message(body: dict, *, now: float | None = None, provider_factory: ProviderFactory = build_provider) -> str:
    """An `outbox.send` job: attempt when due, re-enqueue when early, recover when the item is stale."""
    now = time.time() if now is None else now
    item = get_item(str(body["tenant_id"]), str(body["outbox_id"]))
    if item is None:
        return "missing"
    return _handle(item, now, provider_factory)


def _handle(item: OutboxItem, now: float, provider_factory: ProviderFactory) -> str:
    if item.status in ("queued", "scheduled"):
        if (item.due_at or 0) > now + 1:
            enqueue(item, now)
            return "early"
        return attempt(item, now=now, provider_factory=provider_factory)
    if item.pending_shard and (item.due_at or 0) <= now and item.status in ("sending", "sent"):
        return recover(item, now=now, provider_factory=provider_factory)
    return "done"


def sweep(now: float | None = None, *, provider_factory: ProviderFactory = build_provider,
          limit: int = 200, has_time: Callable[[], bool] = lambda: True) -> int:
    """The renewer's safety net: every pending item whose due time passed (a lost job, a dead attempt, an
    unfinished sent copy) is handled now — up to `limit`, while `has_time()` (the renewer's share of its
    Lambda timeout); the rest is the next run's. Returns how many were handled."""
    now = time.time() if now is None else now
    handled = 0
    for key in OutboxItem.by_pending.query(PENDING_SHARD, OutboxItem.due_at <= int(now), limit=limit):
        if not has_time():
            break
        item = get_item(key.tenant_id, key.outbox_id)
        if item is None:
            continue
        try:
            _handle(item, now, provider_factory)
            handled += 1
        except Exception:  # noqa: BLE001 - one item's failure must not stop the sweep
            logger.exception("outbox sweep item failed", extra={"outbox_id": item.outbox_id})
    return handled


__all__ = ["JOB_KIND", "attempt", "on_message", "recover", "sweep", "backoff"]
