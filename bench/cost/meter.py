"""Meters AWS calls made through botocore for the cost model: per operation, the billable units.

DynamoDB units follow the on-demand rules (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/
capacity-mode.html): a write costs 1 WRU per started KB of the item (an update or delete: of the item as stored,
taken here as the table's mean item size measured after the run), transactions twice that; a read costs 1 RRU
per started 4 KB when strongly consistent, half when eventually consistent, transactions twice. Item sizes follow
"DynamoDB item sizes and formats" (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/
CapacityUnitCalculations.html): attribute names and values in UTF-8, a number 1 byte per two significant digits
+ 1, a binary its raw bytes, null and Boolean 1 byte, a list or map 3 bytes + 1 per element (`item_bytes`).
S3, SQS and KMS bill per request
(SQS per started 64 KB of payload). `wall` is the time spent inside the calls (moto, in-process: not AWS's
latency — the model uses its own latency assumptions); `cpu` the process CPU time spent inside them (moto's
work, subtracted from the worker's measured compute).
"""
from __future__ import annotations

import base64
import collections
import contextlib
import json
import math
import time
from dataclasses import dataclass, field

import botocore.client

DDB_WRITES = {"PutItem", "UpdateItem", "DeleteItem"}


def item_bytes(item: dict) -> int:
    """The size DynamoDB bills for `item` (DynamoDB JSON, as botocore sends and receives it): the sum of its
    attribute names and values ("DynamoDB item sizes and formats", DynamoDB Developer Guide)."""
    return sum(_utf8(name) + _value_bytes(value) for name, value in item.items())


def _utf8(text: str) -> int:
    return len(text.encode("utf-8"))


def _number_bytes(text: str) -> int:
    """1 byte per two significant digits + 1 (leading and trailing zeroes trimmed; sign, point and exponent
    are not digits)."""
    digits = text.lower().split("e")[0].lstrip("+-").replace(".", "").strip("0") or "0"
    return (len(digits) + 1) // 2 + 1


def _binary_bytes(value: object) -> int:
    """A binary's raw length (botocore hands bytes; a base64 text is decoded)."""
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    return len(base64.b64decode(str(value)))


