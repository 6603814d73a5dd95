"""Guards against a secret stored or logged in clear: after a full scenario through the API — API keys, an
IMAP/SMTP mailbox on real Dovecot with its password and a first import, a Gmail OAuth app and mailbox
connected through the fake Google (client secret, refresh and access tokens), an Outlook app and mailbox
connected through the fake Microsoft with real MSAL (client secret, MSAL cache with tokens), a webhook (its
signing secret) and a notification relay (its password), then the worker and the notifier over every queued
job and event — every DynamoDB item, S3 object, queued SQS message and captured log line is scanned for each
secret, plain and base64-encoded: 0 found."""
from __future__ import annotations

import base64
import logging
from datetime import timedelta
from urllib.parse import urlencode, urlsplit

import boto3
import pytest
import requests

from chalicelib.notify import notifier
from chalicelib.sync import worker
from chalicelib.timeutil import utcnow
from devservers.smtp import for_dovecot
from tests.graph_helpers import ADDRESS, CLIENT_ID, CLIENT_SECRET, api_deliver
from tests.sync_helpers import FakeContext, receive_event

RELAY_PASSWORD = "relay-pw-7c1f0e9a2b"


@pytest.fixture
def smtp_port(dovecot):  # noqa: F811 - dovecot is the imported fixture
    with for_dovecot(dovecot) as server:
        yield server.port


def encodings(secret: str) -> list[str]:
    raw = secret.encode()
    return [secret, base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("=")]


def run_queues(aws) -> None:
    """Hand every queued sync job to the worker and every event to the notifier, until both are empty."""
    for _ in range(10):
        sync = receive_event(aws["sync_queue_url"], 10)
        if sync["Records"]:
            worker.handle_batch(sync, FakeContext())
        events = receive_event(aws["events_queue_url"], 10)
        if events["Records"]:
            notifier.handle_batch(events, FakeContext())
        if not sync["Records"] and not events["Records"]:
            return


def everything_stored() -> list[tuple[str, str]]:
    """(where, text) for every DynamoDB item, S3 object and SQS message in the emulated account."""
    found: list[tuple[str, str]] = []
    dynamodb = boto3.client("dynamodb")
    for table in dynamodb.list_tables()["TableNames"]:
        for page in dynamodb.get_paginator("scan").paginate(TableName=table):
            found.extend((f"dynamodb:{table}", repr(item)) for item in page["Items"])
    s3 = boto3.client("s3")
    for bucket in s3.list_buckets()["Buckets"]:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"]):
            for obj in page.get("Contents", []):
                body = s3.get_object(Bucket=bucket["Name"], Key=obj["Key"])["Body"].read()
                found.append((f"s3:{bucket['Name']}/{obj['Key']}", body.decode("latin-1")))
    sqs = boto3.client("sqs")
    for url in sqs.list_queues().get("QueueUrls", []):
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0,
                                       MessageAttributeNames=["All"]).get("Messages", [])
        found.extend((f"sqs:{url}", repr(message)) for message in messages)
    return found


def connect_gmail(api, tenant, google):  # noqa: F811
    server = api("POST", "/v1/mail-servers", key=tenant["key"], json_body={
        "name": "Google", "type": "gmail",
        "oauth": {"client_id": google.client_id, "client_secret": google.client_secret}})
    assert server.status == 201, server
    created = api("POST", "/v1/mailboxes", key=tenant["key"], user="u-ann", json_body={
        "name": "Gmail", "type": "gmail", "email": "ann@gmail.example", "mail_server_id": server.json["id"]})
    assert created.status == 201, created
    answer = requests.get(created.json["authorize_url"], allow_redirects=False, timeout=10)
    location = urlsplit(answer.headers["Location"])
    assert api("GET", f"{location.path}?{location.query}").status in (200, 302)


def connect_outlook(api, tenant, fake_ms):  # noqa: F811
    fake_ms.deliver = api_deliver(api)
    server = api("POST", "/v1/mail-servers", key=tenant["key"], json_body={
        "name": "Contoso", "type": "outlook",
        "oauth": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "ms_tenant": "organizations"}})
    assert server.status == 201, server
    created = api("POST", "/v1/mailboxes", key=tenant["key"], user="u-ann", json_body={
        "name": "Outlook", "type": "outlook", "email": ADDRESS, "mail_server_id": server.json["id"]})
    method, target, params = fake_ms.sign_in(created.json["authorize_url"])
    answer = api("POST", urlsplit(target).path, body=urlencode(params),
                 headers={"content-type": "application/x-www-form-urlencoded"})
    assert answer.status == 200 and "connected" in answer.body, answer.body


def test_no_secret_in_any_table_object_queue_message_or_log_line(api, tenant, aws, dovecot, smtp_port,  # noqa: F811
                                                               google, fake_ms, caplog, capfd):  # noqa: F811
    caplog.set_level(logging.DEBUG)
    secrets: dict[str, str] = {"tenant API key": tenant["key"]}
    second = api("POST", "/v1/keys", key=tenant["key"], json_body={"name": "crm-backend"})
    secrets["second API key"] = second.json["key"]

    user, password = dovecot.new_user()
    secrets["IMAP password"] = password
    dovecot.append(user, "INBOX", b"From: jan@acme.example\r\nTo: x@example.com\r\nSubject: hi\r\n"
                                  b"Message-ID: <scan-1@acme.example>\r\n\r\nbody\r\n")
    imap = api("POST", "/v1/mailboxes", key=tenant["key"], user="u-ann", json_body={
        "name": "Live", "type": "imap", "email": f"{user}@example.com",
        "import_since": (utcnow().date() - timedelta(days=2)).isoformat(),
        "imap": {"host": "127.0.0.1", "port": dovecot.port, "security": "none", "username": user},
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "security": "none", "username": user},
        "password": password})
    assert imap.status == 201, imap

    connect_gmail(api, tenant, google)
    secrets["Google client secret"] = google.client_secret
    connect_outlook(api, tenant, fake_ms)
    secrets["Microsoft client secret"] = CLIENT_SECRET

    hook = api("PUT", "/v1/webhook", key=tenant["key"], json_body={"url": "http://127.0.0.1:9/hook"})
    secrets["webhook signing secret"] = hook.json["secret"]
    relay = api("PUT", "/v1/notification-relay", key=tenant["key"], json_body={
        "host": "127.0.0.1", "port": smtp_port, "security": "none", "username": "relay",
        "password": RELAY_PASSWORD, "from_address": "notify@acme-crm.example"})
    assert relay.status in (200, 422), relay   # the relay login may be refused; the password was still sent
    secrets["relay password"] = RELAY_PASSWORD

    run_queues(aws)
    assert len(api("GET", "/v1/mailboxes", key=tenant["key"]).json["items"]) == 3
    for token in list(google.refresh_tokens) + list(google.access_tokens):
        secrets[f"Google token {token[:8]}…"] = token
    for token in list(fake_ms.identity.refresh_tokens) + list(fake_ms.identity.access_tokens):
        secrets[f"Microsoft token {token[:8]}…"] = token
    assert sum(name.startswith(("Google token", "Microsoft token")) for name in secrets) >= 4

    places = everything_stored()
    out, err = capfd.readouterr()
    places += [("log", record.getMessage()) for record in caplog.records] + [("stdout", out), ("stderr", err)]
    assert any(where.startswith("dynamodb:") for where, _ in places) and any(w.startswith("s3:") for w, _ in places)
    leaks = sorted({(name, where) for name, secret in secrets.items() for form in encodings(secret)
                    for where, text in places if form in text})
    assert leaks == []
