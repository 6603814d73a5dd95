"""The CRM directory: records per tenant and the index that makes every matcher lookup a key read.

Index maintenance (see `models/directory.py`): on every write the record's index keys are recomputed
against the STORED record; stale keys get the record key DELETEd from their string set, new keys get it
ADDed, and only then is the record item written. The record item is the commit point: both index operations
are idempotent, so a PUT interrupted anywhere is finished by its retry (which still finds the old record and
so the same difference). Written the other way round, a retry would find the new record stored, see no
difference and leave its new addresses out of the index for ever. Meanwhile a reader may find an index entry
naming a record not written yet: the records are read after the index (`read_records`), and a record not
found matches nothing.

Concurrent writers of one record (two PUTs, a batch and a PUT) would each move the index from the same old
state and leave the loser's keys indexed for a record that no longer has them. The record write is therefore
conditional on the version read (`version`, +1 per write); a writer that lost reads the record again and
moves the index from the winner's state (at most `MAX_WRITE_ATTEMPTS` times).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from pynamodb.exceptions import DoesNotExist, PutError, UpdateError

from chalicelib.models.directory import (RECORD_TYPES, DirectoryIndex, DirectoryRecord, company_key, domain_key,
                                         email_key, legacy_key, number_key, record_key)
from chalicelib.pairing.addresses import normalize_address, normalize_domain
from chalicelib.pairing.matchers import Rec
from chalicelib.timeutil import now_iso

MAX_BATCH = 1000
MAX_WRITE_ATTEMPTS = 5
FIELDS = ("name", "emails", "domains", "number", "company_id", "status", "readers")


class InvalidRecord(ValueError):
    """A record the directory cannot store; the message names the field."""


@dataclass(frozen=True)
class WriteOutcome:
    record: DirectoryRecord
    created: bool
    added_keys: tuple[str, ...]      # index keys the record newly matches (late pairing looks at these)
    dropped: tuple[str, ...] = ()    # record keys whose existing links must be re-checked (lost match keys)


def dropped_record_keys(old: DirectoryRecord | None, new: DirectoryRecord | None) -> tuple[str, ...]:
    """Record keys whose links `old` → `new` may no longer justify (`new` None: deleted): the record itself
    when it lost an index key, and a contact's former company, which its addresses paired with."""
    if old is None:
        return ()
    lost = _keys_of(old) - _keys_of(new)
    if not lost:
        return ()
    keys = [old.record_key]
    if old.type == "contact" and old.company_id:
        keys.append(record_key("company", old.company_id))
    return tuple(keys)


def to_rec(item: DirectoryRecord) -> Rec:
    return Rec(type=item.type, id=item.record_id, name=item.name, emails=tuple(item.emails or ()),
               domains=tuple(item.domains or ()), number=item.number, company_id=item.company_id,
               status=item.status, readers=tuple(item.readers or ()))


def record_index_keys(tenant_id: str, record_type: str, emails: Iterable[str], domains: Iterable[str],
                      number: str | None, company_id: str | None) -> set[str]:
    keys = {email_key(tenant_id, e) for e in emails} | {domain_key(tenant_id, d) for d in domains}
    if number:
        keys.add(number_key(tenant_id, record_type, number))
    if record_type == "contact" and company_id:
        keys.add(company_key(tenant_id, company_id))
    return keys


def _keys_of(item: DirectoryRecord | None) -> set[str]:
    if item is None:
        return set()
    return record_index_keys(item.tenant_id, item.type, item.emails or [], item.domains or [], item.number,
                             item.company_id)


def clean_fields(record_type: str, record_id: str, data: dict[str, Any]) -> dict[str, Any]:
    if record_type not in RECORD_TYPES:
        raise InvalidRecord(f"type: must be one of {', '.join(RECORD_TYPES)}")
    if not record_id or len(record_id) > 200 or "/" in record_id or not record_id.isprintable():
        raise InvalidRecord("id: must be 1-200 printable characters without '/'")
    emails, domains = [], []
    for raw in data.get("emails") or []:
        address = normalize_address(raw)
        if address is None:
            raise InvalidRecord(f"emails: {raw!r} is not an e-mail address")
        emails.append(address)
    for raw in data.get("domains") or []:
        domain = normalize_domain(raw)
        if domain is None:
            raise InvalidRecord(f"domains: {raw!r} is not a domain")
        domains.append(domain)
    number = data.get("number")
    number = str(number).strip() if number not in (None, "") else None
    company_id = data.get("company_id") or None
    if company_id and record_type != "contact":
        raise InvalidRecord("company_id: only contacts belong to a company")
    return {"name": data.get("name"), "emails": list(dict.fromkeys(emails)),
            "domains": list(dict.fromkeys(domains)), "number": number, "company_id": company_id,
            "status": data.get("status"), "readers": list(dict.fromkeys(data.get("readers") or []))}


def get_record(tenant_id: str, record_type: str, record_id: str) -> DirectoryRecord | None:
    try:
        return DirectoryRecord.get(tenant_id, record_key(record_type, record_id))
    except DoesNotExist:
        return None


def _apply_index(tenant_id: str, key: str, added: set[str], removed: set[str]) -> None:
    for index_key in sorted(removed):
        DirectoryIndex(index_key).update(actions=[DirectoryIndex.record_keys.delete({key})])
        legacy = legacy_key(index_key)
        if legacy:   # an entry written before A-label keys (models/directory.py); never create one
            try:
                DirectoryIndex(legacy).update(actions=[DirectoryIndex.record_keys.delete({key})],
                                              condition=DirectoryIndex.index_key.exists())
            except UpdateError as exc:
                if exc.cause_response_code != "ConditionalCheckFailedException":
                    raise
    for index_key in sorted(added):
        DirectoryIndex(index_key).update(actions=[DirectoryIndex.record_keys.add({key}),
                                                  DirectoryIndex.tenant_id.set(tenant_id)])


