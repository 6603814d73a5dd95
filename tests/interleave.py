"""Two requests interleaved the way two API processes run them, deterministically.

moto applies one call at a time and does not make a conditional write atomic across threads, so racing threads
prove nothing about a check-then-write. Instead the second request runs entirely inside the first one's window:
`before_first_write` runs `inner()` just before the first write call (PutItem, UpdateItem, DeleteItem,
BatchWriteItem, TransactWriteItems) that the code under test sends to a table whose name ends with `table` —
after every read the first request made, before any write of it lands. That is the interleaving that lets two
creates which both counted N-1 of N both write.
"""
from __future__ import annotations

from typing import Any, Callable

from pynamodb.connection.base import Connection

WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})


def _tables(operation: str, kwargs: dict) -> set[str]:
    if operation == "TransactWriteItems":
        return {body["TableName"] for item in kwargs.get("TransactItems", []) for body in item.values()}
    if operation == "BatchWriteItem":
        return set(kwargs.get("RequestItems", {}))
    return {kwargs.get("TableName", "")}


def before_first_write(monkeypatch, table: str, inner: Callable[[], Any], *, times: int = 1) -> list:
    """Run `inner()` before each of the first `times` writes to `table` (the inner requests' own writes pass
    straight through); returns the list that receives their results, in order."""
    results: list = []
    inside: list = []
    real = Connection.dispatch

    def dispatch(self, operation_name: str, operation_kwargs: dict):
        if (not inside and len(results) < times and operation_name in WRITES
                and any(name.endswith(table) for name in _tables(operation_name, operation_kwargs))):
            inside.append(True)
            try:
                results.append(inner())
            finally:
                inside.clear()
        return real(self, operation_name, operation_kwargs)

    monkeypatch.setattr(Connection, "dispatch", dispatch)
    return results
