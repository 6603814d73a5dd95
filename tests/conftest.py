"""Test environment: settings via env before any model import, moto for AWS, an API caller.

Tables are created from the PynamoDB models here (tests and the local stack are the only places that do);
`tests/integration/test_infra_template.py` checks the CloudFormation template defines the same tables.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# fixtures for every test: `dovecot` (a real Dovecot IMAP server, session), `google` (the fake Google on
# loopback), `fake_ms` and `loopback_tls` (the fake Microsoft over TLS), `conflicts_ahead` (DynamoDB
# transaction conflicts injected under PynamoDB)
pytest_plugins = ["tests.dovecot", "tests.gmail_fixtures", "tests.graph_helpers", "tests.dynamo_conflicts"]

OPERATOR_KEY = "mbo_" + "o" * 43
os.environ.update({
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
    "MAILBRIDGE_STAGE": "test", "MAILBRIDGE_TABLE_PREFIX": "mbtest-",
    "MAILBRIDGE_SIGNING_KEY": "test-signing-key-not-secret",
    "MAILBRIDGE_RAW_BUCKET": "mbtest-raw", "MAILBRIDGE_SSRF_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
    "MAILBRIDGE_ALLOW_INSECURE_MAIL_TRANSPORT": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
})
os.environ.pop("AWS_ENDPOINT_URL", None)
import hashlib  # noqa: E402

os.environ["MAILBRIDGE_OPERATOR_KEY_SHA256"] = hashlib.sha256(OPERATOR_KEY.encode()).hexdigest()

import pytest  # noqa: E402
from moto import mock_aws  # noqa: E402

from chalicelib.config import reset_settings  # noqa: E402

reset_settings()


@pytest.fixture
def aws():
    """A fresh moto world with every table, the raw bucket, the queues and a KMS key."""
    with mock_aws():
        import boto3

        from chalicelib import aws as aws_clients
        from chalicelib.api import auth_cache
        from chalicelib.models.registry import all_models
        from chalicelib.push import tenant_may_sync as push_tenant_may_sync
        from chalicelib.security.crypto import clear_data_key_cache
        from chalicelib.sync.worker import tenant_may_sync
        aws_clients.reset_clients()
        tenant_may_sync.clear()          # a warm worker's tenant cache must not outlive the moto world
        push_tenant_may_sync.clear()     # nor the push endpoints'
        clear_data_key_cache()           # nor its decrypted data keys
        auth_cache.forget_all()          # nor the API's verified keys
        for model in all_models():
            model.create_table(wait=False)
        boto3.client("s3").create_bucket(Bucket=os.environ["MAILBRIDGE_RAW_BUCKET"])
        sqs = boto3.client("sqs")
        sync_url = sqs.create_queue(QueueName="mbtest-sync")["QueueUrl"]
        events_url = sqs.create_queue(QueueName="mbtest-events")["QueueUrl"]
        key_id = boto3.client("kms").create_key(Description="mbtest")["KeyMetadata"]["KeyId"]
        old = {k: os.environ.get(k) for k in ("MAILBRIDGE_SYNC_QUEUE_URL", "MAILBRIDGE_EVENTS_QUEUE_URL",
                                              "MAILBRIDGE_KMS_KEY_ID")}
        os.environ.update({"MAILBRIDGE_SYNC_QUEUE_URL": sync_url, "MAILBRIDGE_EVENTS_QUEUE_URL": events_url,
                           "MAILBRIDGE_KMS_KEY_ID": key_id})
        reset_settings()
        try:
            yield {"sync_queue_url": sync_url, "events_queue_url": events_url, "kms_key_id": key_id}
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            reset_settings()
            aws_clients.reset_clients()


class ApiCaller:
    """Calls the Chalice app as API Gateway would, with a chosen client `sourceIp`."""

    def __init__(self, app):
        from chalice.local import LocalGateway
        from chalice.config import Config
        self.app = app
        self.gateway = LocalGateway(app, Config(chalice_stage="test"))

    def __call__(self, method: str, path: str, *, key: str | None = None, user: str | None = None,
                 json_body=None, body: bytes | str | None = None, headers: dict | None = None,
                 source_ip: str = "203.0.113.10"):
        hdrs = {"content-type": "application/json"}
        if key:
            hdrs["authorization"] = f"Bearer {key}"
        if user:
            hdrs["x-user-id"] = user
        hdrs.update({k.lower(): v for k, v in (headers or {}).items()})
        if json_body is not None:
            body = json.dumps(json_body)
        raw = body.encode() if isinstance(body, str) else body
        event = self.gateway.event_converter.create_lambda_event(method, path, hdrs, raw)
        event["requestContext"]["identity"]["sourceIp"] = source_ip
        event["requestContext"]["requestId"] = "test-request"
        response = self.app(event, None)
        return Result(response)


class Result:
    def __init__(self, response: dict):
        self.status = response["statusCode"]
        self.headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
        body = response.get("body") or ""
        if response.get("isBase64Encoded"):
            import base64
            body = base64.b64decode(body)
        self.body = body
        ctype = self.headers.get("content-type", "")
        self.json = json.loads(body) if "json" in ctype and body else None

    def __repr__(self):
        return f"<Result {self.status} {self.body[:300]!r}>"


@pytest.fixture
def api(aws):
    from app import app
    return ApiCaller(app)


@pytest.fixture
def operator_key():
    return OPERATOR_KEY


@pytest.fixture
def tenant(api):
    """A tenant on the standard plan with its first API key: {"id", "key"}."""
    result = api("POST", "/v1/admin/tenants", key=OPERATOR_KEY,
                 json_body={"name": "Acme CRM customer", "plan": "standard", "own_domains": ["acme-crm.example"]})
    assert result.status == 201, result
    return {"id": result.json["id"], "key": result.json["api_key"]}


@pytest.fixture
def other_tenant(api):
    result = api("POST", "/v1/admin/tenants", key=OPERATOR_KEY, json_body={"name": "Other", "plan": "standard"})
    assert result.status == 201, result
    return {"id": result.json["id"], "key": result.json["api_key"]}