def _unchanged_since(old: DirectoryRecord | None):
    """The condition that the stored record is still `old` (absent when None)."""
    if old is None:
        return DirectoryRecord.record_key.does_not_exist()
    if old.version is None:   # written before records carried a version
        return DirectoryRecord.version.does_not_exist() & (DirectoryRecord.updated_at == old.updated_at)
    return DirectoryRecord.version == old.version


def put_record(tenant_id: str, record_type: str, record_id: str, data: dict[str, Any],
               created_by: str = "api", existing: DirectoryRecord | None = None,
               known_absent: bool = False, created_audit_id: str | None = None) -> WriteOutcome:
    """Create or replace a record (all fields) and bring the index in line; `created_by` names the writer
    (kept as `created_by` on creation, always as `updated_by`). Raises `InvalidRecord`."""
    fields = clean_fields(record_type, record_id, data)
    old = None if known_absent else (existing or get_record(tenant_id, record_type, record_id))
    for attempt in range(MAX_WRITE_ATTEMPTS):
        now = now_iso()
        item = DirectoryRecord(tenant_id, record_key(record_type, record_id), type=record_type,
                               record_id=record_id, created_by=old.created_by if old else created_by,
                               created_at=old.created_at if old else now, updated_at=now, updated_by=created_by,
                               created_audit_id=old.created_audit_id if old else created_audit_id,
                               version=int(old.version or 0) + 1 if old else 1, **fields)
        new_keys = _keys_of(item)
        old_keys = _keys_of(old)
        _apply_index(tenant_id, item.record_key, new_keys - old_keys, old_keys - new_keys)
        try:
            item.save(condition=_unchanged_since(old))
            break
        except PutError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException" or attempt == MAX_WRITE_ATTEMPTS - 1:
                raise
            old = get_record(tenant_id, record_type, record_id)
    return WriteOutcome(item, old is None, tuple(sorted(new_keys - old_keys)), dropped_record_keys(old, item))


def delete_record(tenant_id: str, record_type: str, record_id: str) -> tuple[str, ...] | None:
    """Delete a record and its index entries. None when there was none; else the record keys whose links
    must be re-checked (the record's own links, which must all go, first)."""
    old = get_record(tenant_id, record_type, record_id)
    if old is None:
        return None
    _apply_index(tenant_id, old.record_key, set(), _keys_of(old))
    old.delete()
    return dropped_record_keys(old, None) or (old.record_key,)


def put_batch(tenant_id: str, records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[WriteOutcome]]:
    """Upsert up to MAX_BATCH records; each fails alone ({"status": "error", "error": ...})."""
    keys = [(r.get("type"), str(r.get("id") or "")) for r in records]
    wanted = [(tenant_id, record_key(t, i)) for t, i in keys if t in RECORD_TYPES and i]
    existing = {item.record_key: item for item in DirectoryRecord.batch_get(list(dict.fromkeys(wanted)))}
    results, outcomes = [], []
    for raw, (record_type, record_id) in zip(records, keys):
        entry = {"type": record_type, "id": record_id}
        try:
            key = record_key(str(record_type), record_id)
            data = {f: raw.get(f) for f in FIELDS}
            outcome = put_record(tenant_id, str(record_type), record_id, data, existing=existing.get(key),
                                 known_absent=key not in existing)
            existing[key] = outcome.record
            outcomes.append(outcome)
            results.append({**entry, "status": "created" if outcome.created else "updated"})
        except InvalidRecord as exc:
            results.append({**entry, "status": "error", "error": str(exc)})
    return results, outcomes


def read_snapshot_items(index_keys: list[str]) -> dict[str, set[str]]:
    """index key → record keys, for the keys found; an international address or domain also reads its
    entry of the U-label form (`models.directory.legacy_key`), merged under the key asked for."""
    if not index_keys:
        return {}
    legacy = {key: legacy_key(key) for key in index_keys}
    wanted = list(dict.fromkeys([*index_keys, *(k for k in legacy.values() if k)]))
    found = {item.index_key: set(item.record_keys or ()) for item in DirectoryIndex.batch_get(wanted)}
    result = {}
    for key in index_keys:
        if key in found or legacy[key] in found:
            result[key] = found.get(key, set()) | found.get(legacy[key], set())
    return result


def read_records(tenant_id: str, keys: Iterable[str]) -> dict[str, Rec]:
    wanted = [(tenant_id, k) for k in dict.fromkeys(keys)]
    if not wanted:
        return {}
    return {item.record_key: to_rec(item) for item in DirectoryRecord.batch_get(wanted)}


def contacts_of_company(tenant_id: str, company_id: str) -> list[Rec]:
    keys = read_snapshot_items([company_key(tenant_id, company_id)]).get(company_key(tenant_id, company_id), set())
    return list(read_records(tenant_id, keys).values())


def next_number(tenant_id: str, record_type: str) -> str:
    """An atomic per-tenant counter for numbers of records mailbridge creates (tickets)."""
    item = DirectoryIndex(f"{tenant_id}#counter#{record_type}")
    item.update(actions=[DirectoryIndex.counter.add(1), DirectoryIndex.tenant_id.set(tenant_id)])
    return str(int(item.counter))
