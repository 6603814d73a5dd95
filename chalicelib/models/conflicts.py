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
of one tenant importing at once, their transactions overlap on it.
"""
from __future__ import annotations

import time
from typing import Callable, TypeVar

from pynamodb.exceptions import PynamoDBException, TransactWriteError

from chalicelib.backoff import jittered
from chalicelib.logs import logger

T = TypeVar("T")

CONFLICT_DELAYS = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8)   # seconds before each new attempt: ≤ ~1.8 s in all


def is_conflict(exc: BaseException) -> bool:
    """A transaction cancelled only because of conflicts, or a single-item write refused for one."""
    if isinstance(exc, TransactWriteError):
        codes = {reason.code for reason in (exc.cancellation_reasons or []) if reason is not None}
        return codes == {"TransactionConflict"}
    return isinstance(exc, PynamoDBException) and exc.cause_response_code == "TransactionConflictException"


def retry_conflicts(operation: Callable[[], T], *, sleep: Callable[[float], None] = time.sleep) -> T:
    """`operation()`, sent again while DynamoDB answers it with a conflict (`is_conflict`); any other failure,
    and the conflict of the last attempt, are raised. `operation` must build its request anew each time (a
    `TransactWrite` block inside it)."""
    for attempt, delay in enumerate(CONFLICT_DELAYS, start=1):
        try:
            return operation()
        except PynamoDBException as exc:
            if not is_conflict(exc):
                raise
            logger.info("DynamoDB transaction conflict; sending again", extra={"attempt": attempt})
        sleep(jittered(delay))
    return operation()