def _value_bytes(value: dict) -> int:
    (kind, data), = value.items()
    if kind == "S":
        return _utf8(data)
    if kind == "N":
        return _number_bytes(data)
    if kind == "B":
        return _binary_bytes(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(_utf8(member) for member in data)
    if kind == "NS":
        return sum(_number_bytes(member) for member in data)
    if kind == "BS":
        return sum(_binary_bytes(member) for member in data)
    if kind == "L":
        return 3 + sum(1 + _value_bytes(member) for member in data)
    if kind == "M":
        return 3 + sum(1 + _utf8(name) + _value_bytes(member) for name, member in data.items())
    raise ValueError(f"unknown DynamoDB type {kind!r}")


@dataclass
class Usage:
    calls: collections.Counter = field(default_factory=collections.Counter)   # (service, operation) → n
    wru_put: float = 0.0
    writes_by_table: collections.Counter = field(default_factory=collections.Counter)  # update/delete, per table
    debt_writes: collections.Counter = field(default_factory=collections.Counter)  # of those: touching owed_pages
    rru: float = 0.0
    sqs_requests: float = 0.0
    s3_put: int = 0
    s3_get: int = 0
    kms: int = 0
    wall: float = 0.0
    cpu: float = 0.0          # process CPU time spent inside the calls (moto's work, not the worker's)

    def wru(self, mean_item_kb: dict[str, float]) -> float:
        return self.wru_put + sum(n * max(1, math.ceil(mean_item_kb.get(table, 1.0)))
                                  for table, n in self.writes_by_table.items())

    def minus(self, other: "Usage") -> "Usage":
        out = Usage()
        out.calls = self.calls - other.calls
        out.writes_by_table = self.writes_by_table - other.writes_by_table
        out.debt_writes = self.debt_writes - other.debt_writes
        for name in ("wru_put", "rru", "sqs_requests", "s3_put", "s3_get", "kms", "wall", "cpu"):
            setattr(out, name, getattr(self, name) - getattr(other, name))
        return out

    def copy(self) -> "Usage":
        return self.minus(Usage())


class Meter:
    """Installs itself around `BaseClient._make_api_call` (inside a moto world) until `close()`."""

    def __init__(self):
        self.usage = Usage()
        self.paused = False       # the harness's own calls (polling the queues, as Lambda's poller does)
        self.original = botocore.client.BaseClient._make_api_call
        meter = self

        def metered(client, operation, params):
            if meter.paused:
                return meter.original(client, operation, params)
            started, cpu = time.perf_counter(), time.process_time()
            try:
                result = meter.original(client, operation, params)
            finally:
                meter.usage.wall += time.perf_counter() - started
                meter.usage.cpu += time.process_time() - cpu
            meter.record(client.meta.service_model.service_name, operation, params, result)
            return result

        botocore.client.BaseClient._make_api_call = metered

    @contextlib.contextmanager
    def pause(self):
        self.paused = True
        try:
            yield
        finally:
            self.paused = False

    def close(self) -> None:
        botocore.client.BaseClient._make_api_call = self.original

    def record(self, service: str, operation: str, params: dict, result: dict) -> None:
        usage = self.usage
        usage.calls[(service, operation)] += 1
        if service == "dynamodb":
            self._dynamodb(operation, params, result)
        elif service == "s3":
            usage.s3_put += operation in ("PutObject", "CopyObject", "ListObjectsV2")
            usage.s3_get += operation in ("GetObject", "HeadObject")
        elif service == "sqs":
            payload = json.dumps(params.get("Entries") or params.get("MessageBody") or "")
            usage.sqs_requests += max(1, math.ceil(len(payload) / 65536))
        elif service == "kms":
            usage.kms += 1

    def _dynamodb(self, operation: str, params: dict, result: dict) -> None:
        usage = self.usage
        read_factor = 1.0 if params.get("ConsistentRead") else 0.5
        if operation == "PutItem":
            usage.wru_put += math.ceil(item_bytes(params["Item"]) / 1024)
        elif operation in ("UpdateItem", "DeleteItem"):
            usage.writes_by_table[params["TableName"]] += 1
            usage.debt_writes[params["TableName"]] += _touches_debt(params)
        elif operation == "BatchWriteItem":
            for table, requests in params["RequestItems"].items():
                for request in requests:
                    if "PutRequest" in request:
                        usage.wru_put += math.ceil(item_bytes(request["PutRequest"]["Item"]) / 1024)
                    else:
                        usage.writes_by_table[table] += 1
        elif operation == "TransactWriteItems":
            for entry in params["TransactItems"]:
                (kind, body), = entry.items()
                if kind == "Put":
                    usage.wru_put += 2 * math.ceil(item_bytes(body["Item"]) / 1024)
                elif kind in ("Update", "Delete"):
                    usage.writes_by_table[body["TableName"]] += 2
                    usage.debt_writes[body["TableName"]] += 2 * _touches_debt(body)
                else:                                   # ConditionCheck: billed as a read of the item
                    usage.rru += 2 * 0.5
        elif operation == "GetItem":
            usage.rru += read_factor * max(1, math.ceil(item_bytes(result.get("Item", {})) / 4096))
        elif operation in ("Query", "Scan"):
            size = sum(item_bytes(item) for item in result.get("Items", []))
            usage.rru += read_factor * max(1, math.ceil(size / 4096))
        elif operation == "BatchGetItem":
            for items in result.get("Responses", {}).values():
                usage.rru += sum(0.5 * max(1, math.ceil(item_bytes(item) / 4096)) for item in items)
        elif operation == "TransactGetItems":
            usage.rru += sum(2 * max(1, math.ceil(item_bytes(r.get("Item", {})) / 4096))
                             for r in result.get("Responses", []))


def _touches_debt(update: dict) -> int:
    """1 when an update writes the mailbox's page debts (`owed_pages`, sync/effects.py), else 0."""
    return int("owed_pages" in (update.get("ExpressionAttributeNames") or {}).values())


def mean_item_kb(without: frozenset[str] = frozenset()) -> dict[str, float]:
    """Mean stored item size per table (KB), for the update/delete write units; `without`: attributes left out
    (a what-if: the item without them)."""
    import boto3
    dynamodb = boto3.client("dynamodb")
    sizes: dict[str, float] = {}
    for table in dynamodb.list_tables()["TableNames"]:
        items = [item for page in dynamodb.get_paginator("scan").paginate(TableName=table) for item in page["Items"]]
        if items:
            sizes[table] = sum(item_bytes({k: v for k, v in item.items() if k not in without})
                               for item in items) / len(items) / 1024
    return sizes
