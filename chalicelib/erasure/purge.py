"""`DELETE /v1/mailboxes/{id}?purge=true`: delete everything the service stored for a mailbox, in bounded steps.

`start` (request path) marks the mailbox `purging` — the sync lease needs `active`, and the lease owner is
dropped, so a sync under way fails its next conditional write (`LeaseLost`) — removes its sealed credentials,
stops its push registration at the provider (Gmail `users.stop`, Graph subscription DELETE; best effort: the
outcome is reported, a failure is not fatal, the registration lapses by itself) and deletes its shares.
`run` then works through the phases below until done or until its deadline; unfinished work continues as a
`mailbox.purge` job on the events queue (the notifier runs it), each job resuming from the progress saved on
the mailbox (`Mailbox.purge`). Every step is idempotent, so a job redelivered after a crash repeats harmlessly.

Phases: messages (pages of `PAGE` through `erasure.delete.delete_messages`: raw objects, links, signals, audit
entries, index entries, items) → outbox (items and their MIME objects) → leftovers (links/signals a crashed
store left, raw and outbox objects under the mailbox's S3 prefixes) → cursors → events (the tenant's event
partition, a page at a time, and their webhook deliveries) → notifications (of the owner and the users it was
shared with) → the mailbox item itself. When the mailbox item is gone the purge is complete.
Nothing at the provider is deleted; the CRM's directory is not touched.
"""
from __future__ import annotations

import time
from typing import Any

from pynamodb.exceptions import DoesNotExist

from chalicelib import aws
from chalicelib.config import get_settings
from chalicelib.erasure import refs
from chalicelib.erasure.delete import add_counts, delete_messages, delete_raw_objects
from chalicelib.logs import logger
from chalicelib.models.mailbox import Mailbox, MailboxShare
from chalicelib.models.message import Message
from chalicelib.models.outbox import OutboxItem
from chalicelib.models.pairing import MessageLink, Signal
from chalicelib.notify import queue
from chalicelib.sync import cursors, push
from chalicelib.timeutil import now_iso

JOB_KIND = "mailbox.purge"
PAGE = 200
REQUEST_SECONDS = 15.0           # the API's share (API Gateway answers within 29 s)
PHASES = ("messages", "outbox", "leftovers", "cursors", "events", "notifications", "mailbox")


def _users(mailbox: Mailbox) -> list[str]:
    users = [mailbox.owner_user_id] if mailbox.owner_user_id else []
    return users + [share.user_id for share in MailboxShare.query(mailbox.mailbox_id)]


def start(mailbox: Mailbox) -> dict[str, Any]:
    """Begin purging (see the module docstring); returns the initial progress. A purge already under way is
    left as it is (its progress is returned)."""
    if mailbox.status == "purging" and mailbox.purge:
        return dict(mailbox.purge)
    state = {"started_at": now_iso(), "phase": PHASES[0], "counts": {}, "push_stop": push.stop(mailbox),
             "users": _users(mailbox)}
    mailbox.update(actions=[Mailbox.status.set("purging"), Mailbox.purge.set(state),
                            Mailbox.secret_ciphertext.remove(), Mailbox.secret_version.add(1),
                            Mailbox.lease_owner.remove(), Mailbox.lease_expires_at.remove(),
                            Mailbox.push_state.remove(), Mailbox.push_expires_at.remove(),
                            Mailbox.push_renewed_at.remove(), Mailbox.push_key.remove(),
                            Mailbox.updated_at.set(now_iso())],
                   condition=Mailbox.mailbox_id.exists())
    with MailboxShare.batch_write() as batch:
        for share in MailboxShare.query(mailbox.mailbox_id):
            batch.delete(share)
    return state


def _save(mailbox: Mailbox, state: dict) -> None:
    mailbox.update(actions=[Mailbox.purge.set(state)], condition=Mailbox.mailbox_id.exists())


