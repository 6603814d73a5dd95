"""Gmail push benchmark: push → stored latency and the push handler's own time, against the fake Google on
loopback and moto in-process, through the real googleapiclient/google-auth and the API's Chalice app.

    python -m bench.gmail_push [--pushes 200]

Per round: the fake delivers one message and sends the Pub/Sub push exactly as Google does (signed OIDC
token, base64 `{emailAddress, historyId}`) to `POST /v1/push/gmail` through Chalice's local gateway (t0 = the
push is sent; handler time = that call); the queued job is then handed to the worker's `handle_batch` at once
(one pass: history.list per label + one batch fetch + store), and t1 is when the message is stored. SQS
delivery delay, Pub/Sub's own latency and Lambda cold starts are not in these numbers; moto runs in the same
process (DynamoDB/S3/SQS calls cost CPU here, network latency in AWS).
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.record import record  # noqa: E402
from bench.stats import percentile  # noqa: E402


def configure_env() -> None:
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
                       "MAILBRIDGE_TABLE_PREFIX": "bench-", "MAILBRIDGE_STAGE": "test",
                       "MAILBRIDGE_SIGNING_KEY": "bench-signing-key", "MAILBRIDGE_RAW_BUCKET": "bench-raw",
                       "POWERTOOLS_LOG_LEVEL": "ERROR"})
    os.environ.pop("AWS_ENDPOINT_URL", None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=200)
    args = parser.parse_args(argv)
    configure_env()

    import boto3
    from chalice.config import Config
    from chalice.local import LocalGateway
    from moto import mock_aws

    from chalicelib.config import reset_settings
    from devservers.fake_google import FakeGoogle

    with mock_aws(), FakeGoogle() as google:
        sqs = boto3.client("sqs")
        os.environ.update({"MAILBRIDGE_SYNC_QUEUE_URL": sqs.create_queue(QueueName="bench-sync")["QueueUrl"],
                           "MAILBRIDGE_EVENTS_QUEUE_URL": sqs.create_queue(QueueName="bench-events")["QueueUrl"],
                           "MAILBRIDGE_KMS_KEY_ID": boto3.client("kms").create_key()["KeyMetadata"]["KeyId"],
                           **google.environment()})
        reset_settings()
        from app import app
        from chalicelib import aws as aws_clients
        from chalicelib.models.registry import all_models
        from chalicelib.sync.store import stored_message_ids
        from chalicelib.sync import engine, worker
        from tests.gmail_fixtures import AUDIENCE, EMAIL, SERVICE_ACCOUNT, gmail_provider, mail, make_gmail_mailbox
        from tests.sync_helpers import FakeContext, receive_event, reload

        aws_clients.reset_clients()
        for model in all_models():
            model.create_table(wait=False)
        boto3.client("s3").create_bucket(Bucket="bench-raw")
        mailbox = make_gmail_mailbox(google)
        engine.sync_mailbox(reload(mailbox), gmail_provider(mailbox), float("inf"))
        gateway = LocalGateway(app, Config(chalice_stage="bench"))
        queue_url = os.environ["MAILBRIDGE_SYNC_QUEUE_URL"]

        handler_ms, latency_ms, gmail_calls = [], [], []
        for n in range(args.pushes):
            message_id = google.deliver(EMAIL, mail(1000 + n, "-bench"))
            data = base64.b64encode(json.dumps({"emailAddress": EMAIL,
                                                "historyId": google.accounts[EMAIL].history_id}).encode()).decode()
            token = google.sign_push_token({"aud": AUDIENCE, "email": SERVICE_ACCOUNT})
            body = json.dumps({"message": {"data": data, "messageId": str(n)}, "subscription": "projects/p/s/x"})
            event = gateway.event_converter.create_lambda_event(
                "POST", "/v1/push/gmail", {"content-type": "application/json", "authorization": f"Bearer {token}"},
                body.encode())
            event["requestContext"]["identity"]["sourceIp"] = "203.0.113.10"
            t0 = time.perf_counter()             # the push is sent (signing it is Google's work, not timed)
            response = app(event, None)
            handler_ms.append((time.perf_counter() - t0) * 1000)
            assert response["statusCode"] == 204, response
            google.calls.clear()
            batch = receive_event(queue_url, 10)
            worker.handle_batch(batch, FakeContext())
            for queued in batch["Records"]:          # what Lambda's SQS source does after a successful batch
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=queued["receiptHandle"])
            latency_ms.append((time.perf_counter() - t0) * 1000)
            gmail_calls.append(sum(v for k, v in google.calls.items() if k != "messages.get"))  # parts of a batch
            assert stored_message_ids(mailbox, "inbox", [message_id]), message_id   # checked outside the clock

    result = {"when": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
              "machine": f"{platform.machine()}, {os.cpu_count()} cpu, Python {platform.python_version()}",
              "pushes": args.pushes,
              "handler_ms": {"p50": round(percentile(handler_ms, 0.5), 1),
                             "p95": round(percentile(handler_ms, 0.95), 1), "first": round(handler_ms[0], 1)},
              "push_to_stored_ms": {"p50": round(percentile(latency_ms, 0.5), 1),
                                    "p95": round(percentile(latency_ms, 0.95), 1)},
              "gmail_round_trips_per_pass": statistics.median(gmail_calls)}
    print(json.dumps(result, indent=2))
    record("gmail_push", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
