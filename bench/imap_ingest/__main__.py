"""`python -m bench.imap_ingest`: IMAP ingest throughput through the real worker, against mbsync and offlineimap.

1. Generates a deterministic corpus (default 5,000 messages, ~20 % in Sent; cached under the temp dir) and loads
   it into a Dovecot started here (`devservers/dovecot.py`, implicit TLS with a generated CA).
2. Runs the sync worker (`chalicelib.sync.worker.handle_batch`, the Lambda handler body) against in-process
   moto until the mailbox is fully imported: messages/s, MB/s, per message the S3 PUTs and the DynamoDB and
   SQS calls (calls, not items; the harness's own queue reads excluded), the time spent inside the IMAP
   provider alone (changes + fetch, the part comparable with mbsync), the process's peak RSS
   (`resource.getrusage`; it includes moto, which keeps every table and raw object in memory), the most raw
   mail the engine held at once, and a projection for real AWS (calls on the critical path × typical
   latency, the S3 PUTs divided by their concurrency).
3. Runs `--idle-runs` idle syncs (nothing new; default 10) as the scheduler sends them (reason `schedule`, so
   through the idle check, `sync/idle_check.py`): provider round trips, fetches, and the average DynamoDB
   write calls/items and KMS calls per idle sync.
4. Runs `mbsync` (isync, C) and `offlineimap` (offlineimap3, Python) pulling the same folders over the same
   TLS port into a local Maildir, alternating with the provider-only pull in the same run; prints the ratios.
Results are printed and written to bench/results/imap_ingest.json.
"""
from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from devservers.dovecot import DovecotServer  # noqa: E402
from bench.imap_ingest.corpus import load_corpus  # noqa: E402
from bench.imap_ingest.mbsync import run_mbsync  # noqa: E402
from bench.imap_ingest.offlineimap import run_offlineimap  # noqa: E402
from bench.imap_ingest.world import moto_world  # noqa: E402
from bench.record import record  # noqa: E402


class _LambdaContext:
    def __init__(self, seconds: float):
        self.seconds = seconds

    def get_remaining_time_in_millis(self) -> int:
        return int(self.seconds * 1000)


