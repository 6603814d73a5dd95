"""DynamoDB transaction conflicts, sent again.

DynamoDB cancels a `TransactWriteItems` with the reason `TransactionConflict` when another transaction is under
way on one of its items (a `ConditionCheck` counts: two transactions that only check the same item conflict),
and refuses a `PutItem`, `UpdateItem` or `DeleteItem` of an item an ongoing transaction holds with
`TransactionConflictException` ("Transaction conflict handling in DynamoDB", https://docs.aws.amazon.com/
amazondynamodb/latest/developerguide/transaction-apis.html#transaction-conflict-handling). botocore retries
neither (its DynamoDB policies cover `TransactionInProgressException` and throttling), and nothing was written
either way, so `retry_conflicts` sends the same operation again after a short jittered backoff
(`backoff.jittered`) — up to `CONFLICT_DELAYS` times, then lets the last conflict through to the caller's own
retry (a sync job's redelivery, an API 5xx the client retries).

Items every writer of a tenant touches need it: the tenant's privacy item, checked by every insert of a message
(`privacy.lists.check_erasures`) and updated when an erasure is counted or a list changes — with many mailboxes
of one tenant importing at once, their transactions overlap on it. So do the other items that concurrent writers
share while one of them may be inside a transaction (docs/reliability.md, "Transaction conflicts everywhere else"):
every transaction on them is sent through `retry_conflicts`, their models send single-item writes again
(`SendsConflictsAgain`), and a cancellation is read as "a condition failed" only when it was not a conflict
(`cancelled`) — a conflict is no answer about the item's state.
"""
from __future__ import annotations

import time
from typing import Callable, TypeVar

from pynamodb.exceptions import PynamoDBException, TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib.backoff import jittered
from chalicelib.logs import logger
from chalicelib.models.base import transaction_connection

T = TypeVar("T")

CONFLICT_DELAYS = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8)   # seconds before each new attempt: ≤ ~1.8 s in all


def is_conflict(exc: BaseException) -> bool:
    """A transaction cancelled only because of conflicts, or a single-item write refused for one."""
    if isinstance(exc, TransactWriteError):
        codes = {reason.code for reason in (exc.cancellation_reasons or []) if reason is not None}
        return codes == {"TransactionConflict"}
    return isinstance(exc, PynamoDBException) and exc.cause_response_code == "TransactionConflictException"


def cancelled(exc: BaseException) -> bool:
    """A transaction cancelled for a reason of its own item — a failed condition — and not only because another
    transaction was under way on one of its items: what a caller may read as "the state was not as expected"."""
    return getattr(exc, "cause_response_code", "") == "TransactionCanceledException" and not is_conflict(exc)


def condition_failed(exc: TransactWriteError) -> bool:
    """A transaction cancelled because one of its conditions failed (a reason `ConditionalCheckFailed`):
    nothing was written, and the answer is about the items' state. For callers whose only expected
    cancellation is a condition; `cancelled` also counts every other non-conflict reason."""
    return any(reason is not None and reason.code == "ConditionalCheckFailed"
               for reason in (exc.cancellation_reasons or []))


def retry_conflicts(operation: Callable[[], T], *, sleep: Callable[[float], None] | None = None) -> T:
    """`operation()`, sent again while DynamoDB answers it with a conflict (`is_conflict`); any other failure,
    and the conflict of the last attempt, are raised. `operation` must build its request anew each time (a
    `TransactWrite` block inside it). A conflict means nothing was written, so the same request is safe to
    send again; an operation with a side effect outside DynamoDB before its write is not one to pass."""
    sleep = sleep or time.sleep
    for attempt, delay in enumerate(CONFLICT_DELAYS, start=1):
        try:
            return operation()
        except PynamoDBException as exc:
            if not is_conflict(exc):
                raise
            logger.info("DynamoDB transaction conflict; sending again", extra={"attempt": attempt})
        sleep(jittered(delay))
    return operation()


def transact(build: Callable[[TransactWrite], None]) -> bool:
    """One TransactWriteItems that `build` fills — built anew for each attempt and sent again while it meets
    conflicts (`retry_conflicts`). True when it committed; False when DynamoDB cancelled it for a condition of
    its own (`cancelled`): nothing was written. Any other failure, a conflict of the last attempt included, is
    raised. For callers that need no more of the cancellation than that; a caller that tells its conditions
    apart by the cancellation reasons sends its own `TransactWrite` through `retry_conflicts`."""
    def commit() -> None:
        with TransactWrite(connection=transaction_connection()) as transaction:
            build(transaction)

    try:
        retry_conflicts(commit)
    except TransactWriteError as exc:
        if not cancelled(exc):
            raise
        return False
    return True


class SendsConflictsAgain:
    """Model mixin for items that concurrent writers share while one of them may hold the item in a transaction
    (the mailbox, the tenant, its privacy item, a message, a conversation entry, a directory record or index key,
    an event): the item's own `update`, `save` and `delete` are sent again through `retry_conflicts` when
    DynamoDB refuses them with `TransactionConflictException` — nothing was written, so the same request is sent
    again. Their callers keep their own reading of every other answer (a failed condition stays a failed
    condition)."""

    def update(self, actions, condition=None, **kwargs):
        send = super().update      # type: ignore[misc]
        return retry_conflicts(lambda: send(actions, condition, **kwargs))

    def save(self, condition=None, **kwargs):
        send = super().save        # type: ignore[misc]
        return retry_conflicts(lambda: send(condition, **kwargs))

    def delete(self, condition=None, **kwargs):
        send = super().delete      # type: ignore[misc]
        return retry_conflicts(lambda: send(condition, **kwargs))
