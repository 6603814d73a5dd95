"""DynamoDB transaction conflicts, injected under the real PynamoDB code (moto never conflicts).

DynamoDB cancels a TransactWriteItems with the reason `TransactionConflict` when another transaction is under
way on one of its items, and refuses a PutItem/UpdateItem/DeleteItem of an item an ongoing transaction holds
with `TransactionConflictException` ("Transaction conflict handling in DynamoDB", DynamoDB developer guide).
`conflicts_ahead` raises exactly those answers at botocore's call, so everything above it — PynamoDB's
exception translation, `models.conflicts.retry_conflicts`, the callers — runs for real. A plugin of
`tests/conftest.py`: the fixture is available to every test.
"""
from __future__ import annotations

import botocore.client
import pytest
from botocore.exceptions import ClientError

from chalicelib.models import conflicts


def _tables(params: dict) -> set[str]:
    tables = {params.get("TableName") or ""}
    for action in params.get("TransactItems") or ():
        for body in action.values():
            tables.add(body.get("TableName") or "")
    return tables - {""}


@pytest.fixture
def conflicts_ahead(monkeypatch):
    """`conflicts_ahead(operation, n, touching=None)`: the next `n` DynamoDB `operation` calls (those touching
    a table whose name ends with `touching`, when given) fail as a conflict would; the backoff does not sleep.
    Returns the dict of conflicts still pending, keyed by (operation, touching)."""
    real = botocore.client.BaseClient._make_api_call
    pending: dict[tuple[str, str | None], int] = {}
    monkeypatch.setattr(conflicts.time, "sleep", lambda seconds: None)

    def due(operation_name: str, params: dict) -> bool:
        for (operation, touching), left in pending.items():
            if left and operation == operation_name and (
                    touching is None or any(t.endswith(touching) for t in _tables(params))):
                pending[(operation, touching)] = left - 1
                return True
        return False

    def conflicting(self, operation_name, params):
        if due(operation_name, params):
            if operation_name == "TransactWriteItems":
                reasons = [{"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}] + \
                          [{"Code": "None"}] * (len(params["TransactItems"]) - 1)
                raise ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                                   "CancellationReasons": reasons}, operation_name)
            raise ClientError({"Error": {"Code": "TransactionConflictException",
                                         "Message": "Transaction is ongoing for the item"}}, operation_name)
        return real(self, operation_name, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", conflicting)

    def ahead(operation: str, n: int, touching: str | None = None) -> dict:
        pending[(operation, touching)] = n
        return pending
    return ahead
