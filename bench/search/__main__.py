"""Search benchmark: search latency p50/p95 over a synthetic corpus of stored, indexed messages in moto
(in-process).

    python -m bench.search [--messages 100000] [--queries 40] [--out PATH]

The corpus: messages spread over 20 mailboxes and a year, subjects of three words drawn from a Zipf-like
vocabulary of 5,000 words (so some words are in ~10 % of the messages and most in a handful), senders from
2,000 addresses at 200 domains. Each message is built and indexed by the real indexer
(`search.index.DynamoIndex.postings`) and loaded straight into moto's tables (`moto_table`). Then each
query kind runs `--queries` times through `search.service.search` (the index query, the AND check and the
BatchGetItem of the page's messages — what the route does besides rendering), as the tenant (all
mailboxes) and with a mailbox filter. moto runs in-process: the latencies measure mailbridge + moto CPU on
this machine, not DynamoDB's network latency (add ~5-10 ms per DynamoDB call in AWS); the calls per search
carry over.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.pairing.__main__ import CallCounter, configure_env, install_counter  # noqa: E402
from bench.record import record  # noqa: E402
from bench.stats import percentile  # noqa: E402

MAILBOXES = 20
VOCABULARY = 5_000
SENDERS = 2_000
DOMAINS = 200


def word(rank: int) -> str:
    return f"w{rank:04d}x"


def zipf_rank(rng: random.Random) -> int:
    """Rank 0 is the most common word; P(rank) ∝ 1 / (rank + 1)."""
    return min(int(VOCABULARY ** rng.random()) - 1, VOCABULARY - 1)


def corpus(tenant_id: str, count: int, seed: int = 7):
    from chalicelib.models.message import Message
    rng = random.Random(seed)
    for n in range(count):
        mailbox = f"mbx_{n % MAILBOXES:02d}"
        day = 1 + (n * 365) // count
        date = f"2026-{1 + (day - 1) // 31 % 12:02d}-{1 + (day - 1) % 28:02d}T{n % 24:02d}:{n % 60:02d}:00Z"
        sender = rng.randrange(SENDERS)
        message_id = f"msg_{n:07d}"
        subject = " ".join(word(zipf_rank(rng)) for _ in range(3))
        yield Message(message_id, tenant_id=tenant_id, mailbox_id=mailbox, folder="inbox" if n % 4 else "sent",
                      mailbox_folder=f"{mailbox}#inbox", date_key=f"{date}#{message_id}",
                      direction="inbound" if n % 4 else "outbound", subject=subject,
                      from_addr={"name": f"Sender {sender}", "email": f"s{sender}@d{sender % DOMAINS}.example"},
                      to=[], date=date, has_attachments=n % 10 == 0, imported_at=date, hidden=False, link_count=0)


def partition_queries() -> None:
    """moto answers a Query by sorting every item of the table and comparing each hash key (seconds per call
    at this size; DynamoDB reads only the partition). For primary-key queries the bench hands moto only the
    partition's items: same results, same order, same pagination — the latency left is mailbridge's and moto's
    per-item work on the items DynamoDB would read too."""
    from moto.dynamodb.models.table import Table
    original = Table.query

    def query(self, hash_key, *args, **kwargs):
        index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
        if index_name or not self.range_key_attr:
            return original(self, hash_key, *args, **kwargs)
        self.all_items = lambda: sorted(self.items.get(hash_key, {}).values(), key=lambda item: item.range_key.value)
        try:
            return original(self, hash_key, *args, **kwargs)
        finally:
            del self.all_items

    Table.query = query


def moto_table(model):
    """The moto table behind `model`: the corpus is loaded straight into it (the items the real indexer
    builds, `DynamoIndex.postings`), skipping botocore's HTTP round trip per 25 items, which would take ~40
    minutes for 1.1 million items."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends
    return dynamodb_backends[DEFAULT_ACCOUNT_ID][model.Meta.region].get_table(model.Meta.table_name)


def load_item(table, attrs: dict) -> None:
    """Put one serialized item into a moto table as its `put_item` stores it, without the request checks."""
    from moto.dynamodb.models.dynamo_type import DynamoType, Item
    hash_value = DynamoType(attrs[table.hash_key_attr])
    if table.range_key_attr:
        range_value = DynamoType(attrs[table.range_key_attr])
        table.items[hash_value][range_value] = Item(hash_value, range_value, attrs)
    else:
        table.items[hash_value] = Item(hash_value, None, attrs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    configure_env()
    counter = CallCounter()
    install_counter(counter)
    partition_queries()
    from moto import mock_aws
    with mock_aws():
        result = run(args.messages, args.queries, counter)
    record("search", result, args.out)


def run(total: int, queries: int, counter: CallCounter) -> dict:
    from chalicelib.config import reset_settings
    reset_settings()
    from chalicelib.models.message import Message
    from chalicelib.models.registry import all_models
    from chalicelib.models.search import SearchPosting
    from chalicelib.search import service
    from chalicelib.search.index import DynamoIndex, SearchFilters
    from chalicelib.search.tokens import query_tokens

    for model in all_models():
        model.create_table(wait=False)
    tenant_id = "tnt_bench"
    indexer = DynamoIndex()
    started = time.perf_counter()
    postings = 0
    messages_table, index_table = moto_table(Message), moto_table(SearchPosting)
    for message in corpus(tenant_id, total):
        load_item(messages_table, message.serialize())
        for item in indexer.postings(message):
            load_item(index_table, item.serialize())
            postings += 1
    load = time.perf_counter() - started
    print(f"stored and indexed {total:,} messages ({postings:,} index items) in {load:.0f} s")

    rng = random.Random(11)
    kinds = {
        "common word (~10 % of messages)": lambda: word(0),
        "mid-frequency word": lambda: word(rng.randrange(20, 60)),
        "rare word": lambda: word(rng.randrange(2_000, VOCABULARY)),
        "two words (AND)": lambda: f"{word(rng.randrange(1, 5))} {word(rng.randrange(5, 40))}",
        "sender address": lambda: (lambda n: f"s{n}@d{n % DOMAINS}.example")(rng.randrange(SENDERS)),
        "@domain": lambda: f"@d{rng.randrange(DOMAINS)}.example",
    }
    results = {}
    for label, make in kinds.items():
        for scope in ("tenant", "one mailbox"):
            filters = SearchFilters(mailbox_ids=frozenset({f"mbx_{rng.randrange(MAILBOXES):02d}"})
                                    if scope == "one mailbox" else None)
            timings, hits, calls = [], 0, 0
            for _ in range(queries):
                tokens = query_tokens(make())
                counter.reset()
                began = time.perf_counter()
                found, _ = service.search(tenant_id, tokens, filters, paired=None, limit=50, start_key=None)
                timings.append((time.perf_counter() - began) * 1000)
                hits += len(found)
                calls += sum(counter.calls.values())
            key = f"{label}, {scope}"
            results[key] = {"p50_ms": round(statistics.median(timings), 1),
                            "p95_ms": round(percentile(timings, 0.95), 1),
                            "mean_results": round(hits / queries, 1),
                            "dynamodb_calls_per_search": round(calls / queries, 1)}
            row = results[key]
            print(f"{key:45s} p50 {row['p50_ms']:7.1f} ms  p95 {row['p95_ms']:7.1f} ms  "
                  f"results {row['mean_results']:5.1f}  DynamoDB calls {row['dynamodb_calls_per_search']}")
    return {"messages": total, "index_items": postings, "load_seconds": round(load, 1), "queries_per_kind": queries,
            "page_size": 50, "searches": results}


if __name__ == "__main__":
    main()
