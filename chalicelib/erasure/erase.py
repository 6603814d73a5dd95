"""`POST /v1/erasure`: erase every stored message, tenant-wide, in which a person is a participant (From,
Sender, To, Cc, Bcc or Reply-To), with what derives from it (`erasure.delete.delete_messages`), the outbox items
addressed to them, and the events / in-app notifications naming the erased messages or outbox items.

Finding the messages: no index maps participants to messages (the pairing index maps addresses to CRM records), so
the job reads the tenant's messages mailbox by mailbox — its mailboxes, then the ones deleted without purge
(`RetiredMailbox`) — through the `by_mailbox` GSI (Queries of `PAGE` items, never a table Scan) and matches the
normalized participants itself. That read is bounded per step and runs in the background: the request starts the
job and works on it for `REQUEST_SECONDS`; the rest continues as `privacy.erase` jobs on the events queue, resuming
from the job's saved progress (`GET /v1/erasure/{id}` shows it). Every step is idempotent.

Privacy of the record itself: the job holds the address only KMS-sealed while it runs and drops it when done;
the job and the audit entry (action "erasure") keep an HMAC-SHA256 of the normalized address under a key
derived from the tenant's secrets key (`privacy.erased.subject_hash`: it outlives a rotation of the signing key,
so the store keeps recognising the person; the address cannot be read back), the counts and the erased message
ids (the first `MAX_IDS`; events and notifications naming ids beyond those are left to their 90-day TTL — they
hold ids only) — no content.
Erased stays erased: `create` counts the erasure on the tenant's privacy item, after which the store refuses
the person's mail dated up to the request wherever a provider lists it again (`privacy/erased.py`).
Not erased: the CRM's directory records (the CRM owns them: delete the contact there), mail at the provider,
and webhook payloads already delivered to the tenant's receiver.
"""
from __future__ import annotations

import time
from typing import Any

from pynamodb.exceptions import DoesNotExist

from chalicelib.erasure import refs
from chalicelib.erasure.delete import add_counts, delete_messages, delete_raw_objects
from chalicelib.ids import new_id
from chalicelib.logs import logger
from chalicelib.models.mailbox import Mailbox, MailboxShare
from chalicelib.models.message import Message
from chalicelib.models.outbox import OutboxItem
from chalicelib.models.privacy import ErasureJob, RetiredMailbox
from chalicelib.notify import queue
from chalicelib.pairing.store import audit_entry
from chalicelib.privacy.erased import subject_hash
from chalicelib.privacy.lists import count_erasure, normalize_address, participants
from chalicelib.security.crypto import decrypt_secrets, encrypt_secrets
from chalicelib.timeutil import now_iso

JOB_KIND = "privacy.erase"
PAGE = 200
REQUEST_SECONDS = 15.0
MAX_IDS = 5000
PHASES = ("messages", "outbox", "events", "notifications", "done")


def create(tenant_id: str, email: str, actor: str = "tenant") -> ErasureJob:
    """A new running job for `email` (raises ValueError when it is not an address)."""
    address = normalize_address(email)
    if address is None:
        raise ValueError("not an e-mail address")
    job_id = new_id("era")
    job = ErasureJob(tenant_id, job_id, status="running", subject_hash=subject_hash(tenant_id, address),
                     sealed_subject=encrypt_secrets(tenant_id, job_id, {"email": address}), requested_by=actor,
                     progress={"phase": PHASES[0], "mailbox": None, "mailbox_key": None, "last_key": None},
                     counts={}, message_ids=[], created_at=now_iso())
    job.save(condition=ErasureJob.job_id.does_not_exist())
    count_erasure(tenant_id)          # from now on the store refuses the person's mail (privacy/erased.py)
    return job


def _mailbox_users(tenant_id: str, mailbox_id: str) -> list[str]:
    try:
        mailbox = Mailbox.get(tenant_id, mailbox_id)
    except DoesNotExist:
        return []
    users = [mailbox.owner_user_id] if mailbox.owner_user_id else []
    return users + [share.user_id for share in MailboxShare.query(mailbox_id)]


def _names_person(message: Message, address: str) -> bool:
    return any(normalize_address(a) == address for a in participants(message))


def _next_mailbox(job: ErasureJob) -> str | None:
    """The tenant's next mailbox id: its mailboxes, then its retired ones (deleted without purge, their mail
    kept), each list in key order one Query page of one item at a time; None after the last."""
    progress = job.progress
    if progress.get("source", "live") == "live":
        found = next(iter(Mailbox.query(job.tenant_id, limit=1, last_evaluated_key=progress.get("mailbox_key"),
                                        attributes_to_get=["tenant_id", "mailbox_id"])), None)
        if found is not None:
            progress["mailbox_key"] = {"tenant_id": {"S": job.tenant_id}, "mailbox_id": {"S": found.mailbox_id}}
            return found.mailbox_id
        progress["source"], progress["mailbox_key"] = "retired", None
    retired = next(iter(RetiredMailbox.query(job.tenant_id, limit=1,
                                             last_evaluated_key=progress.get("retired_key"))), None)
    progress["retired_key"] = {"tenant_id": {"S": job.tenant_id}, "mailbox_id": {"S": retired.mailbox_id}} \
        if retired is not None else None
    return retired.mailbox_id if retired is not None else None


