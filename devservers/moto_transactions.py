"""A cheaper rollback for moto's DynamoDB `TransactWriteItems` (moto 5.x), for the benchmark and local runs.

moto backs a transaction up by `copy.deepcopy` of every table it touches — once per action — so one
transaction costs O(actions × table size): on a messages table of a few thousand items a 100-action
transaction took ~6 s and the deep copies pushed the process past 1.5 GB. Real DynamoDB has no such cost.

`install()` keeps moto's own transaction code (conditions, unicity, cancellation reasons) and changes only
the backup: the items the transaction addresses are deep-copied before it runs and put back if it fails,
which restores exactly what moto's whole-table copy restored (a transaction writes only the items it
names). Installed by `bench.imap_ingest`; idempotent.
"""
from __future__ import annotations

import copy
from typing import Any

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table

_original = DynamoDBBackend.transact_write_items


class _TablesNotCopied:
    """Stands in for the `copy` module inside moto's DynamoDB backend: tables are returned as they are (the
    touched items are backed up instead); every other value is copied as before."""

    @staticmethod
    def deepcopy(value: Any, memo: dict | None = None) -> Any:
        if isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def _backup(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> list[tuple]:
    saved = []
    for entry in transact_items:
        try:
            op_type, op = next(iter(entry.items()))
            table = backend.tables.get(op.get("TableName"))
            if table is None:
                continue
            if op_type == "Put":
                key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = op["Item"][table.range_key_attr]
            else:
                key = op["Key"]
            hash_key, range_key = backend.get_keys_value(table, key)
        except Exception:  # noqa: BLE001 - a malformed action: moto's own validation reports it
            continue
        saved.append((table, hash_key, range_key, copy.deepcopy(table.get_item(hash_key, range_key))))
    return saved


def _restore(saved: list[tuple]) -> None:
    for table, hash_key, range_key, item in reversed(saved):
        if item is None:
            table.delete_item(hash_key, range_key)
        elif range_key is not None:
            table.items[hash_key][range_key] = item
        else:
            table.items[hash_key] = item


def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    saved = _backup(self, transact_items)
    try:
        return _original(self, transact_items)
    except Exception:
        _restore(saved)
        raise


def install() -> None:
    dynamodb_models.copy = _TablesNotCopied()
    DynamoDBBackend.transact_write_items = transact_write_items


def uninstall() -> None:
    dynamodb_models.copy = copy
    DynamoDBBackend.transact_write_items = _original
