"""Pairing benchmark: a directory of 100,000 records and 10,000 messages in moto (in-process), paired one by
one through `pair_message` as the sync worker does; prints messages/s and DynamoDB calls per message.

    python -m bench.pairing [--records 100000] [--messages 10000]

DynamoDB calls are counted as they leave botocore (`BaseClient._make_api_call`, which PynamoDB's calls pass
through too; a hook on sessions missed them once PynamoDB took its sessions from `chalicelib.aws`); "reads" are
GetItem, BatchGetItem, Query and TransactGetItems calls (BatchGetItem keys are also counted as items).
Loading uses BatchWriteItem (PynamoDB batch_write, 25 items a call) with the lookup index computed in memory,
so the load phase takes seconds, not the ~minutes of per-record index updates.
moto runs in-process, so absolute throughput measures mailbridge + moto CPU, not DynamoDB latency; the calls
per message are what carries over to AWS.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

READS = {"GetItem", "BatchGetItem", "Query", "TransactGetItems", "Scan"}


def configure_env() -> None:
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_REGION": "us-east-1", "MAILBRIDGE_TABLE_PREFIX": "bench-", "MAILBRIDGE_STAGE": "bench",
                       "MAILBRIDGE_PUBLIC_BASE_URL": "https://bench.example.test",
                       "MAILBRIDGE_EVENTS_QUEUE_URL": "", "POWERTOOLS_LOG_LEVEL": "ERROR"})
    os.environ.pop("AWS_ENDPOINT_URL", None)


class CallCounter:
    def __init__(self):
        self.calls: Counter[str] = Counter()
        self.batch_get_keys = 0

    def count(self, operation: str, params: dict) -> None:
        self.calls[operation] += 1
        if operation == "BatchGetItem":
            self.batch_get_keys += sum(len(v.get("Keys", [])) for v in params.get("RequestItems", {}).values())

    def reads(self) -> int:
        return sum(n for op, n in self.calls.items() if op in READS)

    def reset(self) -> None:
        self.calls.clear()
        self.batch_get_keys = 0


def install_counter(counter: CallCounter) -> None:
    """Count every DynamoDB call as it leaves botocore (PynamoDB's included)."""
    import botocore.client

    original = botocore.client.BaseClient._make_api_call

    def counting(client, operation, params):
        if client.meta.service_model.service_name == "dynamodb":
            counter.count(operation, params)
        return original(client, operation, params)

    botocore.client.BaseClient._make_api_call = counting


def cheap_transaction_backups() -> None:
    """moto backs up every table a TransactWriteItems touches with `copy.deepcopy` (O(table size) per call,
    minutes at this scale; DynamoDB itself does nothing of the kind). Tables are not copied here; the bench's
    transactions put the conditional item first, so a cancelled one has written nothing to roll back."""
    import copy as real_copy

    from moto.dynamodb import models as dynamodb_models
    from moto.dynamodb.models.table import Table

    class _Copy:
        @staticmethod
        def deepcopy(value, *args):
            return value if isinstance(value, Table) else real_copy.deepcopy(value, *args)

    dynamodb_models.copy = _Copy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args(argv)
    configure_env()
    counter = CallCounter()
    install_counter(counter)
    cheap_transaction_backups()

    from moto import mock_aws
    with mock_aws():
        run(args.records, args.messages, counter)


def run(total_records: int, total_messages: int, counter: CallCounter) -> None:
    from chalicelib.config import reset_settings
    reset_settings()
    from bench.pairing import synthetic
    from chalicelib.models.registry import all_models
    from chalicelib.models.mailbox import Mailbox
    from chalicelib.models.directory import DirectoryIndex, DirectoryRecord
    from chalicelib.models.message import Message
    from chalicelib.pairing.engine import pair_message
    from chalicelib.tenancy import service
    from chalicelib.timeutil import now_iso

    for model in all_models():
        model.create_table(wait=False)
    tenant = service.create_tenant("Bench", "standard", own_domains=[synthetic.OWN])
    now = now_iso()
    mailbox = Mailbox(tenant.tenant_id, "mbx_bench", name="Bench", type="imap", email=f"me@{synthetic.OWN}",
                      import_since="2026-11-01", pairing_mode="auto", kind="shared", status="active",
                      created_at=now, updated_at=now)
    mailbox.save()

    shape = synthetic.Directory.of_size(total_records)
    started = time.perf_counter()
    items = list(synthetic.records(tenant.tenant_id, shape, now))
    index = synthetic.index_items(tenant.tenant_id, items)
    with DirectoryRecord.batch_write() as batch:
        for item in items:
            batch.save(item)
    with DirectoryIndex.batch_write() as batch:
        for item in index:
            batch.save(item)
    load_seconds = time.perf_counter() - started
    messages = list(synthetic.messages(tenant.tenant_id, mailbox.mailbox_id, shape, total_messages))
    with Message.batch_write() as batch:
        for message in messages:
            batch.save(message)
    print(f"loaded {len(items):,} records + {len(index):,} index items in {load_seconds:.1f} s; "
          f"stored {len(messages):,} messages")

    counter.reset()
    paired = links = 0
    started = time.perf_counter()
    for message in messages:
        result = pair_message(message)
        paired += bool(result.links)
        links += len(result.links)
    elapsed = time.perf_counter() - started
    calls = dict(sorted(counter.calls.items()))
    n = len(messages)
    print(f"paired {n:,} messages in {elapsed:.1f} s = {n / elapsed:,.0f} messages/s "
          f"({paired:,} got links, {links:,} links)")
    print(f"DynamoDB reads per message: {counter.reads() / n:.2f} calls "
          f"({counter.batch_get_keys / n:.2f} BatchGetItem keys); all calls per message: "
          f"{sum(calls.values()) / n:.2f}")
    print("calls by operation:", ", ".join(f"{op} {count / n:.2f}" for op, count in calls.items()))


if __name__ == "__main__":
    main()
