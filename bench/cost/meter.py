"""Meters AWS calls made through botocore for the cost model: per operation, the billable units.

DynamoDB units follow the on-demand rules (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/
capacity-mode.html): a write costs 1 WRU per started KB of the item (an update or delete: of the item as stored,
taken here as the table's mean item size measured after the run), transactions twice that — a transaction's
ConditionCheck too, though it writes nothing (see `_dynamodb`); a read costs 1 RRU
per started 4 KB when strongly consistent, half when eventually consistent, transactions twice. Item sizes follow
"DynamoDB item sizes and formats" (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/
CapacityUnitCalculations.html): attribute names and values in UTF-8, a number 1 byte per two significant digits
+ 1, a binary its raw bytes, null and Boolean 1 byte, a list or map 3 bytes + 1 per element (`item_bytes`).
Global secondary indexes are billed too ("Global secondary indexes: writes", https://docs.aws.amazon.com/
amazondynamodb/latest/developerguide/GSI.html): the meter reads the written items before and after each write
(unmetered reads, outside the worker's measured CPU) and counts per index one write when an entry appears,
disappears or only its projected attributes change, two when its key changes, none when the item is in the index
neither before nor after — each at 1 WRU per started KB of the index entry (the whole item for an ALL
projection, the keys for KEYS_ONLY, the keys and listed attributes for INCLUDE), at the normal rate also when
the write was part of a transaction (`wru_index`). S3, SQS and KMS bill per request
(SQS per started 64 KB of payload). `wall` is the time spent inside the calls (moto, in-process: not AWS's
latency — the model uses its own latency assumptions); `cpu` the process CPU time spent inside them (moto's
work, subtracted from the worker's measured compute). `log_bytes` counts what the functions' log lines would send
to CloudWatch Logs: every record the `mailbridge` logger emits at INFO or above (the functions' level), formatted
as the Lambda writes it (Powertools JSON, secrets scrubbed), plus its newline.
"""
from __future__ import annotations

import base64
import collections
import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass, field

import botocore.client

DDB_WRITES = {"PutItem", "UpdateItem", "DeleteItem"}
DDB_ITEM_WRITES = DDB_WRITES | {"BatchWriteItem", "TransactWriteItems"}


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


SCALARS = ("wru_put", "wru_index", "rru", "sqs_requests", "s3_put", "s3_get", "kms", "wall", "cpu", "log_bytes")


@dataclass
class Usage:
    calls: collections.Counter = field(default_factory=collections.Counter)   # (service, operation) → n
    wru_put: float = 0.0
    wru_index: float = 0.0    # global secondary index entries written (see the module docstring)
    writes_by_table: collections.Counter = field(default_factory=collections.Counter)  # update/delete, per table
    debt_writes: collections.Counter = field(default_factory=collections.Counter)  # of those: touching owed_pages
    rru: float = 0.0
    sqs_requests: float = 0.0
    s3_put: int = 0
    s3_get: int = 0
    kms: int = 0
    wall: float = 0.0
    cpu: float = 0.0          # process CPU time spent inside the calls (moto's work, not the worker's)
    log_bytes: float = 0.0    # the functions' log lines, as CloudWatch Logs ingests them

    def wru(self, mean_item_kb: dict[str, float]) -> float:
        return self.wru_put + self.wru_index + sum(n * max(1, math.ceil(mean_item_kb.get(table, 1.0)))
                                  for table, n in self.writes_by_table.items())

    def minus(self, other: "Usage") -> "Usage":
        out = Usage()
        out.calls = self.calls - other.calls
        out.writes_by_table = self.writes_by_table - other.writes_by_table
        out.debt_writes = self.debt_writes - other.debt_writes
        for name in SCALARS:
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
        self.indexes = IndexWrites(self.original)
        self.ledger: list[WriteEntry] | None = None     # set to a list: every DynamoDB item write, itemized
        meter = self

        def metered(client, operation, params):
            if meter.paused:
                return meter.original(client, operation, params)
            service = client.meta.service_model.service_name
            started, cpu = time.perf_counter(), time.process_time()
            itemized = meter.ledger is not None and service == "dynamodb" and operation in DDB_ITEM_WRITES
            try:
                before = meter.indexes.images(client, operation, params) if service == "dynamodb" else None
                ledger = meter.indexes.itemize_before(client, operation, params) if itemized else None
                result = meter.original(client, operation, params)
                if before:
                    meter.usage.wru_index += meter.indexes.writes(client, before)
                if ledger is not None:
                    meter.ledger.extend(meter.indexes.itemize_after(client, ledger))
            finally:
                meter.usage.wall += time.perf_counter() - started
                meter.usage.cpu += time.process_time() - cpu
            meter.record(service, operation, params, result)
            return result

        botocore.client.BaseClient._make_api_call = metered
        # the functions log at INFO (`.chalice/config.json`); the bench's console stays at the level it had
        functions = logging.getLogger("mailbridge")
        self.log_levels = [(functions, functions.level)] + [(h, h.level) for h in functions.handlers]
        for handler in functions.handlers:
            handler.setLevel(max(handler.level, functions.getEffectiveLevel()))
        functions.setLevel(logging.INFO)
        self.log_lines = LogBytes(self)
        functions.addHandler(self.log_lines)

    @contextlib.contextmanager
    def pause(self):
        self.paused = True
        try:
            yield
        finally:
            self.paused = False

    def close(self) -> None:
        botocore.client.BaseClient._make_api_call = self.original
        logging.getLogger("mailbridge").removeHandler(self.log_lines)
        for logger_or_handler, level in self.log_levels:
            logger_or_handler.setLevel(level)

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
                else:
                    # ConditionCheck: billed as a transactional *write* of the item it checks (2 WRU per KB),
                    # though it changes nothing — measured against DynamoDB: "What a conditional DynamoDB
                    # transaction actually costs", https://martinhicks.dev/articles/what-a-conditional-dynamodb-
                    # transaction-costs (until 2026-12-02 metered as a read: an underestimate).
                    usage.writes_by_table[body["TableName"]] += 2
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


