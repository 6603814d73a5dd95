"""Shared by the sync tests: a FakeProvider (in-memory folders, injectable failures), mailbox factory, and
Lambda SQS events built from real (moto) queue messages with DISTINCT messageIds and real receipt handles."""
from __future__ import annotations

import collections
import contextlib
import json
from typing import Callable, Iterator, Sequence

import boto3
import botocore.client

from chalicelib.ids import new_id
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.tenant import Tenant
from chalicelib.notify import notifier
from chalicelib.providers.base import (ChangeSet, ErrorCode, FetchedMessage, MailProvider, MessageRef,
                                       ProviderError, SendResult)
from chalicelib.tenancy.service import get_tenant
from chalicelib.timeutil import now_iso


def raw_message(n: int, folder: str = "inbox", tag: str = "") -> bytes:
    return (f"From: Sender {n} <s{n}@example.org>\r\nTo: me@example.com\r\nSubject: {folder} message {n}{tag}\r\n"
            f"Date: Sun, 22 Nov 2026 08:{n % 60:02d}:00 +0000\r\nMessage-ID: <{folder}-{n}{tag}@example.org>\r\n"
            f"\r\nBody {n}\r\n").encode()


class FakeProvider(MailProvider):
    """IMAP-like: per folder an epoch (UIDVALIDITY) and increasing uids; cursor "<epoch>:<last uid>".

    Failures: `fail_on[(method, folder)] = [ProviderError | callable, ...]` raised (or called) in order on the
    next calls; `before_changes` is called at the start of every changes() (to run concurrent jobs)."""
    kind = "fake"

    def __init__(self, folders: dict[str, int] | None = None):
        self.epoch: dict[str, int] = {}
        self.mail: dict[str, dict[int, bytes]] = {}
        self.removed: dict[str, list[str]] = {}
        self.fail_on: dict[tuple[str, str], list] = {}
        self.before_changes: Callable[[str], None] | None = None
        self.changes_calls: list[tuple[str, str | None]] = []
        self.fetched: list[str] = []
        self.relist: dict[str, list[int]] = {}       # uids re-listed as `changed` by the next changes()
        self.vanish: set[str] = set()                # provider ids fetch() reports as vanished per item
        self.closed = False
        for folder, count in (folders or {"inbox": 0, "sent": 0}).items():
            self.epoch[folder] = 1
            self.mail[folder] = {}
            self.add(folder, count)

    # --- test controls ---
    def add(self, folder: str, count: int, tag: str = "") -> None:
        start = max(self.mail[folder], default=0)
        for uid in range(start + 1, start + count + 1):
            self.mail[folder][uid] = raw_message(uid, folder, tag)

    def delete(self, folder: str, uid: int) -> None:
        del self.mail[folder][uid]
        self.removed.setdefault(folder, []).append(f"{self.epoch[folder]}:{uid}")

    def recreate(self, folder: str) -> None:
        """UIDVALIDITY change: same messages, new uids."""
        self.epoch[folder] += 1
        self.mail[folder] = {i + 1: raw for i, raw in enumerate(self.mail[folder].values())}

    def _maybe_fail(self, method: str, folder: str) -> None:
        queue = self.fail_on.get((method, folder))
        if queue:
            failure = queue.pop(0)
            if isinstance(failure, Exception):
                raise failure
            failure()

    # --- MailProvider ---
    def folders(self) -> list[str]:
        return list(self.mail)

    def changes(self, folder, cursor, *, since, page_size):
        self.changes_calls.append((folder, cursor))
        if self.before_changes:
            self.before_changes(folder)
        self._maybe_fail("changes", folder)
        if folder not in self.mail:
            raise ProviderError(ErrorCode.NOT_FOUND, f"no folder {folder}")
        epoch = self.epoch[folder]
        last = 0
        if cursor is not None:
            cursor_epoch, cursor_uid = (int(x) for x in cursor.split(":"))
            if cursor_epoch != epoch:
                raise ProviderError(ErrorCode.CURSOR_INVALID, "UIDVALIDITY changed")
            last = cursor_uid
        pending = sorted(uid for uid in self.mail[folder] if uid > last)
        page = pending[:page_size]
        removed = tuple(self.removed.pop(folder, [])) if cursor is not None else ()
        changed = tuple(MessageRef(folder, f"{epoch}:{uid}") for uid in self.relist.pop(folder, []))
        next_uid = page[-1] if page else last
        return ChangeSet(folder=folder, new=tuple(MessageRef(folder, f"{epoch}:{uid}") for uid in page),
                         removed=removed, previous_cursor=cursor, next_cursor=f"{epoch}:{next_uid}",
                         changed=changed, has_more=len(pending) > page_size)

    def fetch(self, refs: Sequence[MessageRef], *, max_bytes: int) -> Iterator[FetchedMessage]:
        for ref in refs:
            self._maybe_fail("fetch", ref.folder)
            uid = int(ref.provider_id.split(":")[1])
            if ref.provider_id in self.vanish:
                yield FetchedMessage(ref, None, vanished=True)
                continue
            raw = self.mail[ref.folder].get(uid)
            if raw is None:
                raise ProviderError(ErrorCode.NOT_FOUND, f"uid {uid} vanished")
            self.fetched.append(ref.provider_id)
            if len(raw) > max_bytes:
                yield FetchedMessage(ref, None, skipped_reason=f"size {len(raw)} exceeds limit {max_bytes}")
                continue
            yield FetchedMessage(ref, raw)

    def test_connection(self) -> None:
        return None

    def send(self, raw, *, sender, recipients, thread=None) -> SendResult:
        raise NotImplementedError

    def close(self) -> None:
        self.closed = True


