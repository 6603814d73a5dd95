"""An in-process moto world for the benchmark (the same resources `tests/conftest.py` creates), plus a
counter of AWS API calls made through botocore (boto3 and PynamoDB both go through `_make_api_call`).
moto gets the local stack's emulator patches (`infra/local_moto.py`: item-level transaction rollback instead of
whole-table deep copies, items sized once, cached GSI order, plain-JSON responses), so the figures are the
worker's on the emulator `make run` starts — moto's own costs, not the worker's, dominated the import otherwise."""
from __future__ import annotations

import collections
import contextlib
import os
from typing import Iterator

ENV = {
    "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_SESSION_TOKEN": "bench",
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "MAILBRIDGE_STAGE": "local",
    "MAILBRIDGE_TABLE_PREFIX": "mbbench-", "MAILBRIDGE_SIGNING_KEY": "bench-signing-key",
    "MAILBRIDGE_RAW_BUCKET": "mbbench-raw", "MAILBRIDGE_SSRF_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
    "MAILBRIDGE_ALLOW_INSECURE_MAIL_TRANSPORT": "true", "POWERTOOLS_LOG_LEVEL": "ERROR",
}
DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


class ApiCounter:
    """Counts botocore operations by (service, operation); BatchWriteItem/TransactWriteItems count items."""

    def __init__(self):
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        self.write_items = 0

    def reset(self) -> None:
        self.calls.clear()
        self.write_items = 0

    def dynamodb_writes(self) -> int:
        return self.write_items

    def service_calls(self, service: str) -> int:
        return sum(n for (svc, _), n in self.calls.items() if svc == service)

    def dynamodb_write_calls(self) -> int:
        return sum(self.calls[("dynamodb", op)] for op in DYNAMODB_WRITES)

    @contextlib.contextmanager
    def paused(self):
        """Calls made inside (the benchmark's own harness, not the worker) are not counted."""
        saved, items = collections.Counter(self.calls), self.write_items
        try:
            yield
        finally:
            self.calls, self.write_items = saved, items

    def count(self, service: str, operation: str) -> int:
        return self.calls[(service, operation)]


@contextlib.contextmanager
def moto_world() -> Iterator[ApiCounter]:
    """Env + mock_aws + every model table, the raw bucket, queues and a KMS key; yields the API counter."""
    os.environ.update(ENV)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    import botocore.client
    from moto import mock_aws

    from chalicelib.config import reset_settings

    counter = ApiCounter()
    original = botocore.client.BaseClient._make_api_call

    def counting(self, operation_name, api_params):
        service = self.meta.service_model.service_name
        counter.calls[(service, operation_name)] += 1
        if service == "dynamodb" and operation_name in DYNAMODB_WRITES:
            if operation_name == "BatchWriteItem":
                counter.write_items += sum(len(v) for v in api_params.get("RequestItems", {}).values())
            elif operation_name == "TransactWriteItems":
                counter.write_items += len(api_params.get("TransactItems", []))
            else:
                counter.write_items += 1
        return original(self, operation_name, api_params)

    from infra import local_moto
    local_moto.install()             # the local stack's emulator (see that module)
    with mock_aws():
        import boto3

        from chalicelib import aws as aws_clients
        from chalicelib.models.registry import all_models
        reset_settings()
        aws_clients.reset_clients()
        for model in all_models():
            model.create_table(wait=False)
        boto3.client("s3").create_bucket(Bucket=ENV["MAILBRIDGE_RAW_BUCKET"])
        sqs = boto3.client("sqs")
        os.environ["MAILBRIDGE_SYNC_QUEUE_URL"] = sqs.create_queue(QueueName="mbbench-sync")["QueueUrl"]
        os.environ["MAILBRIDGE_EVENTS_QUEUE_URL"] = sqs.create_queue(QueueName="mbbench-events")["QueueUrl"]
        os.environ["MAILBRIDGE_KMS_KEY_ID"] = boto3.client("kms").create_key(Description="bench")["KeyMetadata"][
            "KeyId"]
        reset_settings()
        botocore.client.BaseClient._make_api_call = counting
        try:
            yield counter
        finally:
            botocore.client.BaseClient._make_api_call = original
            aws_clients.reset_clients()
