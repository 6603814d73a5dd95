"""Guards the IMAP import against network faults in the middle of a FETCH (a loopback proxy in front of real
Dovecot, tests/imap_fault_proxy.py): a connection reset or a stalled server ends the sync as a TEMPORARY
failure with a visible `last_error` and the SQS record failed (so SQS redelivers it), nothing half-stored; a
slow drip completes; the next sync after the fault imports everything exactly once with exact counts."""
from __future__ import annotations

import datetime as dt

import boto3
import pytest

from chalicelib.config import get_settings
from chalicelib.credentials.store import CredentialStore
from chalicelib.models.message import Message
from chalicelib.providers import kinds
from chalicelib.security.crypto import encrypt_secrets
from chalicelib.sync import worker
from chalicelib.sync.engine import SyncOptions
from tests.imap_fault_proxy import FaultProxy
from tests.mailfactory import make_message
from tests.sync_helpers import FakeContext, counts_of, job_event, make_mailbox, reload

RECENT = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
MESSAGES = 6


@pytest.fixture
def faulty(aws, dovecot):  # noqa: F811 - dovecot is the imported fixture
    user, password = dovecot.new_user()
    raws = {}
    for n in range(MESSAGES):
        raw = make_message(subject=f"fault {n}", message_id=f"<fault-{n}@acme.example>", date=RECENT,
                           body=("A long line of text to make the message big. " * 400) + f"\n{n}\n")
        dovecot.append(user, "INBOX", raw, date=RECENT)
        raws[f"fault-{n}@acme.example"] = raw
    proxy = FaultProxy(dovecot.port)
    box = make_mailbox("tnt_faults", import_since=(RECENT - dt.timedelta(days=2)).date().isoformat(),
                       imap={"host": "127.0.0.1", "port": proxy.port, "security": "none", "username": user,
                             "login_method": "plain"})
    box.update(actions=[type(box).secret_ciphertext.set(
        encrypt_secrets(box.tenant_id, box.mailbox_id, {"password": password}))])
    yield reload(box), proxy, raws
    proxy.close()


def sync(mailbox) -> dict:
    def factory(box):     # a short read timeout, so a stalled server is noticed within the test
        return kinds.provider_for(box, CredentialStore(box.tenant_id, box.mailbox_id).decode(box), timeout=2.0)
    return worker.handle_batch(job_event((mailbox.tenant_id, mailbox.mailbox_id)), FakeContext(),
                               provider_factory=factory, options=SyncOptions(page_size=3))


def stored_raw(mailbox) -> dict[str, bytes]:
    s3 = boto3.client("s3")
    return {m.rfc_message_id: s3.get_object(Bucket=get_settings().raw_bucket, Key=m.raw_s3_key)["Body"].read()
            for m in Message.by_mailbox.query(mailbox.mailbox_id)}


@pytest.mark.parametrize("mode", ["reset", "stall"])
def test_a_fault_mid_fetch_fails_the_job_visibly_and_the_retry_completes_exactly(faulty, mode):
    mailbox, proxy, raws = faulty
    proxy.mode = mode
    result = sync(mailbox)
    assert len(result["batchItemFailures"]) == 1, result          # SQS will redeliver the job
    assert proxy.faults >= 1
    after_fault = reload(mailbox)
    assert after_fault.sync_stage == "retrying" and after_fault.last_error
    partial = stored_raw(mailbox)
    assert all(raws[key] == raw for key, raw in partial.items())   # what is stored is whole
    assert len(partial) < MESSAGES

    proxy.mode = "pass"
    assert sync(mailbox)["batchItemFailures"] == []
    assert stored_raw(mailbox) == raws
    assert counts_of(reload(mailbox))["imported"] == MESSAGES
    assert reload(mailbox).last_error is None


def test_a_slow_drip_completes(faulty):
    mailbox, proxy, raws = faulty
    proxy.mode = "drip"
    assert sync(mailbox)["batchItemFailures"] == []
    assert stored_raw(mailbox) == raws
    assert counts_of(reload(mailbox))["imported"] == MESSAGES
