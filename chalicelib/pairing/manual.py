"""What people do by hand: pair and unpair, create a record from a message, accept or dismiss a signal,
and undo an automatic action. Every step is audited with the acting principal ("user:<id>" or "tenant").

Undo (audit entry → its reversal, itself recorded as an "undo" entry that names the original):
link.created → the link is removed (tombstoned); signal.created → the signal is closed ("undone");
record.created → the record is deleted from the directory and the message's link to it removed (its links
on other messages go through `directory.changed`, see `stale`);
ticket.reopened → the ticket gets its previous status back.
"""
from __future__ import annotations

from dataclasses import dataclass

from pynamodb.exceptions import DoesNotExist, UpdateError

from chalicelib.models.directory import DirectoryRecord
from chalicelib.models.message import Message
from chalicelib.models.paging import filtered_page
from chalicelib.models.pairing import AuditEntry, MessageLink, Signal
from chalicelib.notify.events import emit
from chalicelib.pairing import directory, late
from chalicelib.pairing.actions import REOPENED_STATUS
from chalicelib.pairing.context import tenant_context
from chalicelib.pairing.engine import find_matches
from chalicelib.pairing.facts import message_facts
from chalicelib.pairing.records import create_from_message
from chalicelib.pairing.store import (LinkSpec, audit_entry, get_signal, remove_link, save_undo, set_signal_status,
                                      write_link)


class PairingError(Exception):
    """A request the pairing state cannot satisfy; `kind` is "not_found", "conflict" or "invalid" (a
    request field, named by `field`, that cannot be used)."""

    def __init__(self, kind: str, detail: str, field: str | None = None):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.field = field


def actor_of(user_id: str | None) -> str:
    return f"user:{user_id}" if user_id else "tenant"


def _announce(message: Message, link: MessageLink) -> None:
    if message.private:      # private mail: no events (messages/privacy.py)
        return
    emit(message.tenant_id, "message.paired", {
        "message_id": message.message_id, "mailbox_id": message.mailbox_id,
        "links": [{"type": link.entity_type, "id": link.entity_id, "source": link.source, "reason": link.reason}]})


def link_manually(message: Message, record_type: str, record_id: str, user_id: str | None) -> MessageLink:
    if directory.get_record(message.tenant_id, record_type, record_id) is None:
        raise PairingError("not_found", f"No {record_type} with id {record_id!r} in the directory.")
    link = write_link(message, LinkSpec(record_type, record_id, "manual", "paired by hand", actor_of(user_id)),
                      revive=True, require_record=True)
    if link is None and directory.get_record(message.tenant_id, record_type, record_id) is None:
        raise PairingError("not_found", f"No {record_type} with id {record_id!r} in the directory.")
    if link is None:
        raise PairingError("conflict", f"The message is already paired with {record_type} {record_id!r}.")
    _announce(message, link)
    return link


def unlink(message: Message, record_type: str, record_id: str, user_id: str | None) -> AuditEntry:
    audit = remove_link(message, record_type, record_id, actor_of(user_id), "unpaired by hand")
    if audit is None:
        raise PairingError("not_found", f"The message is not paired with {record_type} {record_id!r}.")
    return audit


@dataclass(frozen=True)
class CreatedAndLinked:
    record: DirectoryRecord
    created: bool


def contact_company(message: Message, company_id: str | None) -> str:
    """The company a contact created from `message` belongs to: `company_id` when given (it must exist),
    else the one company the message's counterpart matches (its address, a contact's, or its domain)."""
    if company_id:
        if directory.get_record(message.tenant_id, "company", company_id) is None:
            raise PairingError("invalid", f"No company with id {company_id!r} in the directory.", "company_id")
        return company_id
    context = tenant_context(message.tenant_id)
    facts = message_facts(message, context.settings, context.own_addresses)
    companies = [m for m in find_matches(message, facts, context) if m.type == "company"]
    best = max((m.confidence for m in companies), default=None)
    found = sorted({m.id for m in companies if m.confidence == best})
    if len(found) == 1:
        return found[0]
    why = "matches no company" if not found else f"matches several companies ({', '.join(found[:5])})"
    raise PairingError("invalid", f"A contact needs its company: the message's counterpart {why}; "
                                  "pass company_id.", "company_id")


