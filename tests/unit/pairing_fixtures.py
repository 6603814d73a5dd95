"""Factories for pairing tests: tenants, mailboxes and stored messages written straight to the (moto) store."""
from __future__ import annotations

import itertools

from chalicelib.ids import new_id, stable_id
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.pairing import context as pairing_context
from chalicelib.tenancy import service
from chalicelib.timeutil import now_iso

_seq = itertools.count(1)


def make_tenant(own_domains=("acme-crm.example",), pairing: dict | None = None) -> str:
    tenant = service.create_tenant("T", "standard", own_domains=list(own_domains),
                                   settings={"pairing": pairing} if pairing else {})
    pairing_context.invalidate()
    return tenant.tenant_id


def make_mailbox(tenant_id: str, mode: str = "auto", email: str = "alice@acme-crm.example",
                 owner: str | None = "u-alice", kind: str = "personal") -> Mailbox:
    now = now_iso()
    mailbox = Mailbox(tenant_id, new_id("mbx"), name="Sales", type="imap", email=email, import_since="2026-11-01",
                      pairing_mode=mode, kind=kind, owner_user_id=owner,
                      owner_key=f"{tenant_id}#{owner}" if owner else None, status="active",
                      created_at=now, updated_at=now)
    mailbox.save()
    pairing_context.invalidate()
    return mailbox


def make_message(mailbox: Mailbox, *, sender="jan@customer.example", to=("alice@acme-crm.example",), cc=(),
                 subject="Hello", direction="inbound", headers=None, rfc_id=None, in_reply_to=None,
                 references=(), thread_id=None, date="2026-11-22T08:15:00Z", has_attachments=False) -> Message:
    n = next(_seq)
    rfc_id = rfc_id or f"m{n}@mail.example"
    folder = "inbox" if direction == "inbound" else "sent"
    message_id = stable_id("msg", mailbox.tenant_id, mailbox.mailbox_id, folder, rfc_id)
    message = Message(message_id, tenant_id=mailbox.tenant_id, mailbox_id=mailbox.mailbox_id, folder=folder,
                      mailbox_folder=f"{mailbox.mailbox_id}#{folder}", date_key=f"{date}#{message_id}",
                      direction=direction, rfc_message_id=rfc_id,
                      in_reply_to=in_reply_to, references=list(references), subject=subject, thread_id=thread_id,
                      from_addr={"name": "Jan Novák", "email": sender},
                      to=[{"name": "", "email": a} for a in to], cc=[{"name": "", "email": a} for a in cc],
                      date=date, headers=headers or {}, has_attachments=has_attachments, imported_at=now_iso())
    message.save()
    return message
