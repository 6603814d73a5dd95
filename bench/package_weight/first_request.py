"""Probe (run in a fresh interpreter by `bench.package_weight`): the API's cold import and its first request.

    python -m bench.package_weight.first_request      # prints one JSON line

Times `import app`, then — after a tenant and an API key are stored in moto (untimed, and the AWS clients and
PynamoDB connections that setup made are dropped again, so the request creates its own as on Lambda) — the
first and second `GET /v1/mailboxes` through the handler as API Gateway invokes it. Pydantic builds an API
model on its first use (`ApiModel`, `defer_build=True`), so "import + first request" is the figure deferral
cannot hide. moto answers in-process, so the request times include moto's own work but no network.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
       "AWS_REGION": "us-east-1", "MAILBRIDGE_STAGE": "test", "MAILBRIDGE_TABLE_PREFIX": "mbbench-",
       "MAILBRIDGE_SIGNING_KEY": "bench-signing-key-not-secret", "MAILBRIDGE_RAW_BUCKET": "mbbench-raw",
       "POWERTOOLS_LOG_LEVEL": "WARNING"}


def main() -> dict:
    os.environ.update(ENV)
    sys.path.insert(0, str(ROOT))
    start, cpu = time.perf_counter(), time.process_time()
    from app import app
    imported, imported_cpu = time.perf_counter() - start, time.process_time() - cpu
    modules = len(sys.modules)

    from chalice.config import Config
    from chalice.local import LocalGateway
    from moto import mock_aws

    from chalicelib import aws as aws_clients
    from chalicelib.models.registry import all_models
    from chalicelib.tenancy import service

    with mock_aws():
        for model in all_models():
            model.create_table(wait=False)
        tenant = service.create_tenant("Bench", "standard")
        key = service.create_key(tenant.tenant_id, "bench").plaintext
        aws_clients.reset_clients()
        aws_clients.reset_sessions()     # the request reads botocore's models afresh, as a cold process does
        for model in all_models():
            model._connection = None     # PynamoDB's per-model connection: the request makes its own
        gateway = LocalGateway(app, Config(chalice_stage="test"))
        event = gateway.event_converter.create_lambda_event(
            "GET", "/v1/mailboxes", {"authorization": f"Bearer {key}"}, b"")
        event["requestContext"]["identity"]["sourceIp"] = "203.0.113.10"
        timings, cpus = [], []
        for _ in range(2):
            start, cpu = time.perf_counter(), time.process_time()
            response = app(event, None)
            timings.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
            assert response["statusCode"] == 200, response
    return {"import_s": round(imported, 3), "first_request_s": round(timings[0], 3),
            "second_request_s": round(timings[1], 3), "import_and_first_s": round(imported + timings[0], 3),
            "import_cpu_s": round(imported_cpu, 3), "first_request_cpu_s": round(cpus[0], 3),
            "import_and_first_cpu_s": round(imported_cpu + cpus[0], 3), "modules_after_import": modules}


if __name__ == "__main__":
    print(json.dumps(main()))