def ensure_tenant(tenant_id: str) -> None:
    """An active tenant on a plan with mail (the worker syncs only such tenants' mailboxes)."""
    if get_tenant(tenant_id) is None:
        now = now_iso()
        Tenant(tenant_id, name="Test tenant", plan="standard", created_at=now, updated_at=now).save()


def make_mailbox(tenant_id: str = "tnt_test", *, status: str = "active", mailbox_type: str = "imap",
                 import_since: str = "2026-11-20", **attrs) -> Mailbox:
    now = now_iso()
    ensure_tenant(tenant_id)
    mailbox = Mailbox(tenant_id, attrs.pop("mailbox_id", None) or new_id("mbx"), name="Sales", type=mailbox_type,
                      email="me@example.com", import_since=import_since, status=status, created_at=now,
                      updated_at=now, kind="shared", **{"store_keys": "content", **attrs})
    mailbox.save()
    return mailbox


def reload(mailbox: Mailbox) -> Mailbox:
    return Mailbox.get(mailbox.tenant_id, mailbox.mailbox_id, consistent_read=True)


def drain(queue_url: str, *, max_messages: int = 100) -> list[dict]:
    """Receive (and delete) every visible message: [{"message": raw SQS message, "body": parsed body}]."""
    sqs = boto3.client("sqs")
    out: list[dict] = []
    while len(out) < max_messages:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"],
                                  VisibilityTimeout=0).get("Messages", [])
        if not got:
            break
        for message in got:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            out.append({"message": message, "body": json.loads(message["Body"])})
    return out


def receive_event(queue_url: str, count: int) -> dict:
    """A Lambda SQS event from up to `count` real queue messages (real receipt handles, distinct ids)."""
    sqs = boto3.client("sqs")
    records = []
    while len(records) < count:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=min(10, count - len(records)),
                                  AttributeNames=["All"], VisibilityTimeout=60).get("Messages", [])
        if not got:
            break
        for m in got:
            records.append({"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                            "attributes": m.get("Attributes", {}), "messageAttributes": {},
                            "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs",
                            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:mbtest-sync",
                            "awsRegion": "us-east-1"})
    return {"Records": records}


def deliver_events(queue_url: str) -> int:
    """Run the notifier over every message on the events queue, as its Lambda would (it stores the events a
    sync announced, put if absent); returns how many queue messages it consumed."""
    consumed = 0
    while True:
        received = receive_event(queue_url, 10)
        if not received["Records"]:
            return consumed
        assert notifier.handle_batch(received, None) == {"batchItemFailures": []}
        consumed += len(received["Records"])


def job_event(*jobs: tuple[str, str], reason: str = "test", receive_count: int = 1) -> dict:
    """A Lambda SQS event built by hand (no queue round trip), one record per (tenant_id, mailbox_id)."""
    records = []
    for index, (tenant_id, mailbox_id) in enumerate(jobs):
        records.append({"messageId": f"msg-{index}-{new_id('x')}", "receiptHandle": f"rh-{index}",
                        "body": json.dumps({"tenant_id": tenant_id, "mailbox_id": mailbox_id, "reason": reason,
                                            "requested_at": now_iso()}),
                        "attributes": {"ApproximateReceiveCount": str(receive_count)}, "messageAttributes": {},
                        "md5OfBody": "", "eventSource": "aws:sqs",
                        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:mbtest-sync", "awsRegion": "us-east-1"})
    return {"Records": records}


class FakeContext:
    """A Lambda context whose remaining time is fixed (seconds)."""

    def __init__(self, remaining_seconds: float = 300.0):
        self.remaining_seconds = remaining_seconds
        self.function_name = "worker"
        self.aws_request_id = "test"

    def get_remaining_time_in_millis(self) -> int:
        return int(self.remaining_seconds * 1000)


def cursor_field(mailbox: Mailbox, folder: str, name: str = "cursor"):
    """A folder's stored sync state (`sync/cursors.py`), as the engine reads it."""
    from chalicelib.sync import cursors
    state = cursors.load_all(mailbox).get(folder)
    return None if state is None else getattr(state, name)


def counts_of(mailbox: Mailbox) -> dict[str, int]:
    return {"imported": int(mailbox.imported_count or 0), "skipped": int(mailbox.skipped_count or 0),
            "removed": int(mailbox.removed_count or 0)}


def by_operation(operation: str, params: dict) -> list[str]:
    return [operation]


def by_operation_and_table(operation: str, params: dict) -> list[str]:
    tables = [params["TableName"]] if "TableName" in params else list(params.get("RequestItems", {}))
    return [f"{operation}:{table}" for table in tables or ["?"]]


def dynamodb_calls(key: Callable[[str, dict], list[str]] = by_operation):
    """Counts DynamoDB calls (not items) as they leave botocore (PynamoDB's included) while open, under the
    names `key(operation, params)` gives (by default the operation)."""
    return aws_calls("dynamodb", key)


@contextlib.contextmanager
def aws_calls(service: str, key: Callable[[str, dict], list[str]] = by_operation):
    """Counts calls to one AWS service (botocore's service name, e.g. "kms") as they leave botocore."""
    calls: collections.Counter[str] = collections.Counter()
    original = botocore.client.BaseClient._make_api_call

    def counting(client, operation, params):
        if client.meta.service_model.service_name == service:
            calls.update(key(operation, params))
        return original(client, operation, params)

    botocore.client.BaseClient._make_api_call = counting
    try:
        yield calls
    finally:
        botocore.client.BaseClient._make_api_call = original
