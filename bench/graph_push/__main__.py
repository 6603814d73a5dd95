"""`python -m bench.graph_push`: Microsoft Graph change notification → message stored, latency over N pushes.

One outlook mailbox on the fake Microsoft (`devservers/fake_microsoft.py`, TLS with a generated CA, real MSAL)
with live subscriptions (created through the validation handshake against the app); then, N times: a new
inbox message appears, the fake POSTs its change notification to `/v1/push/graph` (the Chalice app called
in-process, as API Gateway would), the app requests a sync (SQS in moto), and the worker handler
(`chalicelib.sync.worker.handle_batch`) takes the job at once: delta → `$value` → S3 + DynamoDB. Latency is
from the notification POST to the message being stored — mailbridge's processing only; in AWS the SQS → Lambda
poll adds its own delay. Also reported: the webhook's answer time (Graph wants < 3 s) and Graph requests per
pushed sync. Results are printed and written to bench/results/graph_push.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.imap_ingest.world import moto_world  # noqa: E402
from bench.record import record  # noqa: E402
from bench.stats import percentile  # noqa: E402


def _in_process_deliver(app):
    from chalice.config import Config
    from chalice.local import LocalGateway
    gateway = LocalGateway(app, Config(chalice_stage="bench"))
    timings: list[float] = []

    def deliver(url: str, body: bytes, headers: dict) -> tuple[int, dict, bytes]:
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        event = gateway.event_converter.create_lambda_event("POST", path, {k.lower(): v for k, v in headers.items()},
                                                           body)
        event["requestContext"]["identity"]["sourceIp"] = "203.0.113.10"
        event["requestContext"]["requestId"] = "bench"
        started = time.perf_counter()
        answer = app(event, None)
        timings.append(time.perf_counter() - started)
        return answer["statusCode"], answer.get("headers") or {}, (answer.get("body") or "").encode()
    return deliver, timings


def run(notifications: int) -> dict:
    from devservers.fake_microsoft import FakeMicrosoft
    from devservers.tlsca import make_loopback_tls
    tls = make_loopback_tls(Path(tempfile.mkdtemp(prefix="bench-ms-")))
    with moto_world(), FakeMicrosoft(tls=tls) as fake:
        os.environ.update({"REQUESTS_CA_BUNDLE": fake.ca_path, "MAILBRIDGE_MICROSOFT_AUTHORITY_HOST": fake.base_url,
                           "MAILBRIDGE_GRAPH_API_ROOT": fake.graph_root})
        import boto3

        from chalicelib.config import reset_settings
        reset_settings()
        from app import app
        from chalicelib.credentials.store import CredentialStore
        from chalicelib.models.message import Message
        from chalicelib.providers.kinds import provider_for
        from chalicelib.sync.push import save_state
        from chalicelib.sync.worker import handle_batch
        from tests.graph_helpers import ADDRESS, CLIENT_ID, CLIENT_SECRET, consent_cache, make_outlook_server, raw_mail
        from tests.sync_helpers import FakeContext, job_event, make_mailbox, receive_event, reload

        fake.identity.register_app(CLIENT_ID, CLIENT_SECRET)
        fake.add_user(ADDRESS)
        fake.deliver, answer_times = _in_process_deliver(app)
        server = make_outlook_server("tnt_bench")
        mailbox = make_mailbox("tnt_bench", mailbox_type="outlook", mail_server_id=server.server_id,
                               import_since=dt.date.today().isoformat())
        mailbox.email = ADDRESS
        mailbox.save()
        CredentialStore(mailbox.tenant_id, mailbox.mailbox_id).save({"msal_cache": consent_cache(fake)}, 0)
        mailbox = reload(mailbox)
        with provider_for(mailbox, CredentialStore(mailbox.tenant_id, mailbox.mailbox_id).decode(mailbox)) as graph:
            save_state(mailbox, graph.start_push())
        handle_batch(job_event((mailbox.tenant_id, mailbox.mailbox_id)), FakeContext())
        queue = os.environ["MAILBRIDGE_SYNC_QUEUE_URL"]
        sqs = boto3.client("sqs")
        answer_times.clear()
        latencies, graph_calls = [], []
        for n in range(notifications):
            message_id = fake.mail.add_message(ADDRESS, "inbox", raw_mail(n, subject="Bench"))
            calls_before = len(fake.graph_requests)
            started = time.perf_counter()
            answers = fake.notify(ADDRESS, "inbox", message_id)
            assert [a[0] for a in answers] == [202], answers
            event = receive_event(queue, 10)
            assert len(event["Records"]) == 1, event
            failures = handle_batch(event, FakeContext())["batchItemFailures"]
            assert failures == [], failures
            for record in event["Records"]:     # what the Lambda SQS integration does after a success
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=record["receiptHandle"])
            assert Message.by_provider_ref.count(f"{mailbox.mailbox_id}#inbox#{message_id}") == 1, n
            latencies.append(time.perf_counter() - started)
            graph_calls.append(len(fake.graph_requests) - calls_before)
        return {"when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "notifications": notifications,
                "latency_p50_s": round(statistics.median(latencies), 3),
                "latency_p95_s": round(percentile(latencies, 0.95), 3),
                "latency_max_s": round(max(latencies), 3),
                "webhook_answer_p50_ms": round(statistics.median(answer_times) * 1000, 1),
                "webhook_answer_p95_ms": round(percentile(answer_times, 0.95) * 1000, 1),
                "graph_requests_per_pushed_sync": statistics.median(graph_calls),
                "max_concurrent_graph_requests": fake.max_concurrency.get(ADDRESS, 0)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.graph_push", description=__doc__.splitlines()[0])
    parser.add_argument("--notifications", type=int, default=200)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "graph_push.json"))
    args = parser.parse_args(argv)
    results = run(args.notifications)
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    record("graph_push", results, args.out)
    return results


if __name__ == "__main__":
    main()