@dataclass
class WriteEntry:
    """One item written (the `--breakdown` ledger): its table, how (`PutItem`, `TransactWriteItems.Update`, ...),
    its key, its size before and after (bytes, `item_bytes`), the index writes it caused ({index: WRU}) and,
    for an update, the attributes its expression names."""
    table: str
    action: str
    key: str
    bytes_before: int
    bytes_after: int
    index_wru: dict[str, float]
    attributes: tuple[str, ...] = ()

    @property
    def rate(self) -> int:
        return 2 if self.action.startswith("TransactWriteItems") else 1

    def table_wru(self, mean_item_kb: dict[str, float] | None = None) -> float:
        """The table write's units: by the meter's rule (`mean_item_kb` given: a put by the item written, an
        update or delete by the table's mean item size) or by the item's own size (the larger of before and
        after: "Item sizes and formats", capacity-mode.html) — both at twice the rate in a transaction."""
        put = self.action.endswith("Put") or self.action == "PutItem"
        if mean_item_kb is not None and not put:
            return self.rate * max(1, math.ceil(mean_item_kb.get(self.table, 1.0)))
        size = self.bytes_after if put and mean_item_kb is not None else max(self.bytes_before, self.bytes_after)
        return self.rate * max(1, math.ceil(size / 1024))