def create_record(message: Message, record_type: str, user_id: str | None, name: str | None = None,
                  readers: list[str] | None = None, company_id: str | None = None) -> CreatedAndLinked:
    """Create (once) a record from the message and pair them. A contact gets its company (`contact_company`);
    `company_id` for any other type is invalid."""
    if record_type == "contact":
        company_id = contact_company(message, company_id)
    elif company_id:
        raise PairingError("invalid", "Only contacts belong to a company.", "company_id")
    actor = actor_of(user_id)
    created = create_from_message(message, record_type, actor, "created from the message by hand", name, readers,
                                  company_id)
    link = write_link(message, LinkSpec(record_type, created.record.record_id, "created",
                                        "record created from this message", actor), revive=True, require_record=True)
    if link is not None:
        _announce(message, link)
    return CreatedAndLinked(created.record, created.created)


def _message(tenant_id: str, message_id: str) -> Message:
    """The tenant's message (ids come from the tenant's own signals and audit entries; checked anyway)."""
    try:
        message = Message.get(message_id)
    except DoesNotExist:
        message = None
    if message is None or message.tenant_id != tenant_id:
        raise PairingError("not_found", "The message of this signal no longer exists.")
    return message


def _close_signal(tenant_id: str, signal_id: str, status: str, user_id: str | None) -> Signal:
    """Move an open signal to `status` (one conditional write: a second accept/dismiss is a conflict)."""
    signal = get_signal(tenant_id, signal_id)
    if signal is None:
        raise PairingError("not_found", f"No signal with id {signal_id!r}.")
    if not set_signal_status(signal, status, actor_of(user_id)):
        try:   # the status the winning request set (`signal` is what this one read before)
            status_now = Signal.get(tenant_id, signal_id).status
        except DoesNotExist:
            status_now = signal.status
        raise PairingError("conflict", f"The signal is already {status_now}.")
    return signal


def accept_signal(tenant_id: str, signal_id: str, user_id: str | None) -> Signal:
    """Pair the signal's message with its record. A record deleted since the suggestion was made is a
    conflict: the signal is dismissed (actor "directory") and no link is written."""
    signal = get_signal(tenant_id, signal_id)
    if signal is not None and signal.status == "open" \
            and directory.get_record(tenant_id, signal.entity_type, signal.entity_id) is None:
        set_signal_status(signal, "dismissed", "directory")
        raise PairingError("conflict", f"The suggested {signal.entity_type} {signal.entity_id!r} no longer exists "
                                       "in the directory; the suggestion was dismissed.")
    signal = _close_signal(tenant_id, signal_id, "accepted", user_id)
    message = _message(tenant_id, signal.message_id)
    link = write_link(message, LinkSpec(signal.entity_type, signal.entity_id, "signal",
                                        f"accepted suggestion: {signal.reason}", actor_of(user_id)),
                      revive=True, require_record=True)
    if link is not None:
        _announce(message, link)
    elif directory.get_record(tenant_id, signal.entity_type, signal.entity_id) is None:   # deleted meanwhile
        set_signal_status(signal, "dismissed", "directory", expected="accepted")
        raise PairingError("conflict", f"The suggested {signal.entity_type} {signal.entity_id!r} no longer exists "
                                       "in the directory; the suggestion was dismissed.")
    return signal


def dismiss_signal(tenant_id: str, signal_id: str, user_id: str | None) -> Signal:
    signal = _close_signal(tenant_id, signal_id, "dismissed", user_id)
    audit_entry(tenant_id, "signal.dismissed", actor_of(user_id), signal.reason, message_id=signal.message_id,
                entity_type=signal.entity_type, entity_id=signal.entity_id, signal_id=signal_id).save()
    return signal


def get_audit(tenant_id: str, audit_id: str) -> AuditEntry | None:
    try:
        return AuditEntry.get(tenant_id, audit_id)
    except DoesNotExist:
        return None


