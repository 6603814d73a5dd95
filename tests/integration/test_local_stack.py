"""Guards against the local stack losing data on restart and mis-driving handlers (SQS batches, schedules)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest
import requests
from chalice import Chalice
from moto import mock_aws

from devservers.dovecot import free_port
from devservers.smtp import for_dovecot
from infra import local_aws
from infra.local_events import SqsPoller, failed_message_ids
from infra.local_schedule import Schedule
from infra.local_state import LocalState

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- SQS event source mapping
def _queue(session):
    sqs = session.client("sqs")
    url = sqs.create_queue(QueueName="loop-test", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for body in ("ok-1", "fail", "ok-2"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    return sqs, url, arn


def _remaining(sqs, url) -> dict[str, str]:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return {"visible": attrs["ApproximateNumberOfMessages"],
            "in_flight": attrs["ApproximateNumberOfMessagesNotVisible"]}


def test_poller_deletes_only_records_not_reported_as_failures():
    app = Chalice(app_name="looptest")
    seen = []

    @app.on_sqs_message(queue="loop-test", batch_size=10)
    def tiny_worker(event):
        records = list(event)
        seen.extend(r.body for r in records)
        return {"batchItemFailures": [{"itemIdentifier": r.to_dict()["messageId"]}
                                      for r in records if r.body == "fail"]}

    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        sqs, url, arn = _queue(session)
        poller = SqsPoller(sqs, url, arn, tiny_worker, "tiny_worker", timeout_seconds=30, wait_seconds=0)
        while poller.poll_once():
            pass
        assert sorted(seen) == ["fail", "ok-1", "ok-2"]
        assert _remaining(sqs, url) == {"visible": "0", "in_flight": "1"}


def test_poller_leaves_the_whole_batch_when_the_handler_raises():
    def exploding(event, context):
        assert event["Records"][0]["eventSource"] == "aws:sqs"
        assert context.get_remaining_time_in_millis() > 0
        raise RuntimeError("boom")

    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        sqs, url, arn = _queue(session)
        poller = SqsPoller(sqs, url, arn, exploding, "exploding", 30, wait_seconds=0, log=lambda _m: None)
        while poller.poll_once():
            pass
        assert _remaining(sqs, url) == {"visible": "0", "in_flight": "3"}


def test_an_unknown_failure_identifier_fails_the_whole_batch():
    records = [{"messageId": "a"}, {"messageId": "b"}]
    assert failed_message_ids({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, records) == {"a", "b"}
    assert failed_message_ids({"batchItemFailures": []}, records) == set()
    assert failed_message_ids(None, records) == set()


# ---------------------------------------------------------------- schedules
def test_half_hour_cron_fires_at_00_and_30_only():
    schedule = Schedule.parse("cron(0,30 * * * ? *)")
    start = datetime(2026, 11, 23, 18, 47, 12, tzinfo=timezone.utc)
    assert schedule.next_after(start) == datetime(2026, 11, 23, 19, 0, tzinfo=timezone.utc)
    assert schedule.next_after(datetime(2026, 11, 23, 19, 0, tzinfo=timezone.utc)).minute == 30
    assert Schedule.parse("rate(1 hour)").every_seconds == 3600
    assert Schedule.parse("cron(0 3 ? * MON-FRI *)").next_after(
        datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)) == datetime(2026, 11, 23, 3, 0, tzinfo=timezone.utc)
    with pytest.raises(ValueError):
        Schedule.parse("cron(0 12 L * ? *)")


# ---------------------------------------------------------------- persistence
@pytest.mark.slow
def test_snapshot_restores_items_objects_and_kms_ciphertexts_into_a_fresh_emulator(tmp_path):
    item = {"tenant_id": {"S": "tnt_1"}, "kind": {"S": "tenant"}, "blob": {"B": b"\x00\xffraw"},
            "created_at": {"S": "2026-11-23T18:00:00Z"}}
    context = {"tenant_id": "tnt_1", "owner_id": "mbx_1"}
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        outputs = local_aws.deploy_resources(session)
        session.client("dynamodb").put_item(TableName="mailbridge-local-tenants", Item=item)
        session.client("s3").put_object(Bucket=outputs["RawMailBucketName"], Key="tnt_1/mbx_1/m.eml",
                                        Body=b"Subject: hi\r\n\r\nbody", ContentType="message/rfc822",
                                        Metadata={"sha256": "abc"})
        data_key = session.client("kms").generate_data_key(KeyId=outputs["SecretsKeyId"], KeySpec="AES_256",
                                                           EncryptionContext=context)
        LocalState(tmp_path, session, "mailbridge-local-", key_id=outputs["SecretsKeyId"]).snapshot()

    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        outputs = local_aws.deploy_resources(session)
        state = LocalState(tmp_path, session, "mailbridge-local-", key_id=outputs["SecretsKeyId"])
        assert state.exists()
        state.restore()
        restored = session.client("dynamodb").get_item(TableName="mailbridge-local-tenants",
                                                       Key={"tenant_id": {"S": "tnt_1"}})["Item"]
        assert restored == item
        obj = session.client("s3").get_object(Bucket=outputs["RawMailBucketName"], Key="tnt_1/mbx_1/m.eml")
        assert obj["Body"].read() == b"Subject: hi\r\n\r\nbody" and obj["ContentType"] == "message/rfc822"
        assert obj["Metadata"] == {"sha256": "abc"}
        plaintext = session.client("kms").decrypt(CiphertextBlob=data_key["CiphertextBlob"],
                                                  EncryptionContext=context)["Plaintext"]
        assert plaintext == data_key["Plaintext"]


# ---------------------------------------------------------------- the real thing, as `make run` starts it
def _connect_mailbox(base: str, headers: dict, dovecot, smtp_port: int, user: str, password: str) -> str:
    """`POST /v1/mailboxes` for the Dovecot account, as a CRM would; the new mailbox's id."""
    endpoint = {"host": "127.0.0.1", "security": "none", "username": user, "login_method": "plain"}
    mailbox = requests.post(f"{base}/v1/mailboxes", headers=headers, timeout=30, json={
        "name": "Local", "type": "imap", "email": "alice@example.com",
        "import_since": datetime.now(timezone.utc).date().isoformat(), "password": password,
        "imap": {**endpoint, "port": dovecot.port}, "smtp": {**endpoint, "port": smtp_port}})
    assert mailbox.status_code == 201, mailbox.text
    return mailbox.json()["id"]