def _messages_step(job: ErasureJob, address: str) -> bool:
    """One page of one mailbox's messages (mailboxes in key order, each paged through `by_mailbox`)."""
    progress = job.progress
    if progress.get("mailbox") is None:
        progress["mailbox"], progress["last_key"] = _next_mailbox(job), None
        if progress["mailbox"] is None:
            return True
    mailbox_id = progress["mailbox"]
    page = Message.by_mailbox.query(mailbox_id, limit=PAGE, last_evaluated_key=progress.get("last_key"))
    items = list(page)
    doomed = [m for m in items if m.tenant_id == job.tenant_id and _names_person(m, address)]
    if doomed:
        job.counts = add_counts(job.counts, delete_messages(doomed))
        job.message_ids = (list(job.message_ids or []) + [m.message_id for m in doomed])[:MAX_IDS]
        if mailbox_id not in progress.get("touched", []):
            progress["touched"] = progress.get("touched", []) + [mailbox_id]
    job.counts = add_counts(job.counts, {"examined": len(items)})
    progress["last_key"] = page.last_evaluated_key
    if page.last_evaluated_key is None:
        progress["mailbox"] = None
    return False


def _outbox_step(job: ErasureJob, address: str) -> bool:
    items = [i for i in OutboxItem.query(job.tenant_id)
             if any(normalize_address(r) == address for r in (i.recipients or []))]
    objects = delete_raw_objects(i.raw_s3_key for i in items)
    with OutboxItem.batch_write() as batch:
        for item in items:
            batch.delete(OutboxItem(item.tenant_id, item.outbox_id))
    job.counts = add_counts(job.counts, {"outbox_items": len(items), "outbox_objects": objects})
    # their `outbox.sent` / `outbox.failed` events (a refusal's text can quote the address) and notifications
    progress = job.progress
    progress["outbox_ids"] = (list(progress.get("outbox_ids", [])) + [i.outbox_id for i in items])[:MAX_IDS]
    progress["touched"] = list(dict.fromkeys(list(progress.get("touched", [])) + [i.mailbox_id for i in items]))
    return True


def _step(job: ErasureJob, address: str) -> bool:
    phase, progress = job.progress["phase"], job.progress
    if phase == "messages":
        return _messages_step(job, address)
    if phase == "outbox":
        return _outbox_step(job, address)
    erased = list(job.message_ids or []) + list(progress.get("outbox_ids", []))
    if phase == "events":
        if not erased:
            return True
        counts, last_key = refs.events_page(job.tenant_id, erased, progress.get("events_key"))
        job.counts = add_counts(job.counts, counts)
        progress["events_key"] = last_key
        return last_key is None
    if phase == "notifications" and erased:
        users = [u for m in progress.get("touched", []) for u in _mailbox_users(job.tenant_id, m)]
        job.counts = add_counts(job.counts, {"notifications": refs.notifications(job.tenant_id, users, erased)})
    return True


def _finish(job: ErasureJob) -> None:
    audit = audit_entry(job.tenant_id, "erasure", job.requested_by or "tenant", "erasure request",
                        details={"job_id": job.job_id, "subject_hash": job.subject_hash, "counts": job.counts,
                                 "message_ids": list(job.message_ids or [])})
    audit.save()
    job.update(actions=[ErasureJob.status.set("done"), ErasureJob.sealed_subject.remove(),
                        ErasureJob.progress.set({"phase": "done"}), ErasureJob.counts.set(job.counts),
                        ErasureJob.message_ids.set(list(job.message_ids or [])),
                        ErasureJob.audit_id.set(audit.audit_id), ErasureJob.finished_at.set(now_iso())])
    logger.info("erasure done", extra={"tenant_id": job.tenant_id, "job_id": job.job_id, "counts": job.counts})


def run(tenant_id: str, job_id: str, deadline: float) -> ErasureJob | None:
    """Work on the job until done or `deadline` (time.monotonic()); queues a continuation when not done.
    Returns the job (None when it does not exist)."""
    try:
        job = ErasureJob.get(tenant_id, job_id)
    except DoesNotExist:
        return None
    if job.status == "done":
        return job
    address = decrypt_secrets(tenant_id, job_id, job.sealed_subject)["email"]
    while time.monotonic() < deadline:
        if job.progress["phase"] == "done":
            _finish(job)
            return job
        if _step(job, address):
            job.progress["phase"] = PHASES[PHASES.index(job.progress["phase"]) + 1]
        job.update(actions=[ErasureJob.progress.set(job.progress), ErasureJob.counts.set(job.counts),
                            ErasureJob.message_ids.set(list(job.message_ids or []))])
    queue.send({"kind": JOB_KIND, "tenant_id": tenant_id, "job_id": job_id}, 0)
    return job


def run_for_request(job: ErasureJob, seconds: float | None = None) -> ErasureJob:
    """The request path: work for at most `seconds`, the rest in the background; the job as it stands."""
    budget = REQUEST_SECONDS if seconds is None else seconds
    return run(job.tenant_id, job.job_id, time.monotonic() + budget) or job


def job_out(job: ErasureJob) -> dict[str, Any]:
    return {"id": job.job_id, "status": job.status, "subject_hash": job.subject_hash, "counts": job.counts or {},
            "message_ids": list(job.message_ids or []), "audit_id": job.audit_id, "created_at": job.created_at,
            "finished_at": job.finished_at}


def on_message(body: dict, remaining_seconds: float) -> str:
    """The notifier's entry for a `privacy.erase` job."""
    job = run(str(body["tenant_id"]), str(body["job_id"]), time.monotonic() + remaining_seconds)
    return "missing" if job is None else job.status
