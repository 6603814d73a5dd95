"""The ONE place a provider error code becomes an action (twenty messaging-import-exception-handler).

| code                | mailbox state written                                   | the SQS record            |
|---------------------|---------------------------------------------------------|---------------------------|
| TEMPORARY           | sync_stage=retrying, last_error                         | fails → redelivered later |
| THROTTLED           | sync_stage=throttled, not_before, last_error            | succeeds; a NEW job is    |
|                     |                                                         | queued with DelaySeconds  |
| AUTH_REVOKED        | status=auth_error + status_reason, event                | succeeds (no retry storm) |
| NEEDS_ADMIN_CONSENT | status=needs_admin_consent + status_reason, event       | succeeds                  |
| CURSOR_INVALID      | (resync budget spent, see engine) sync_stage=error      | succeeds                  |
| NOT_FOUND           | last_error recorded, sync_stage=idle                    | succeeds                  |
| PERMANENT           | sync_stage=error, last_error                            | succeeds                  |

Backoff for TEMPORARY: the provider's `retry_after` (Retry-After, RFC 9110 §10.2.3) when given, else
exponential on the SQS ApproximateReceiveCount — 30 s, 60 s, ... capped at 15 min — applied with
`ChangeMessageVisibility` so SQS redelivers the same message then (SQS Developer Guide, "Visibility timeout").
After the queue's maxReceiveCount the message moves to the DLQ.

THROTTLED (Gmail 429 / 403 rateLimitExceeded, Graph 429/503 + Retry-After) is not a failure: the record is
acknowledged and a new job is sent with `DelaySeconds` = the provider's delay (capped at SQS's 900 s); the
mailbox's `not_before` holds the full delay, and a job arriving earlier is re-queued the same way
(`worker`), so a rate limit never counts toward `maxReceiveCount` and never dead-letters a mailbox.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass

from pynamodb.exceptions import UpdateError

from chalicelib import aws
from chalicelib.backoff import jittered
from chalicelib.config import get_settings
from chalicelib.logs import logger
from chalicelib.models.mailbox import Mailbox
from chalicelib.notify.events import emit
from chalicelib.providers.base import ErrorCode, ProviderError
from chalicelib.sync.enqueue import enqueue_sync
from chalicelib.timeutil import now_iso

BACKOFF_BASE_SECONDS = 30
BACKOFF_MAX_SECONDS = 900
MAX_VISIBILITY_SECONDS = 12 * 3600  # SQS limit

STATUS_FOR_CODE = {ErrorCode.AUTH_REVOKED: "auth_error", ErrorCode.NEEDS_ADMIN_CONSENT: "needs_admin_consent"}


class RetryLater(Exception):
    """Raised for a record that must be redelivered (the batch processor reports it in batchItemFailures)."""

    def __init__(self, detail: str, delay_seconds: int):
        super().__init__(detail)
        self.delay_seconds = delay_seconds


@dataclass(frozen=True)
class RecordInfo:
    """Where the job came from, so its redelivery can be delayed."""
    receipt_handle: str | None = None
    receive_count: int = 1


def backoff_seconds(error: ProviderError, receive_count: int, *, rand: random.Random | None = None) -> int:
    if error.retry_after is not None:
        return int(max(1, min(MAX_VISIBILITY_SECONDS, round(error.retry_after))))
    base = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, receive_count - 1))
    return int(min(BACKOFF_MAX_SECONDS, jittered(base, rand=rand)))


def _last_error(code: str, detail: str) -> dict[str, str]:
    return {"code": code, "detail": detail[:500], "at": now_iso()}


def _write(mailbox: Mailbox, actions: list, condition=None) -> bool:
    cond = Mailbox.mailbox_id.exists() if condition is None else Mailbox.mailbox_id.exists() & condition
    try:
        mailbox.update(actions=actions, condition=cond)
    except UpdateError as exc:
        if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
            return False
        raise
    return True


def delay_redelivery(receipt_handle: str | None, seconds: int) -> None:
    if not receipt_handle or not get_settings().sync_queue_url:
        return
    try:
        aws.sqs().change_message_visibility(QueueUrl=get_settings().sync_queue_url, ReceiptHandle=receipt_handle,
                                            VisibilityTimeout=int(min(MAX_VISIBILITY_SECONDS, seconds)))
    except Exception:  # noqa: BLE001 - redelivery still happens, just after the default visibility timeout
        logger.exception("could not set the retry delay on the sync message")


def set_mailbox_status(mailbox: Mailbox, status: str, reason: str, error: dict[str, str]) -> bool:
    """active → `status`, once (conditional on still being active), with a `mailbox.status_changed` event."""
    previous = mailbox.status
    changed = _write(mailbox, [Mailbox.status.set(status), Mailbox.status_reason.set(reason[:500]),
                               Mailbox.sync_stage.set("error"), Mailbox.last_error.set(error),
                               Mailbox.updated_at.set(now_iso())],
                     Mailbox.status == "active")
    if changed:
        emit(mailbox.tenant_id, "mailbox.status_changed",
             {"mailbox_id": mailbox.mailbox_id, "status": status, "previous_status": previous, "reason": reason[:500]})
        logger.warning("mailbox status changed", extra={"status": status, "previous_status": previous})
    return changed


def handle_provider_error(mailbox: Mailbox, error: ProviderError, record: RecordInfo | None = None) -> None:
    """Apply the action for `error.code`. Returns normally when the job is finished; raises RetryLater when
    the record must be redelivered."""
    record = record or RecordInfo()
    code = error.code
    entry = _last_error(code.value, error.detail)
    logger.warning("sync failed", extra={"code": code.value, "detail": error.detail[:500]})
    if code == ErrorCode.THROTTLED:
        delay = backoff_seconds(error, record.receive_count)
        _write(mailbox, [Mailbox.sync_stage.set("throttled"), Mailbox.last_error.set(entry),
                         Mailbox.not_before.set(time.time() + delay)])
        enqueue_sync(mailbox.tenant_id, mailbox.mailbox_id, "throttled", delay_seconds=delay)
        return
    if code == ErrorCode.TEMPORARY:
        delay = backoff_seconds(error, record.receive_count)
        _write(mailbox, [Mailbox.sync_stage.set("retrying"), Mailbox.last_error.set(entry)])
        delay_redelivery(record.receipt_handle, delay)
        raise RetryLater(error.detail, delay)
    if code in STATUS_FOR_CODE:
        set_mailbox_status(mailbox, STATUS_FOR_CODE[code], error.detail, entry)
        return
    if code == ErrorCode.NOT_FOUND:
        _write(mailbox, [Mailbox.sync_stage.set("idle"), Mailbox.last_error.set(entry)])
        return
    # PERMANENT, and CURSOR_INVALID once the engine's bounded resync budget is spent.
    _write(mailbox, [Mailbox.sync_stage.set("error"), Mailbox.last_error.set(entry)])


def handle_internal_error(mailbox: Mailbox, exc: BaseException, record: RecordInfo | None = None) -> None:
    """A non-provider failure (DynamoDB, S3, a bug): record it without details that could hold data, and let
    the record be redelivered (raise RetryLater after the backoff)."""
    record = record or RecordInfo()
    delay = backoff_seconds(ProviderError(ErrorCode.TEMPORARY, "internal"), record.receive_count)
    try:
        _write(mailbox, [Mailbox.sync_stage.set("retrying"),
                         Mailbox.last_error.set(_last_error("internal", f"internal error ({type(exc).__name__})"))])
    except Exception:  # noqa: BLE001 - the original failure is what matters
        logger.exception("could not record the internal sync error")
    delay_redelivery(record.receipt_handle, delay)
    raise RetryLater(type(exc).__name__, delay) from exc
