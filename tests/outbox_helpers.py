"""Outbox test harness: an IMAP mailbox on the real Dovecot + aiosmtpd, running the events queue's outbox jobs
and the sync worker the way Lambda would."""
from __future__ import annotations

import json
from datetime import timedelta
from email import message_from_bytes, policy
from types import SimpleNamespace

from chalicelib.models.message import Message
from chalicelib.models.outbox import OutboxItem
from chalicelib.notify import notifier
from chalicelib.outbox import delivery
from chalicelib.sync import worker
from chalicelib.timeutil import utcnow
from tests.sync_helpers import FakeContext, drain, job_event

SIGNATURE = ('<p>Jana Nováková<br><b>Acme</b> sales · <a href="https://acme-crm.example/team">team page</a></p>'
             '<img src="https://acme-crm.example/logo.png" alt="Acme logo"><script>alert(1)</script>')


def mailbox_body(dovecot, smtp_port: int, user: str, password: str, **extra) -> dict:
    return {"name": "Sales", "type": "imap", "email": f"{user}@acme-crm.example", "sender_name": "Acme Sales",
            "import_since": (utcnow().date() - timedelta(days=2)).isoformat(), "kind": "shared",
            "imap": {"host": "127.0.0.1", "port": dovecot.port, "security": "none", "username": user},
            "smtp": {"host": "127.0.0.1", "port": smtp_port, "security": "none", "username": user},
            "password": password, **extra}


def run_outbox_jobs(events_queue_url: str, *, everything: bool = False) -> list[str]:
    """Feed the events queue's messages to the notifier as Lambda would (`everything`), or only the outbox
    jobs (the rest is dropped). Returns each outbox job's outcome."""
    outcomes = []
    for entry in drain(events_queue_url):
        body = entry["body"]
        if body.get("kind") == delivery.JOB_KIND:
            outcomes.append(delivery.on_message(body))
        elif everything:
            notifier.consume(SimpleNamespace(body=json.dumps(body), message_id=entry["message"]["MessageId"]))
    return outcomes


def sync(mailbox_id: str, tenant_id: str) -> None:
    result = worker.handle_batch(job_event((tenant_id, mailbox_id)), FakeContext())
    assert result == {"batchItemFailures": []}, result


def received(smtp) -> list:
    return [message_from_bytes(raw, policy=policy.default) for _from, _rcpts, raw in smtp.envelopes]


def sent_folder(dovecot, user: str) -> list[bytes]:
    return [raw for _flags, raw in dovecot.snapshot(user).get("Sent", {}).values()]


def stored_in(mailbox_id: str, folder: str) -> list[Message]:
    return [m for m in Message.by_mailbox.query(mailbox_id) if m.folder == folder]


def outbox_item(tenant_id: str, outbox_id: str) -> OutboxItem:
    return OutboxItem.get(tenant_id, outbox_id, consistent_read=True)