def _start(data_dir: Path, port: int, log: Path, *extra: str,
           settings: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """`make run` in a subprocess (the test's own MAILBRIDGE_*/AWS_* environment left out, `settings` added);
    (process, demo API key) once the API answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILBRIDGE_", "AWS_"))}
    env["POWERTOOLS_LOG_LEVEL"] = "WARNING"
    env.update(settings or {})
    out = log.open("w")
    process = subprocess.Popen([sys.executable, "-m", "infra.local_stack", "--port", str(port), "--moto-port", "0",
                                "--data-dir", str(data_dir), "--snapshot-interval", "300", *extra],
                               cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        for line in log.read_text().splitlines():
            if line.strip().startswith("demo API key:"):
                requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=5).raise_for_status()
                return process, line.split(":", 1)[1].strip()
        time.sleep(0.3)
    process.kill()
    raise AssertionError("local stack did not start:\n" + log.read_text())


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


@pytest.fixture
def smtp_port(dovecot):
    """SMTP on loopback accepting the Dovecot users' logins (mailbox creation verifies SMTP too)."""
    with for_dovecot(dovecot) as server:
        yield server.port


def _wait_for_messages(base: str, headers: dict, mailbox_id: str) -> list[dict]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        items = requests.get(f"{base}/v1/mailboxes/{mailbox_id}/messages", headers=headers, timeout=10).json()["items"]
        if items:
            return items
        time.sleep(0.5)
    raise AssertionError("the local worker loop never imported the message")


@pytest.mark.slow
def test_local_stack_syncs_through_the_worker_and_keeps_everything_across_a_restart(tmp_path, dovecot, smtp_port):
    from tests.mailfactory import make_message

    user, password = dovecot.new_user()
    dovecot.append(user, "INBOX", make_message(subject="Hello from the local stack"),
                   date=datetime.now(timezone.utc))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process, demo_key = _start(tmp_path / "state", port, tmp_path / "run1.log")
    try:
        created = requests.post(f"{base}/v1/keys", json={"name": "created before restart"},
                                headers={"Authorization": f"Bearer {demo_key}"}, timeout=10)
        assert created.status_code == 201, created.text
        new_key, new_id = created.json()["key"], created.json()["id"]
        listed = requests.get(f"{base}/v1/keys", headers={"Authorization": f"Bearer {demo_key}"}, timeout=10)
        assert new_id in {k["id"] for k in listed.json()["items"]}

        headers = {"Authorization": f"Bearer {demo_key}", "X-User-Id": "u-alice"}
        mailbox_id = _connect_mailbox(base, headers, dovecot, smtp_port, user, password)
        assert requests.post(f"{base}/v1/mailboxes/{mailbox_id}/refresh", headers=headers, timeout=10).ok
        subjects = [m["subject"] for m in _wait_for_messages(base, headers, mailbox_id)]
        assert subjects == ["Hello from the local stack"]
    finally:
        _stop(process)

    process, demo_key_again = _start(tmp_path / "state", port, tmp_path / "run2.log")
    try:
        assert demo_key_again == demo_key
        listed = requests.get(f"{base}/v1/keys", headers={"Authorization": f"Bearer {new_key}"}, timeout=10)
        assert listed.status_code == 200, listed.text
        assert new_id in {k["id"] for k in listed.json()["items"]}
        unauthenticated = requests.get(f"{base}/v1/keys", headers={"Authorization": "Bearer mbk_nope"}, timeout=10)
        assert unauthenticated.status_code == 401

        messages = requests.get(f"{base}/v1/mailboxes/{mailbox_id}/messages", headers=headers, timeout=10).json()
        raw = requests.get(f"{base}/v1/messages/{messages['items'][0]['id']}/raw", headers=headers, timeout=10)
        assert raw.status_code == 200 and b"Hello from the local stack" in raw.content   # S3 object restored
        check = requests.post(f"{base}/v1/mailboxes/{mailbox_id}/test", headers=headers, timeout=30)
        assert check.json()["ok"] is True, check.text   # the KMS-sealed password still decrypts
    finally:
        _stop(process)
    secrets = json.loads((tmp_path / "state" / "local-secrets.json").read_text())
    assert secrets["demo_api_key"] == demo_key


@pytest.mark.slow
def test_local_stack_scheduled_syncs_go_through_the_check_function(tmp_path, dovecot, smtp_port):
    """Guards against `make run` skipping the check function (scheduled jobs straight to the worker) or the
    check swallowing new mail: a message delivered after the first import arrives by the scheduled ticks."""
    from tests.mailfactory import make_message

    user, password = dovecot.new_user()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "run.log"
    process, demo_key = _start(tmp_path / "state", port, log, "--sync-interval", "2")
    try:
        assert "checker <- mailbridge-local-check" in log.read_text()
        headers = {"Authorization": f"Bearer {demo_key}", "X-User-Id": "u-alice"}
        mailbox_id = _connect_mailbox(base, headers, dovecot, smtp_port, user, password)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = requests.get(f"{base}/v1/mailboxes/{mailbox_id}/sync", headers=headers, timeout=10).json()
            if status.get("last_success_at"):
                break
            time.sleep(0.5)
        assert status.get("last_success_at"), status          # the first (empty) import finished
        dovecot.append(user, "INBOX", make_message(subject="Found by the scheduled check"),
                       date=datetime.now(timezone.utc))
        subjects = [m["subject"] for m in _wait_for_messages(base, headers, mailbox_id)]
        assert subjects == ["Found by the scheduled check"]
    finally:
        _stop(process)


def _all_items(session) -> dict[str, list[dict]]:
    dynamodb = session.client("dynamodb")
    return {table: sorted((item for page in dynamodb.get_paginator("scan").paginate(TableName=table)
                           for item in page["Items"]), key=repr)
            for table in dynamodb.list_tables()["TableNames"]}


@pytest.mark.slow
def test_an_incremental_snapshot_round_trips_writes_updates_and_deletes(tmp_path):
    """Guards against incremental snapshots losing what changed after the base (updates, deletes, new objects)."""
    tenants = "mailbridge-local-tenants"
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        outputs = local_aws.deploy_resources(session)
        dynamodb, s3 = session.client("dynamodb"), session.client("s3")
        state = LocalState(tmp_path, session, "mailbridge-local-", key_id=outputs["SecretsKeyId"])
        for tenant in ("tnt_a", "tnt_b"):
            dynamodb.put_item(TableName=tenants, Item={"tenant_id": {"S": tenant}, "n": {"N": "1"}})
        state.snapshot()                                               # the base
        base = (tmp_path / "snapshot" / "dynamodb" / f"{tenants}.jsonl").read_text()
        dynamodb.update_item(TableName=tenants, Key={"tenant_id": {"S": "tnt_a"}},
                             UpdateExpression="SET n = n + :one, sealed = :b",
                             ExpressionAttributeValues={":one": {"N": "1"}, ":b": {"B": b"\x00\x01"}})
        dynamodb.delete_item(TableName=tenants, Key={"tenant_id": {"S": "tnt_b"}})
        dynamodb.put_item(TableName=tenants, Item={"tenant_id": {"S": "tnt_c"}, "n": {"N": "3"}})
        dynamodb.transact_write_items(TransactItems=[{"Put": {"TableName": tenants, "Item": {
            "tenant_id": {"S": "tnt_d"}, "n": {"N": "4"}}}}])
        with pytest.raises(dynamodb.exceptions.TransactionCanceledException):   # rolled back: nothing changes
            dynamodb.transact_write_items(TransactItems=[
                {"Put": {"TableName": tenants, "Item": {"tenant_id": {"S": "tnt_e"}, "n": {"N": "5"}}}},
                {"Update": {"TableName": tenants, "Key": {"tenant_id": {"S": "tnt_a"}},
                            "UpdateExpression": "SET n = :z", "ExpressionAttributeValues": {":z": {"N": "0"}},
                            "ConditionExpression": "attribute_not_exists(tenant_id)"}}])
        s3.put_object(Bucket=outputs["RawMailBucketName"], Key="tnt_a/m.eml", Body=b"Subject: x\r\n\r\nbody")
        manifest = state.snapshot()                                    # incremental: the journal grows
        assert manifest["journal_lines"] >= 4
        assert (tmp_path / "snapshot" / "dynamodb" / f"{tenants}.jsonl").read_text() == base
        s3.put_object(Bucket=outputs["RawMailBucketName"], Key="tnt_a/m.eml", Body=b"Subject: y\r\n\r\nnew")
        dynamodb.put_item(TableName=tenants, Item={"tenant_id": {"S": "tnt_b"}, "n": {"N": "9"}})  # back again
        state.snapshot()
        expected = _all_items(session)
        assert [i["tenant_id"]["S"] for i in expected[tenants]] == ["tnt_a", "tnt_b", "tnt_c", "tnt_d"]

    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        outputs = local_aws.deploy_resources(session)
        LocalState(tmp_path, session, "mailbridge-local-", key_id=outputs["SecretsKeyId"]).restore()
        assert _all_items(session) == expected
        body = session.client("s3").get_object(Bucket=outputs["RawMailBucketName"], Key="tnt_a/m.eml")["Body"]
        assert body.read() == b"Subject: y\r\n\r\nnew"


def test_the_snapshot_on_the_way_out_never_compacts(tmp_path):
    """Guards the exit time: a journal past its compaction size is compacted by periodic snapshots only, never
    by the final one (a full dump of a large store held the exit up for seconds)."""
    tenants = "mailbridge-local-tenants"
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        outputs = local_aws.deploy_resources(session)
        dynamodb = session.client("dynamodb")
        state = LocalState(tmp_path, session, "mailbridge-local-", key_id=outputs["SecretsKeyId"], compact_after=1)
        dynamodb.put_item(TableName=tenants, Item={"tenant_id": {"S": "tnt_a"}})
        state.snapshot()                                               # the base
        for n in range(5):
            dynamodb.put_item(TableName=tenants, Item={"tenant_id": {"S": f"tnt_{n}"}})
        assert state.snapshot(compact=False)["journal_lines"] == 5     # outgrown, still incremental
        dynamodb.put_item(TableName=tenants, Item={"tenant_id": {"S": "tnt_z"}})
        assert state.snapshot()["journal_lines"] == 0                  # a periodic one compacts
        assert len((tmp_path / "snapshot" / "dynamodb" / f"{tenants}.jsonl").read_text().splitlines()) == 7


@pytest.mark.slow
def test_sigterm_stops_the_stack_promptly_and_keeps_the_last_writes(tmp_path):
    """Guards against SIGTERM waiting on in-flight work or a full snapshot (it took over a minute)."""
    port = free_port()
    process, demo_key = _start(tmp_path / "state", port, tmp_path / "run.log")
    try:
        created = requests.post(f"http://127.0.0.1:{port}/v1/keys", json={"name": "just before the signal"},
                                headers={"Authorization": f"Bearer {demo_key}"}, timeout=10)
        assert created.status_code == 201, created.text
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0      # a hang bound, not a timing assertion
    saved = (tmp_path / "state" / "snapshot" / "journal.jsonl").read_text()
    assert created.json()["id"] in saved