class IndexWrites:
    """The global secondary index writes a DynamoDB write causes (rules in the module docstring)."""

    def __init__(self, call):
        self.call = call                                   # the unmetered `_make_api_call`
        self.tables: dict[str, tuple[list[str], list[tuple[list[str], str, list[str]]]]] = {}
        self.index_names: dict[str, list[str]] = {}

    def _table(self, client, name: str) -> tuple[list[str], list[tuple[list[str], str, list[str]]]]:
        """(the table's key attributes, [(index key attributes, projection type, included attributes)])."""
        if name not in self.tables:
            table = self.call(client, "DescribeTable", {"TableName": name})["Table"]
            keys = [k["AttributeName"] for k in table["KeySchema"]]
            indexes = [([k["AttributeName"] for k in index["KeySchema"]], index["Projection"]["ProjectionType"],
                        index["Projection"].get("NonKeyAttributes", []))
                       for index in table.get("GlobalSecondaryIndexes", [])]
            self.tables[name] = (keys, indexes)
            self.index_names[name] = [index["IndexName"] for index in table.get("GlobalSecondaryIndexes", [])]
        return self.tables[name]

    def _targets(self, client, operation: str, params: dict) -> list[tuple[str, dict]]:
        """(table, key) of every item the write touches in a table with indexes."""
        return [(table, key) for table, _, key, _ in self.actions(client, operation, params)
                if self._table(client, table)[1]]

    def actions(self, client, operation: str, params: dict) -> list[tuple[str, str, dict, dict]]:
        """(table, action, key, request body) of every item the write touches; action is the operation, or
        `<operation>.<Put|Update|Delete>` inside a batch or a transaction."""
        found: list[tuple[str, str, dict, dict]] = []

        def add(table: str, action: str, item_or_key: dict, body: dict) -> None:
            keys, _ = self._table(client, table)
            found.append((table, action, {name: item_or_key[name] for name in keys}, body))

        if operation == "PutItem":
            add(params["TableName"], operation, params["Item"], params)
        elif operation in ("UpdateItem", "DeleteItem"):
            add(params["TableName"], operation, params["Key"], params)
        elif operation == "BatchWriteItem":
            for table, requests in params["RequestItems"].items():
                for request in requests:
                    if "PutRequest" in request:
                        add(table, "BatchWriteItem.Put", request["PutRequest"]["Item"], request["PutRequest"])
                    else:
                        add(table, "BatchWriteItem.Delete", request["DeleteRequest"]["Key"], request["DeleteRequest"])
        elif operation == "TransactWriteItems":
            for entry in params["TransactItems"]:
                (kind, body), = entry.items()
                add(body["TableName"], f"TransactWriteItems.{kind}", body["Item"] if kind == "Put" else body["Key"],
                    body)
        return found

    def _image(self, client, table: str, key: dict) -> dict:
        return self.call(client, "GetItem", {"TableName": table, "Key": key, "ConsistentRead": True}).get("Item", {})

    def images(self, client, operation: str, params: dict) -> list[tuple[str, dict, dict]]:
        """(table, key, item before the write) of the items an indexed table's write touches."""
        return [(table, key, self._image(client, table, key))
                for table, key in self._targets(client, operation, params)]

    def writes(self, client, before: list[tuple[str, dict, dict]]) -> float:
        """WRU of the index writes between `before` and the items now stored."""
        return sum(sum(self.per_index(client, table, old, self._image(client, table, key)).values())
                   for table, key, old in before)

    def per_index(self, client, table: str, old: dict, new: dict) -> dict[str, float]:
        """{index name: WRU} of the index writes turning `old` into `new` (only the indexes written)."""
        keys, indexes = self._table(client, table)
        names = self.index_names.get(table, [])
        out = {}
        for name, (index_keys, projection, included) in zip(names, indexes):
            units = _index_write_units(keys, index_keys, projection, included, old, new)
            if units:
                out[name] = units
        return out


    def itemize_before(self, client, operation: str, params: dict) -> list[tuple[str, str, dict, dict, dict]]:
        """(table, action, key, request body, item before) of every item a write touches (the ledger)."""
        return [(table, action, key, body, self._image(client, table, key))
                for table, action, key, body in self.actions(client, operation, params)]

    def itemize_after(self, client, before: list[tuple[str, str, dict, dict, dict]]) -> list[WriteEntry]:
        entries = []
        for table, action, key, body, old in before:
            new = self._image(client, table, key)
            names = tuple(sorted(set((body.get("ExpressionAttributeNames") or {}).values())))
            entries.append(WriteEntry(table, action, "/".join(str(next(iter(v.values()))) for v in key.values()),
                                      item_bytes(old), item_bytes(new), self.per_index(client, table, old, new),
                                      names if "UpdateExpression" in body else ()))
        return entries


def _index_entry(table_keys: list[str], index_keys: list[str], projection: str, included: list[str],
                 item: dict) -> dict | None:
    """The item's entry in the index (None when an index key attribute is missing: not in the index)."""
    if not item or any(name not in item for name in index_keys):
        return None
    if projection == "ALL":
        return item
    names = set(table_keys) | set(index_keys) | (set(included) if projection == "INCLUDE" else set())
    return {name: value for name, value in item.items() if name in names}


def _index_write_units(table_keys: list[str], index_keys: list[str], projection: str, included: list[str],
                       old: dict, new: dict) -> float:
    before = _index_entry(table_keys, index_keys, projection, included, old)
    after = _index_entry(table_keys, index_keys, projection, included, new)
    if before is None and after is None or before == after:
        return 0
    if before is None:
        return _units(after)
    if after is None:
        return _units(before)
    if any(before[name] != after[name] for name in index_keys):
        return _units(before) + _units(after)              # delete the old entry, put the new one
    return _units(after)


def _units(entry: dict) -> int:
    return max(1, math.ceil(item_bytes(entry) / 1024))


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


class LogBytes(logging.Handler):
    """Adds the size of each emitted `mailbridge` log line (INFO and above, formatted as the functions write
    it: Powertools JSON with secrets scrubbed, `chalicelib/logs.py`) to the meter's usage while not paused."""

    def __init__(self, meter: Meter):
        from chalicelib.logs import logger
        super().__init__(level=logging.INFO)
        self.meter = meter
        self.setFormatter(logger.registered_formatter)

    def emit(self, record: logging.LogRecord) -> None:
        if not self.meter.paused:
            self.meter.usage.log_bytes += len(self.format(record).encode()) + 1