def _prefix_keys(prefix: str) -> list[str]:
    pages = aws.s3().get_paginator("list_objects_v2").paginate(Bucket=get_settings().raw_bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _outbox(mailbox: Mailbox) -> dict[str, int]:
    items = [i for i in OutboxItem.query(mailbox.tenant_id) if i.mailbox_id == mailbox.mailbox_id]
    objects = delete_raw_objects(i.raw_s3_key for i in items)
    with OutboxItem.batch_write() as batch:
        for item in items:
            batch.delete(OutboxItem(item.tenant_id, item.outbox_id))
    return {"outbox_items": len(items), "outbox_objects": objects}


def _leftovers(mailbox: Mailbox) -> dict[str, int]:
    links = list(MessageLink.by_mailbox.query(mailbox.mailbox_id))
    signals = [s for status in ("open", "accepted", "dismissed", "undone")
               for s in Signal.by_mailbox_status.query(f"{mailbox.mailbox_id}#{status}")
               if s.tenant_id == mailbox.tenant_id]
    with MessageLink.batch_write() as batch:
        for link in links:
            batch.delete(MessageLink(link.message_id, link.link_key))
    with Signal.batch_write() as batch:
        for signal in signals:
            batch.delete(Signal(signal.tenant_id, signal.signal_id))
    objects = delete_raw_objects(_prefix_keys(f"raw/{mailbox.tenant_id}/{mailbox.mailbox_id}/")
                                 + _prefix_keys(f"outbox/{mailbox.tenant_id}/{mailbox.mailbox_id}/"))
    return {"links": len(links), "signals": len(signals), "raw_objects": objects}


def _step(mailbox: Mailbox, state: dict) -> bool:
    """One bounded step of the current phase; True when the phase is finished."""
    phase = state["phase"]
    if phase == "messages":
        page = list(Message.by_mailbox.query(mailbox.mailbox_id, limit=PAGE))
        state["counts"] = add_counts(state["counts"], delete_messages(page))
        return len(page) < PAGE
    if phase == "outbox":
        state["counts"] = add_counts(state["counts"], _outbox(mailbox))
    elif phase == "leftovers":
        state["counts"] = add_counts(state["counts"], _leftovers(mailbox))
    elif phase == "cursors":
        cursors.delete_all(mailbox)
    elif phase == "events":
        counts, last_key = refs.events_page(mailbox.tenant_id, [mailbox.mailbox_id], state.get("events_key"))
        state["counts"] = add_counts(state["counts"], counts)
        state["events_key"] = last_key
        return last_key is None
    elif phase == "notifications":
        count = refs.notifications(mailbox.tenant_id, state.get("users") or [], [mailbox.mailbox_id])
        state["counts"] = add_counts(state["counts"], {"notifications": count})
    return True


def run(tenant_id: str, mailbox_id: str, deadline: float) -> dict[str, Any] | None:
    """Continue the purge until done or `deadline` (time.monotonic()); returns the final report when done
    ({"status": "purged", counts, push_stop}), None when a job was queued to continue, a report with status
    "purged" and no counts when the mailbox is already gone (a redelivered job), and the mailbox's status when
    it is not being purged."""
    try:
        mailbox = Mailbox.get(tenant_id, mailbox_id)
    except DoesNotExist:
        return {"status": "purged"}
    if mailbox.status != "purging" or not mailbox.purge:
        return {"status": mailbox.status}
    state = dict(mailbox.purge)
    while time.monotonic() < deadline:
        if state["phase"] == "mailbox":
            mailbox.delete()
            report = {"status": "purged", "counts": state["counts"], "push_stop": state.get("push_stop")}
            logger.info("mailbox purged", extra={"mailbox_id": mailbox_id, "counts": state["counts"]})
            return report
        if _step(mailbox, state):
            state["phase"] = PHASES[PHASES.index(state["phase"]) + 1]
        _save(mailbox, state)
    queue.send({"kind": JOB_KIND, "tenant_id": tenant_id, "mailbox_id": mailbox_id}, 0)
    return None


def purge_now(mailbox: Mailbox, seconds: float | None = None) -> dict[str, Any]:
    """The request path: start, then run for at most `seconds`; the answer reports what is done so far."""
    start(mailbox)
    budget = REQUEST_SECONDS if seconds is None else seconds
    report = run(mailbox.tenant_id, mailbox.mailbox_id, time.monotonic() + budget)
    if report is not None:
        return report
    mailbox.refresh()
    state = mailbox.purge or {}
    return {"status": "purging", "counts": state.get("counts", {}), "push_stop": state.get("push_stop"),
            "phase": state.get("phase")}


def on_message(body: dict, remaining_seconds: float) -> str:
    """The notifier's entry for a `mailbox.purge` job."""
    report = run(str(body["tenant_id"]), str(body["mailbox_id"]), time.monotonic() + remaining_seconds)
    return "continued" if report is None else str(report["status"])
