"""Guards the local stack's functions process and its bridge to the emulator (`infra/local_bridge.py`,
`infra/local_functions.py`): botocore calls made in another process reach the ONE emulator, with moto's answers
and errors; a peer without the key is refused; the stack's stop leaves no functions process behind."""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from devservers.dovecot import free_port
from tests.local_stack_helpers import start_stack

ROOT = Path(__file__).resolve().parents[2]

CLIENT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from infra import local_bridge
local_bridge.install_client(sys.argv[2], bytes.fromhex(sys.argv[3]))
import boto3
dynamodb = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="local",
                        aws_secret_access_key="local")
s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local")
dynamodb.put_item(TableName="bridged", Item={"k": {"S": "from the other process"}, "b": {"B": b"\\x00\\xff"}})
s3.put_object(Bucket="bridged-bucket", Key="raw/1.eml", Body=b"Subject: hi\\r\\n\\r\\nbody",
              ContentType="message/rfc822")
body = s3.get_object(Bucket="bridged-bucket", Key="raw/1.eml")["Body"].read()
try:
    dynamodb.put_item(TableName="bridged", Item={"k": {"S": "from the other process"}},
                      ConditionExpression="attribute_not_exists(k)")
    refused = None
except dynamodb.exceptions.ConditionalCheckFailedException as exc:
    refused = exc.response["Error"]["Code"]
print(json.dumps({"body": body.decode(), "refused": refused}))
"""


@pytest.fixture
def emulator(aws, tmp_path):
    """moto in this process (the `aws` fixture) served over a bridge socket, as the local stack serves it."""
    import boto3

    from infra import local_bridge
    boto3.client("dynamodb", region_name="us-east-1").create_table(
        TableName="bridged", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}])
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="bridged-bucket")
    address, key = str(tmp_path / "bridge.sock"), secrets.token_bytes(32)
    listener = local_bridge.serve(address, key, log=lambda _: None)
    yield address, key
    listener.close()


def test_calls_from_another_process_reach_this_emulator(emulator):
    address, key = emulator
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    result = subprocess.run([sys.executable, "-c", CLIENT, str(ROOT), address, key.hex()], capture_output=True,
                            text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer == {"body": "Subject: hi\r\n\r\nbody", "refused": "ConditionalCheckFailedException"}
    import boto3   # after the child ran: this process's clients are moto's (the `aws` fixture)
    item = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName="bridged", Key={"k": {"S": "from the other process"}})["Item"]
    assert item["b"] == {"B": b"\x00\xff"}        # binaries crossed the bridge as bytes
    assert boto3.client("s3", region_name="us-east-1").head_object(
        Bucket="bridged-bucket", Key="raw/1.eml")["ContentType"] == "message/rfc822"


def test_a_peer_without_the_key_is_refused(emulator):
    from multiprocessing import AuthenticationError
    from multiprocessing.connection import Client
    address, _ = emulator
    with pytest.raises((AuthenticationError, EOFError, ConnectionError)):
        Client(address, family="AF_UNIX", authkey=secrets.token_bytes(32))
    assert oct(os.stat(address).st_mode & 0o777) == "0o600"


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def test_the_stack_runs_the_functions_in_a_second_process_and_stops_it(tmp_path):
    """Guards against a functions process left running after the stack's SIGTERM (or none started)."""
    port = free_port()
    process, demo_key = start_stack(tmp_path / "state", port, tmp_path / "run.log")
    try:
        children = _children(process.pid)
        assert len(children) == 1
        assert b"infra.local_functions" in Path(f"/proc/{children[0]}/cmdline").read_bytes()
        assert "running worker <- mailbridge-local-sync" in (tmp_path / "run.log").read_text()
        health = requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=10)
        assert health.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    deadline = time.monotonic() + 10
    while Path(f"/proc/{children[0]}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{children[0]}").exists()


def test_one_process_keeps_the_functions_in_the_stack(tmp_path):
    """Guards `--one-process` (the functions in the stack's own process, as before the split)."""
    port = free_port()
    process, _ = start_stack(tmp_path / "state", port, tmp_path / "run.log", "--one-process")
    try:
        assert _children(process.pid) == []
        assert "running worker <- mailbridge-local-sync" in (tmp_path / "run.log").read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
