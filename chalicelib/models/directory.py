"""CRM directory records (per tenant) and their lookup index.

`DirectoryRecord` is keyed `(tenant_id, record_key = "<type>#<id>")`. `DirectoryIndex` turns every lookup
the matchers need into one key read, so a message's addresses and subject tags resolve with BatchGetItem
(no scans):

    "<tenant>#email#<address lowercased>"       -> record keys with that address (`key_address`)
    "<tenant>#domain#<domain lowercased>"       -> record keys with that domain (`key_domain`)
    "<tenant>#number#<type>#<number>"           -> record keys of that type carrying that number
    "<tenant>#company#<company_id>"             -> contact record keys of that company
    "<tenant>#counter#<type>"                   -> `counter`: the last number handed out (created tickets)
    "<tenant>#rfc#<Message-ID lowercased>"      -> link keys ("<type>#<id>") of the message with that ID
    "<tenant>#thread#<mailbox>#<thread id>"     -> link keys of the messages of that provider thread

Addresses and domains are keyed with international domain names as A-labels (IDNA2008 / UTS #46, RFC 5891;
`chalicelib.idn.ascii_domain`), so `jan@bücher.example` and `jan@xn--bcher-kva.example` — the same
address, RFC 5890 §2.3.2.1 — are one key whichever form the CRM or the mail wrote. Entries written before
2026-12-02 hold the U-label form (`legacy_key`): readers read it too and writers clear it, so no migration is
needed.

The last two serve thread inheritance: a reply's In-Reply-To/References and thread id become index keys of
the same BatchGetItem that resolves its addresses and tags, so inheriting costs no extra read.

Invariant: an index item's `record_keys` holds exactly the records whose current fields produce that key;
the directory service updates the index on every PUT/DELETE/batch (removing stale keys before adding new).
"""
from __future__ import annotations

import hashlib

from pynamodb.attributes import (ListAttribute, NumberAttribute, UnicodeAttribute, UnicodeSetAttribute)
from pynamodb.models import Model

from chalicelib.models.base import table_meta
from chalicelib.models.conflicts import SendsConflictsAgain
from chalicelib.idn import ascii_domain, unicode_domain

RECORD_TYPES = ("company", "contact", "lead", "project", "task", "ticket")


class DirectoryRecord(SendsConflictsAgain, Model):
    Meta = table_meta("directory_records")

    tenant_id = UnicodeAttribute(hash_key=True)
    record_key = UnicodeAttribute(range_key=True)   # "<type>#<id>"
    type = UnicodeAttribute()
    record_id = UnicodeAttribute()
    name = UnicodeAttribute(null=True)
    emails = ListAttribute(of=UnicodeAttribute, default=list)     # lowercased
    domains = ListAttribute(of=UnicodeAttribute, default=list)    # lowercased
    number = UnicodeAttribute(null=True)
    company_id = UnicodeAttribute(null=True)       # contacts only
    status = UnicodeAttribute(null=True)
    readers = ListAttribute(of=UnicodeAttribute, default=list)    # user ids, or "*" for everyone
    created_by = UnicodeAttribute(null=True)       # "api" | "message:<id>" | "rule:<id>"
    updated_by = UnicodeAttribute(null=True)       # the same vocabulary: who wrote the record last
    created_audit_id = UnicodeAttribute(null=True)  # a record made from a message: its record.created entry
    version = NumberAttribute(null=True)           # +1 on every write (`pairing.directory.put_record`)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()


class DirectoryIndex(SendsConflictsAgain, Model):
    Meta = table_meta("directory_index")

    index_key = UnicodeAttribute(hash_key=True)
    tenant_id = UnicodeAttribute(null=True)
    record_keys = UnicodeSetAttribute(null=True)
    counter = NumberAttribute(null=True)


def record_key(record_type: str, record_id: str) -> str:
    return f"{record_type}#{record_id}"


def split_record_key(key: str) -> tuple[str, str]:
    record_type, _, record_id = key.partition("#")
    return record_type, record_id


def key_domain(domain: str) -> str:
    """A domain as index keys hold it: lowercased, an international name as A-labels (as it is when it
    cannot be encoded)."""
    domain = domain.lower()
    if domain.isascii():
        return domain
    try:
        return ascii_domain(domain)
    except ValueError:
        return domain


def key_address(address: str) -> str:
    """An address as index keys hold it: lowercased whole, its domain by `key_domain`."""
    local, at, domain = address.rpartition("@")
    return f"{local.lower()}@{key_domain(domain)}" if at else address.lower()


def email_key(tenant_id: str, address: str) -> str:
    return f"{tenant_id}#email#{key_address(address)}"


def domain_key(tenant_id: str, domain: str) -> str:
    return f"{tenant_id}#domain#{key_domain(domain)}"


def legacy_key(index_key: str) -> str | None:
    """The form an email/domain key with A-labels had before they were keyed as A-labels (U-labels, from a
    record written with them), or None when it had no other."""
    tenant_id, kind, value = (index_key.split("#", 2) + ["", ""])[:3]
    if kind not in ("email", "domain") or "xn--" not in value:
        return None
    local, at, domain = value.rpartition("@") if kind == "email" else ("", "", value)
    try:
        decoded = unicode_domain(domain).lower()
    except ValueError:
        return None
    return f"{tenant_id}#{kind}#{local}{at}{decoded}" if decoded != domain else None


def number_key(tenant_id: str, record_type: str, number: str) -> str:
    return f"{tenant_id}#number#{record_type}#{number}"


def company_key(tenant_id: str, company_id: str) -> str:
    return f"{tenant_id}#company#{company_id}"


def rfc_key(tenant_id: str, rfc_message_id: str) -> str:
    """Message-IDs can be long (RFC 5322 sets no limit); long ones are hashed to stay a valid key."""
    value = rfc_message_id.strip().strip("<>").lower()
    if len(value) > 400:
        value = "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()
    return f"{tenant_id}#rfc#{value}"


def thread_key(tenant_id: str, mailbox_id: str, thread_id: str) -> str:
    value = thread_id if len(thread_id) <= 400 else "sha256:" + hashlib.sha256(thread_id.encode()).hexdigest()
    return f"{tenant_id}#thread#{mailbox_id}#{value}"
