"""The local AWS: a moto server on 127.0.0.1 with `infra/resources.yaml` deployed through CloudFormation.

The same template the cloud uses is deployed with `Stage=local`; resources moto's CloudFormation cannot
create (alarms, SNS topic, bucket policy) carry the template's `IsCloud` condition and are skipped. moto
also accepts, without enforcing, point-in-time recovery, TTL and SSE settings.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
RESOURCES = ROOT / "infra" / "resources.yaml"
REGION = "us-east-1"
STACK_NAME = "mailbridge-local"

# Fake credentials: the local stack must never reach (or sign for) a real AWS account.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_SESSION_TOKEN": "local",
                    "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}
_UNSET = ("AWS_PROFILE", "AWS_SECURITY_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")


def point_environment_at(endpoint: str) -> None:
    """botocore (boto3 and PynamoDB alike) honours AWS_ENDPOINT_URL for every service."""
    for name in _UNSET:
        os.environ.pop(name, None)
    os.environ.update(FAKE_CREDENTIALS)
    os.environ["AWS_ENDPOINT_URL"] = endpoint


def use_in_process_emulator() -> None:
    """The stack's own AWS calls (API, worker, notifier, snapshots) go to moto in this process through
    botocore's event hooks (`mock_aws`), with the same backends the emulator's HTTP server serves to outside
    tools: no socket, no request thread and no HTTP parsing per call — most of a call's cost through the
    server when profiled (docs/benchmarks.md, "Local stack"). Call before `start_moto`: starting the mock
    resets moto's backends. AWS_ENDPOINT_URL must stay unset for the interception to apply."""
    from moto import mock_aws
    for name in _UNSET:
        os.environ.pop(name, None)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.update(FAKE_CREDENTIALS)
    mock_aws().start()


def start_moto(port: int):
    """A ThreadedMotoServer on 127.0.0.1 (in this process, so local_state can reach moto's KMS backend)."""
    from moto.server import ThreadedMotoServer

    from infra import local_moto
    local_moto.install()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per AWS call otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound_port = server.get_host_and_port()
    return server, f"http://{host}:{bound_port}"


def deploy_resources(session: boto3.session.Session, stage: str = "local", timeout: float = 60.0) -> dict[str, str]:
    """create_stack(resources.yaml, Stage=stage) and wait; returns the stack outputs."""
    cloudformation = session.client("cloudformation")
    cloudformation.create_stack(StackName=STACK_NAME, TemplateBody=RESOURCES.read_text(),
                                Parameters=[{"ParameterKey": "Stage", "ParameterValue": stage}])
    deadline = time.monotonic() + timeout
    while True:
        stack = cloudformation.describe_stacks(StackName=STACK_NAME)["Stacks"][0]
        status = stack["StackStatus"]
        if status == "CREATE_COMPLETE":
            _fix_moto_key_policies(session.region_name)
            return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        if not status.endswith("IN_PROGRESS") or time.monotonic() > deadline:
            raise RuntimeError(f"deploying infra/resources.yaml into moto: {status} {stack.get('StackStatusReason')}")
        time.sleep(0.2)


def _fix_moto_key_policies(region: str) -> None:
    """moto 5.2 keeps a CloudFormation `KeyPolicy` as a dict, and its DescribeKey then fails parsing it as
    JSON text; store it as the JSON text KMS itself keeps (moto's in-process backend; emulator only)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.kms.models import kms_backends
    for key in kms_backends[os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)][region].keys.values():
        if isinstance(key.policy, dict):
            key.policy = json.dumps(key.policy)


def mailbridge_environment(outputs: dict[str, str], stage: str = "local") -> dict[str, str]:
    """MAILBRIDGE_* variables that name resources, from the stack outputs (as the packaged template wires them)."""
    return {
        "MAILBRIDGE_STAGE": stage,
        "MAILBRIDGE_TABLE_PREFIX": outputs["TablePrefix"],
        "MAILBRIDGE_SYNC_QUEUE_URL": outputs["SyncQueueUrl"],
        "MAILBRIDGE_SYNC_QUEUE_NAME": outputs["SyncQueueName"],
        "MAILBRIDGE_CHECK_QUEUE_URL": outputs["CheckQueueUrl"],
        "MAILBRIDGE_CHECK_QUEUE_NAME": outputs["CheckQueueName"],
        "MAILBRIDGE_EVENTS_QUEUE_URL": outputs["EventsQueueUrl"],
        "MAILBRIDGE_EVENTS_QUEUE_NAME": outputs["EventsQueueName"],
        "MAILBRIDGE_RAW_BUCKET": outputs["RawMailBucketName"],
        "MAILBRIDGE_KMS_KEY_ID": outputs["SecretsKeyId"],
    }
