"""Fan-out: one scheduler tick (the :00/:30 cron) over many mailboxes — calls made, time — projected to 100,000.

    python -m bench.fanout [--mailboxes 10000] [--tenants 1000] [--project 100000]

Seeds active mailboxes spread over tenants into in-process moto (`bench/imap_ingest/world.py`), runs
`chalicelib.sync.scheduler.run_tick` once, checks that every mailbox got exactly one job, and counts the AWS
calls by operation. moto answers in-process (the local stack's emulator, `infra/local_moto.py`), so its wall
time is not AWS's; the projection multiplies the counted calls, scaled to `--project` mailboxes, by typical
in-region latencies (the constants below) along the tick's critical path: the GSI pages and their tenant
BatchGetItem run one after the other in the generator, while `SendMessageBatch` calls run
`enqueue.SEND_CONCURRENCY` at a time beside them.
"""
from __future__ import annotations

import argparse
import math
import platform
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.imap_ingest.world import moto_world  # noqa: E402
from bench.record import record  # noqa: E402

LATENCY_MS = {"Query": 10.0, "BatchGetItem": 10.0, "SendMessageBatch": 20.0}   # typical in-region p50s
TARGET_SECONDS = 60.0


def seed(mailboxes: int, tenants: int) -> None:
    from chalicelib.ids import new_id
    from chalicelib.models.mailbox import Mailbox
    from chalicelib.models.tenant import Tenant
    from chalicelib.timeutil import now_iso
    now = now_iso()
    with Tenant.batch_write() as batch:
        for index in range(tenants):
            batch.save(Tenant(f"tnt_bench{index:06d}", name="Bench", plan="standard", created_at=now,
                              updated_at=now))
    with Mailbox.batch_write() as batch:
        for index in range(mailboxes):
            batch.save(Mailbox(f"tnt_bench{index % tenants:06d}", new_id("mbx"), name="Box", type="imap",
                               email=f"user{index}@example.com", import_since="2026-11-20", status="active",
                               kind="shared", created_at=now, updated_at=now))


def queued_jobs(queue_url: str) -> int:
    import boto3
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def project(calls: dict[str, int], mailboxes: int, target: int, concurrency: int) -> dict:
    scale = target / mailboxes
    scaled = {name: math.ceil(count * scale) for name, count in calls.items()}
    serial = sum(scaled.get(name, 0) * LATENCY_MS[name] for name in ("Query", "BatchGetItem")) / 1000
    sends = scaled.get("SendMessageBatch", 0) * LATENCY_MS["SendMessageBatch"] / concurrency / 1000
    return {"mailboxes": target, "calls": scaled, "serial_s": round(serial, 1), "sends_s": round(sends, 1),
            "tick_s_upper_bound": round(serial + sends, 1), "tick_s_overlapped": round(max(serial, sends), 1)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout")
    parser.add_argument("--mailboxes", type=int, default=10_000)
    parser.add_argument("--tenants", type=int, default=1_000)
    parser.add_argument("--project", type=int, default=100_000)
    args = parser.parse_args(argv)
    with moto_world() as counter:
        import os

        from chalicelib.sync import enqueue, scheduler
        started = time.perf_counter()
        seed(args.mailboxes, args.tenants)
        seeded_s = time.perf_counter() - started
        counter.reset()
        started = time.perf_counter()
        counts = scheduler.run_tick(jitter_seconds=0)
        tick_s = time.perf_counter() - started
        calls = {operation: n for (service, operation), n in counter.calls.items()}
        queued = queued_jobs(os.environ["MAILBRIDGE_SYNC_QUEUE_URL"])
        concurrency = enqueue.SEND_CONCURRENCY
    assert counts["enqueued"] == args.mailboxes == queued and counts["failed"] == 0, (counts, queued)
    projection = project(calls, args.mailboxes, args.project, concurrency)
    result = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "mailboxes": args.mailboxes, "tenants": args.tenants, "seed_s": round(seeded_s, 1),
        "tick_in_moto_s": round(tick_s, 1), "jobs_queued": queued, "calls": calls,
        "send_concurrency": concurrency, "latency_ms_assumed": LATENCY_MS, "projection": projection,
        "target_s": TARGET_SECONDS, "meets_target": projection["tick_s_upper_bound"] <= TARGET_SECONDS,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(f"tick over {args.mailboxes:,} mailboxes of {args.tenants:,} tenants: {tick_s:.1f} s in moto, "
          f"{queued:,} jobs queued; calls: {calls}")
    print(f"projected to {args.project:,} mailboxes: {projection['calls']} → ≤ {projection['tick_s_upper_bound']} s "
          f"(serial part {projection['serial_s']} s, sends {projection['sends_s']} s at {concurrency} in flight); "
          f"target ≤ {TARGET_SECONDS:.0f} s: {'met' if result['meets_target'] else 'NOT met'}; "
          f"peak RSS {result['peak_rss_mb']} MB")
    record("fanout", result)
    return result


if __name__ == "__main__":
    main()
