"""Directory records created from a message (by a person or a rule), each audited and announced.

Ids are derived from their natural key so a retried job creates nothing twice: a lead or contact is keyed by
(tenant, type, counterpart address) — one per person however many messages they exchange; the counterpart
is the sender of inbound mail and the first recipient of outbound mail (never the mailbox owner who sent
it); any other record created from a message is keyed by (tenant, type, message). mailbridge-made numbers
(tickets) come from a per-tenant counter and carry an "M" prefix so they never collide with the CRM's own
numbers. A contact is created in a company (the caller resolves it; see `manual.contact_company`).

Crash-safe announcement: the record's `record.created` audit id is chosen first and stored on the record
(`created_audit_id`); after the record, the event (a stable id per record) and then the audit entry are
written; the event's id derives from the audit id (one creation, one event — a record deleted and created
again is a new creation). A job that dies between them and runs again finds the record made from this
message without its audit entry and writes what is missing: one entry and one event, never none and never
two.
"""
from __future__ import annotations

from dataclasses import dataclass

from pynamodb.exceptions import DoesNotExist, PutError

from chalicelib.ids import new_id, stable_id
from chalicelib.models.directory import DirectoryRecord
from chalicelib.models.message import Message
from chalicelib.models.pairing import AuditEntry
from chalicelib.notify.events import emit, stable_event_id
from chalicelib.pairing import directory
from chalicelib.pairing.addresses import normalize_address
from chalicelib.pairing.store import audit_entry

NUMBERED = ("project", "task", "ticket")


@dataclass(frozen=True)
class CreatedRecord:
    record: DirectoryRecord
    created: bool
    audit_id: str | None


def counterpart(message: Message) -> tuple[str | None, dict]:
    """(normalized address, {name, email}) of the person the message is with: the sender of inbound mail,
    the first recipient (To, then Cc) of outbound mail."""
    if message.direction == "outbound":
        person = next(iter(list(message.to or []) + list(message.cc or [])), None) or {}
    else:
        person = message.from_addr or {}
    return normalize_address(person.get("email")), person


def record_id_for(message: Message, record_type: str) -> str:
    if record_type == "lead":
        address = counterpart(message)[0] or message.message_id
        return stable_id("mbl", message.tenant_id, "lead", address)
    if record_type == "contact" and counterpart(message)[0]:
        return stable_id("mbc", message.tenant_id, "contact", counterpart(message)[0])
    return stable_id(f"mb{record_type[0]}", message.tenant_id, record_type, message.message_id)


def fields_from_message(message: Message, record_type: str, name: str | None = None) -> dict:
    address, sender = counterpart(message)
    person_name = sender.get("name") or address
    if record_type in ("company", "lead", "contact"):
        return {"name": name or person_name, "emails": [address] if address else [], "status": "new"}
    return {"name": name or message.subject or "(no subject)", "status": "open",
            "emails": [address] if address and record_type == "ticket" else []}


def create_from_message(message: Message, record_type: str, actor: str, reason: str,
                        name: str | None = None, readers: list[str] | None = None,
                        company_id: str | None = None) -> CreatedRecord:
    """Create (once) a record of `record_type` from `message` (a contact in `company_id`); announce
    `record.created`."""
    record_id = record_id_for(message, record_type)
    existing = directory.get_record(message.tenant_id, record_type, record_id)
    if existing is not None:
        if existing.created_by == f"message:{message.message_id}" and existing.created_audit_id:
            _finish(message, existing, actor, reason)
        return CreatedRecord(existing, False, None)
    data = fields_from_message(message, record_type, name)
    data["readers"] = readers or []
    if company_id:
        data["company_id"] = company_id
    if record_type in NUMBERED:
        data["number"] = "M" + directory.next_number(message.tenant_id, record_type)
    audit_id = new_id("aud")
    outcome = directory.put_record(message.tenant_id, record_type, record_id, data,
                                   created_by=f"message:{message.message_id}", known_absent=True,
                                   created_audit_id=audit_id)
    _announce(message, outcome.record, actor, reason)
    return CreatedRecord(outcome.record, True, audit_id)


def _finish(message: Message, record: DirectoryRecord, actor: str, reason: str) -> None:
    """A record this message made earlier: announce it if that job died before its audit entry."""
    try:
        AuditEntry.get(message.tenant_id, record.created_audit_id)
    except DoesNotExist:
        _announce(message, record, actor, reason)


def _announce(message: Message, record: DirectoryRecord, actor: str, reason: str) -> None:
    """`record.created` (stored once per creation) and then the audit entry (put if absent): an entry present
    means the event was emitted."""
    emit(message.tenant_id, "record.created", {
        "record": {"type": record.type, "id": record.record_id, "name": record.name,
                   "emails": list(record.emails or []), "number": record.number},
        "message_id": message.message_id, "actor": actor, "reason": reason, "audit_id": record.created_audit_id},
        event_id=stable_event_id(message.tenant_id, "record.created", record.created_audit_id))
    audit = audit_entry(message.tenant_id, "record.created", actor, reason, message_id=message.message_id,
                        entity_type=record.type, entity_id=record.record_id, audit_id=record.created_audit_id)
    try:
        audit.save(condition=AuditEntry.audit_id.does_not_exist())
    except PutError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