class _Spy:
    """Wraps the worker's provider to record change sets and fetched refs."""

    def __init__(self, provider, log: dict):
        self.provider, self.log = provider, log

    def folders(self):
        return self.provider.folders()

    def changes(self, folder, cursor, **kw):
        started = time.perf_counter()
        change_set = self.provider.changes(folder, cursor, **kw)
        self.log["provider_seconds"] += time.perf_counter() - started
        self.log["change_sets"].append(change_set)
        return change_set

    def fetch(self, refs, **kw):
        """Times only the provider's own work (the engine stores each message between two yields)."""
        self.log["fetched"] += len(refs)
        iterator = iter(self.provider.fetch(refs, **kw))
        while True:
            started = time.perf_counter()
            try:
                fetched = next(iterator)
            except StopIteration:
                self.log["provider_seconds"] += time.perf_counter() - started
                return
            self.log["provider_seconds"] += time.perf_counter() - started
            yield fetched

    def close(self):
        self.provider.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def job_event(tenant_id: str, mailbox_id: str, reason: str = "bench") -> dict:
    body = json.dumps({"tenant_id": tenant_id, "mailbox_id": mailbox_id, "reason": reason,
                       "requested_at": dt.datetime.now(dt.timezone.utc).isoformat()})
    return {"Records": [{"messageId": f"bench-{time.time_ns()}", "receiptHandle": "rh", "body": body,
                         "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                         "md5OfBody": "", "eventSource": "aws:sqs", "awsRegion": "us-east-1",
                         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:mbbench-sync"}]}


def create_mailbox(server: DovecotServer, user: str, password: str, since: dt.date):
    from chalicelib.ids import new_id
    from chalicelib.models.mailbox import Mailbox
    from chalicelib.models.tenant import Tenant
    from chalicelib.security.crypto import encrypt_secrets
    from chalicelib.timeutil import now_iso
    tenant_id, mailbox_id, now = "tnt_bench", new_id("mbx"), now_iso()
    # the worker syncs only mailboxes of an existing tenant whose plan includes mail
    Tenant(tenant_id, name="Bench", plan="standard", created_at=now, updated_at=now).save()
    mailbox = Mailbox(tenant_id, mailbox_id, name="Bench", type="imap", email="alice@acme-crm.example",
                      import_since=since.isoformat(), status="active", created_at=now, updated_at=now,
                      kind="shared", imap={"host": "localhost", "port": server.tls_port, "security": "tls",
                                           "username": user, "login_method": "plain"},
                      secret_ciphertext=encrypt_secrets(tenant_id, mailbox_id, {"password": password}))
    mailbox.save()
    return mailbox


def run_worker(mailbox, log: dict, counter=None, reason: str = "bench") -> int:
    """Runs jobs until the mailbox needs no continuation; returns how many worker invocations it took. The
    harness's own queue reads are not counted (`counter.paused()`)."""
    import contextlib

    import boto3

    from chalicelib.config import get_settings
    from chalicelib.providers import kinds
    from chalicelib.sync import worker

    def factory(box):
        return _Spy(kinds.build_provider(box), log)

    invocations = 0
    sqs, queue = boto3.client("sqs"), get_settings().sync_queue_url
    while True:
        invocations += 1
        result = worker.handle_batch(job_event(mailbox.tenant_id, mailbox.mailbox_id, reason), _LambdaContext(900),
                                     provider_factory=factory)
        if result["batchItemFailures"]:
            raise RuntimeError(f"worker failed: {result}")
        with counter.paused() if counter is not None else contextlib.nullcontext():
            pending = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
            for message in pending:
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        if not any(json.loads(m["Body"]).get("reason") in ("continue", "follow_up") for m in pending):
            return invocations


# Typical single-request latencies from Lambda in the same region (order of magnitude, for the projection
# only): DynamoDB item reads/writes and batches ~10 ms, transactions ~20 ms (two-phase), S3 PUT of a small
# object ~40 ms, SQS SendMessage ~10 ms, KMS Decrypt ~10 ms.
LATENCY_MS = {"dynamodb": 10.0, "dynamodb.TransactWriteItems": 20.0, "s3": 40.0, "sqs": 10.0, "kms": 10.0}


def projection(calls: dict, imported: int, provider_seconds: float, s3_concurrency: int) -> dict:
    """Time on the critical path in real AWS: every call is sequential except the raw PUTs, which run
    `s3_concurrency` at a time; plus the IMAP time measured here."""
    seconds = provider_seconds
    for (service, operation), n in calls.items():
        latency = LATENCY_MS.get(f"{service}.{operation}", LATENCY_MS.get(service, 10.0)) / 1000
        if service == "s3" and operation == "PutObject":
            n = n / s3_concurrency
        seconds += n * latency
    return {"projected_aws_seconds": round(seconds, 1),
            "projected_aws_messages_per_second": round(imported / max(seconds, 1e-9), 1),
            "projection_latencies_ms": LATENCY_MS, "projection_s3_put_concurrency": s3_concurrency}


class _HeldBytes:
    """Wraps the page store to record the most raw mail the engine handed it at once."""

    def __init__(self):
        self.peak = 0

    def install(self):
        from chalicelib.sync import store_page
        original = store_page.save_page

        def save_page(mailbox, fetched, **kw):
            self.peak = max(self.peak, sum(len(f.raw or b"") for f in fetched))
            return original(mailbox, fetched, **kw)
        store_page.save_page = save_page


def run_through_worker(server: DovecotServer, user: str, password: str, since: dt.date,
                       total_bytes: int, idle_runs: int) -> dict:
    """Full import through the worker into moto, then idle syncs; the figures of both."""
    import resource

    from chalicelib.config import get_settings
    from chalicelib.models.mailbox import Mailbox
    with moto_world() as counter:
        mailbox = create_mailbox(server, user, password, since)
        held = _HeldBytes()
        held.install()
        full_log = {"change_sets": [], "fetched": 0, "provider_seconds": 0.0}
        counter.reset()
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        invocations = run_worker(mailbox, full_log, counter)
        full_seconds = time.perf_counter() - started
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with counter.paused():
            fresh = Mailbox.get(mailbox.tenant_id, mailbox.mailbox_id, consistent_read=True)
        imported = int(fresh.imported_count or 0)
        per = max(imported, 1)
        full_calls = collections.Counter(counter.calls)
        dynamodb_writes, s3_puts = counter.dynamodb_writes(), counter.count("s3", "PutObject")
        calls = {f"{service}.{operation}": round(n / per, 4)
                 for (service, operation), n in full_calls.most_common(12)}
        figures = {
            "dynamodb_calls_per_message": round(counter.service_calls("dynamodb") / per, 4),
            "dynamodb_write_calls_per_message": round(counter.dynamodb_write_calls() / per, 4),
            "dynamodb_write_items_per_message": round(dynamodb_writes / per, 2),
            "s3_puts_per_message": round(s3_puts / per, 3),
            "sqs_calls_per_message": round(counter.service_calls("sqs") / per, 4),
            "kms_calls_full_import": counter.service_calls("kms"),
        }
        idle_log = {"change_sets": [], "fetched": 0, "provider_seconds": 0.0}
        counter.reset()
        started = time.perf_counter()
        for _ in range(idle_runs):
            with counter.paused():
                fresh = Mailbox.get(mailbox.tenant_id, mailbox.mailbox_id, consistent_read=True)
            run_worker(fresh, idle_log, counter, reason="schedule")     # what the scheduler sends: the idle check
        idle_seconds = (time.perf_counter() - started) / idle_runs
    return {
        "imported": imported, "full_sync_seconds": round(full_seconds, 2), "worker_invocations": invocations,
        "pages": len(full_log["change_sets"]),
        "messages_per_second": round(imported / full_seconds, 1),
        "megabytes_per_second": round(total_bytes / 1e6 / full_seconds, 2),
        **figures,
        "aws_calls_per_message": calls,
        "provider_seconds_within_sync": round(full_log["provider_seconds"], 2),
        "peak_rss_mb_process": round(rss_after / 1024, 1),
        "peak_rss_mb_before_import": round(rss_before / 1024, 1),
        "peak_raw_bytes_held_by_engine": held.peak,
        "page_raw_bytes_setting": get_settings().page_raw_bytes,
        **projection(full_calls, imported, full_log["provider_seconds"], get_settings().s3_put_concurrency),
        "idle_syncs": idle_runs,
        "idle_sync_seconds": round(idle_seconds, 3),
        "idle_round_trips_per_folder": {cs.folder: cs.round_trips for cs in idle_log["change_sets"][:2]},
        "idle_fetched": idle_log["fetched"],
        "idle_dynamodb_write_calls_avg": round(counter.dynamodb_write_calls() / idle_runs, 2),
        "idle_dynamodb_write_items_avg": round(counter.dynamodb_writes() / idle_runs, 2),
        "idle_kms_calls_avg": round(counter.service_calls("kms") / idle_runs, 2),
        "idle_aws_calls_avg": {f"{service}.{operation}": round(n / idle_runs, 2)
                               for (service, operation), n in counter.calls.most_common(10)},
    }


def pull_with_provider(server: DovecotServer, user: str, password: str, since: dt.date) -> tuple[float, int]:
    """The IMAP provider alone, paged and batched as the engine does (100 refs a page, 20 a fetch), bodies
    discarded: the part of a sync comparable with mbsync. Returns (seconds, messages fetched)."""
    from chalicelib.providers.base import ConnectionSettings
    from chalicelib.providers.imap.context import ImapContext
    from chalicelib.providers.imap.adapter import ImapProvider
    settings = ConnectionSettings(host="localhost", port=server.tls_port, security="tls", username=user,
                                  address="127.0.0.1")
    context = ImapContext(tenant_id="t", mailbox_id="m", email="alice@acme-crm.example", imap=settings,
                              secrets={"password": password})
    started, count = time.perf_counter(), 0
    with ImapProvider(context, ssl_context=server.client_ssl_context()) as provider:
        for folder in provider.folders():
            cursor = None
            while True:
                change_set = provider.changes(folder, cursor, since=since, page_size=100)
                for start in range(0, len(change_set.new), 20):
                    count += sum(1 for f in provider.fetch(change_set.new[start:start + 20], max_bytes=50 << 20)
                                 if f.raw is not None)
                cursor = change_set.next_cursor
                if not change_set.has_more:
                    break
    return time.perf_counter() - started, count


def compare_with_mbsync(server: DovecotServer, user: str, password: str, since: dt.date, rounds: int,
                        peers: tuple[str, ...] = ("mbsync", "offlineimap")) -> dict:
    """Alternates provider-only pulls and each peer's pull `rounds` times; medians (the machine may be shared,
    so the ratios come from runs side by side)."""
    runners = {"mbsync": run_mbsync, "offlineimap": run_offlineimap}
    provider_runs: list[tuple[float, int]] = []
    peer_runs: dict[str, list[tuple[float, int]]] = {peer: [] for peer in peers}
    for _ in range(rounds):
        provider_runs.append(pull_with_provider(server, user, password, since))
        for peer in peers:
            peer_runs[peer].append(runners[peer](port=server.tls_port, user=user, password=password,
                                                 ca_pem=server.ca_pem))
    provider_s = statistics.median(t for t, _ in provider_runs)
    out = {"compare_rounds": rounds, "provider_pull_seconds_median": round(provider_s, 2),
           "provider_pull_messages": provider_runs[0][1],
           "provider_pull_messages_per_second": round(provider_runs[0][1] / provider_s, 1)}
    for peer, runs in peer_runs.items():
        peer_s = statistics.median(t for t, _ in runs)
        out.update({f"{peer}_seconds_median": round(peer_s, 2), f"{peer}_messages": runs[0][1],
                    f"{peer}_messages_per_second": round(runs[0][1] / peer_s, 1),
                    f"ratio_provider_to_{peer}_time": round(provider_s / peer_s, 2)})
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.imap_ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="provider-vs-mbsync comparison rounds")
    parser.add_argument("--compare-only", action="store_true", help="skip the worker/moto run")
    parser.add_argument("--idle-runs", type=int, default=10, help="idle syncs averaged after the import")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "imap_ingest.json"))
    args = parser.parse_args(argv)

    now = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    started = time.perf_counter()
    corpus = load_corpus(args.messages, args.seed, now)
    print(f"corpus: {len(corpus)} messages, {sum(len(m.raw) for m in corpus) / 1e6:.1f} MB "
          f"({sum(m.folder == 'Sent' for m in corpus)} in Sent), built/loaded in {time.perf_counter() - started:.1f} s")
    total_bytes = sum(len(m.raw) for m in corpus)

    with DovecotServer() as server:
        user, password = server.new_user("bench")
        started = time.perf_counter()
        for folder in ("INBOX", "Sent"):
            server.append_many(user, folder, ((m.raw, m.flags, m.date) for m in corpus if m.folder == folder))
        print(f"dovecot: loaded in {time.perf_counter() - started:.1f} s")
        os.environ["SSL_CERT_FILE"] = str(server.base / "tls" / "cert.pem")  # trust the bench CA (only)
        since = (now - dt.timedelta(days=7)).date()

        results = {"when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                   "machine": f"{platform.machine()}, {os.cpu_count()} cpu, Python {platform.python_version()}",
                   "messages": len(corpus), "megabytes": round(total_bytes / 1e6, 1)}
        if not args.compare_only:
            results.update(run_through_worker(server, user, password, since, total_bytes, args.idle_runs))
        results.update(compare_with_mbsync(server, user, password, since, args.rounds))
        if "full_sync_seconds" in results:
            for peer in ("mbsync", "offlineimap"):
                results[f"ratio_worker_sync_to_{peer}_time"] = round(
                    results["full_sync_seconds"] / results[f"{peer}_seconds_median"], 1)
        results["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    record("imap_ingest", results, args.out)
    return results


if __name__ == "__main__":
    main()