def undo(tenant_id: str, audit_id: str, user_id: str | None) -> AuditEntry:
    """Reverse an automatic action and record it; each step is conditional on the state the action left, so
    undoing twice (or concurrently) reverses once, and an undo retried after a crash finishes the job. A link
    made again since, a ticket whose status changed again, or a created record the CRM has changed since
    (`updated_by`, `updated_at`) is not touched: 409."""
    entry = get_audit(tenant_id, audit_id)
    if entry is None:
        raise PairingError("not_found", f"No audit entry with id {audit_id!r}.")
    if entry.undone_by:
        raise PairingError("conflict", "This action has already been undone.")
    actor = actor_of(user_id)
    reason = f"undo of {entry.action} by {entry.actor}"
    if entry.action == "link.created":
        undo_entry = remove_link(_message(tenant_id, entry.message_id), entry.entity_type, entry.entity_id,
                                 actor, reason, undo_of=audit_id)
        if undo_entry is None:
            raise PairingError("conflict", "The link no longer exists as this action made it.")
        return undo_entry
    if entry.action == "signal.created":
        signal = get_signal(tenant_id, entry.signal_id or "")
        if signal is None or (signal.status != "undone" and not set_signal_status(signal, "undone", actor)):
            raise PairingError("conflict", "The signal is no longer open.")
    elif entry.action == "record.created":
        _undo_created_record(tenant_id, entry, actor, reason)
    elif entry.action == "ticket.reopened":
        _undo_reopen(tenant_id, entry)
    else:
        raise PairingError("conflict", f"A {entry.action} entry cannot be undone.")
    undo_entry = audit_entry(entry.tenant_id, "undo", actor, reason, message_id=entry.message_id,
                             entity_type=entry.entity_type, entity_id=entry.entity_id, signal_id=entry.signal_id,
                             undo_of=entry.audit_id)
    if not save_undo(undo_entry):
        raise PairingError("conflict", "This action has already been undone.")
    return undo_entry


def _undo_created_record(tenant_id: str, entry: AuditEntry, actor: str, reason: str) -> None:
    record = directory.get_record(tenant_id, entry.entity_type, entry.entity_id)
    maker = f"message:{entry.message_id}"
    changed = record is not None and (record.created_by != maker or record.updated_by not in (None, maker)
                                      or (record.updated_at or "") != (record.created_at or ""))
    if changed:
        raise PairingError("conflict", f"The {entry.entity_type} {entry.entity_id!r} has been changed in the "
                                       "directory since it was created; delete it there instead.")
    try:
        remove_link(_message(tenant_id, entry.message_id), entry.entity_type, entry.entity_id, actor, reason)
    except PairingError:   # the message is gone: nothing to unlink
        pass
    dropped = directory.delete_record(tenant_id, entry.entity_type, entry.entity_id)
    if dropped is None:    # deleted by an earlier attempt that stopped before announcing it
        late.announce_leftovers(tenant_id, entry.entity_type, entry.entity_id)
    else:
        late.announce_deleted(tenant_id, dropped)


def _undo_reopen(tenant_id: str, entry: AuditEntry) -> None:
    """The ticket gets its previous status back, only if it still has the one the reopening gave it (or has
    the previous one already: an earlier attempt restored it)."""
    previous = (entry.details or {}).get("previous_status")
    record = directory.get_record(tenant_id, "ticket", entry.entity_id)
    if record is None or record.status == previous:
        return
    try:
        record.update(actions=[DirectoryRecord.status.set(previous)],
                      condition=DirectoryRecord.status == REOPENED_STATUS)
    except UpdateError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
        raise PairingError("conflict", f"The ticket {entry.entity_id!r} has changed status since it was "
                                       "reopened.") from None


def list_audit(tenant_id: str, limit: int, last_key: dict | None, message_id: str | None = None):
    condition = AuditEntry.message_id == message_id if message_id else None
    result = AuditEntry.query(tenant_id, scan_index_forward=False, page_size=limit, last_evaluated_key=last_key,
                              filter_condition=condition)
    return filtered_page(result, AuditEntry, limit)
