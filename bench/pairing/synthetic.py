"""Synthetic CRM directory and mail for the pairing benchmark (deterministic for a given seed).

Directory mix (of N records): 20% companies (address + own domain), 50% contacts (of those companies), 10% leads
(free-mail addresses), 10% projects, 5% tasks, 5% tickets (numbered). Message mix: mail from contacts, from
unknown people at known company domains, from leads, with project/ticket tags, from strangers at free-mail
domains, replies to earlier messages, and outbound mail to two recipients.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

from chalicelib.ids import stable_id
from chalicelib.models.directory import DirectoryIndex, DirectoryRecord, record_key
from chalicelib.models.message import Message
from chalicelib.pairing.directory import record_index_keys

OWN = "bench-crm.example"


@dataclass(frozen=True)
class Directory:
    companies: int
    contacts: int
    leads: int
    projects: int
    tasks: int
    tickets: int

    @classmethod
    def of_size(cls, total: int) -> "Directory":
        parts = [int(total * f) for f in (0.2, 0.5, 0.1, 0.1, 0.05)]
        return cls(*parts, total - sum(parts))


def records(tenant_id: str, shape: Directory, now: str) -> Iterator[DirectoryRecord]:
    def rec(kind, rid, **fields):
        return DirectoryRecord(tenant_id, record_key(kind, rid), type=kind, record_id=rid, created_by="bench",
                               created_at=now, updated_at=now, **fields)

    for i in range(shape.companies):
        yield rec("company", f"c-{i}", name=f"Company {i}", emails=[f"info@co{i}.example"], domains=[f"co{i}.example"])
    for i in range(shape.contacts):
        company = i % max(1, shape.companies)
        yield rec("contact", f"p-{i}", name=f"Person {i}", emails=[f"p{i}@co{company}.example"],
                  company_id=f"c-{company}")
    for i in range(shape.leads):
        yield rec("lead", f"l-{i}", name=f"Lead {i}", emails=[f"lead{i}@gmail.com"])
    for kind, count, base in (("project", shape.projects, 100000), ("task", shape.tasks, 500000),
                              ("ticket", shape.tickets, 900000)):
        for i in range(count):
            yield rec(kind, f"{kind[:2]}-{i}", name=f"{kind} {i}", number=str(base + i), readers=["*"])


def index_items(tenant_id: str, items: list[DirectoryRecord]) -> list[DirectoryIndex]:
    """The index the directory service would have built, computed in memory (for BatchWriteItem loading)."""
    index: dict[str, set[str]] = {}
    for item in items:
        for key in record_index_keys(tenant_id, item.type, item.emails or [], item.domains or [], item.number,
                                     item.company_id):
            index.setdefault(key, set()).add(item.record_key)
    return [DirectoryIndex(key, tenant_id=tenant_id, record_keys=keys) for key, keys in index.items()]


def messages(tenant_id: str, mailbox_id: str, shape: Directory, count: int, seed: int = 7) -> Iterator[Message]:
    rng = random.Random(seed)
    earlier: list[str] = []
    for n in range(count):
        roll = rng.random()
        direction, sender, to, subject, reply_to = "inbound", None, [f"me@{OWN}"], f"Message {n}", None
        if roll < 0.35:
            i = rng.randrange(shape.contacts)
            sender = f"p{i}@co{i % shape.companies}.example"
        elif roll < 0.45:
            sender = f"someone{n}@co{rng.randrange(shape.companies)}.example"
        elif roll < 0.55:
            sender = f"lead{rng.randrange(shape.leads)}@gmail.com"
        elif roll < 0.70:
            sender = f"x{n}@partner{n % 50}.example"
            subject = f"Re: plan #{100000 + rng.randrange(shape.projects)}# status"
        elif roll < 0.75:
            sender = f"y{n}@customer{n % 50}.example"
            subject = f"Help [T-{900000 + rng.randrange(shape.tickets)}]"
        elif roll < 0.85:
            sender = f"stranger{n}@outlook.com"
        elif roll < 0.95 and earlier:
            sender = f"z{n}@nowhere.example"
            reply_to = rng.choice(earlier)
            subject = "Re: earlier"
        else:
            direction, sender = "outbound", f"me@{OWN}"
            a, b = rng.randrange(shape.companies), rng.randrange(shape.leads)
            to = [f"info@co{a}.example", f"lead{b}@gmail.com"]
        folder = "inbox" if direction == "inbound" else "sent"
        rfc_id = f"bench-{n}@mail.example"
        earlier.append(rfc_id)
        message_id = stable_id("msg", tenant_id, mailbox_id, folder, rfc_id)
        date = f"2026-11-{1 + n * 20 // count:02d}T08:{n % 60:02d}:00Z"
        yield Message(message_id, tenant_id=tenant_id, mailbox_id=mailbox_id, folder=folder,
                      mailbox_folder=f"{mailbox_id}#{folder}", date_key=f"{date}#{message_id}", direction=direction,
                      rfc_message_id=rfc_id, in_reply_to=reply_to,
                      references=[reply_to] if reply_to else [], subject=subject,
                      from_addr={"name": "Sender", "email": sender}, to=[{"name": "", "email": a} for a in to],
                      date=date, headers={}, imported_at=date)
