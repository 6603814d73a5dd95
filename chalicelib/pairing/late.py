"""Late pairing: when a directory record is added or its addresses/number change, recent messages that now
match are paired, so loading the directory after connecting mailboxes still works.

A directory write emits `directory.changed` ({"records": ["<type>#<id>", ...], "dropped": [...]}): `records`
gained match keys, `dropped` were deleted or lost match keys. The events consumer (notifier) passes each
stored event to `on_event(event)`, which first removes the links the `dropped` records no longer justify
(`stale.recheck_records`), then runs `repair_recent` for `records`: for each of the tenant's
mailboxes, the messages of the last `late_pairing_days` days (Message `by_mailbox` GSI, `date_key` range,
newest first), at most `MAX_MESSAGES` in all, are pre-filtered against the records' addresses, domains and
numbers, and only candidates go through `pair_message` (idempotent: nothing already paired is written again).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from pynamodb.exceptions import DoesNotExist

from chalicelib.logs import logger
from chalicelib.models.event import Event
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.directory import key_address, key_domain, record_key
from chalicelib.models.message import Message
from chalicelib.models.pairing import MessageLink
from chalicelib.notify.events import emit
from chalicelib.pairing import directory
from chalicelib.pairing.addresses import domain_of, without_plus_tag
from chalicelib.pairing.context import get_mailbox, tenant_context
from chalicelib.pairing.engine import pair_message
from chalicelib.pairing.facts import find_subject_tags, find_ticket_tags, rfc_ids
from chalicelib.pairing.matchers import Rec
from chalicelib.pairing.settings import PairingSettings
from chalicelib.pairing.stale import recheck_records
from chalicelib.pairing.store import entity_key
from chalicelib.timeutil import isoformat, utcnow

MAX_MESSAGES = 5000
MAX_REPLY_ROUNDS = 5
MAX_CANDIDATES = 1000     # keeps one job well inside the notifier Lambda's timeout
EVENT_TYPE = "directory.changed"
MAX_RECORDS_PER_EVENT = 1000


@dataclass
class RepairReport:
    examined: int = 0
    candidates: int = 0
    paired: int = 0
    links: int = 0
    signals: int = 0
    truncated: bool = False
    message_ids: list[str] = field(default_factory=list)


def announce(tenant_id: str, record_keys: list[str], dropped: list[str] | tuple[str, ...] = ()) -> None:
    """Emit `directory.changed` for records that gained match keys (`record_keys`) and records deleted or
    that lost match keys (`dropped`), in chunks of bounded payloads."""
    dropped = list(dict.fromkeys(dropped))
    for start in range(0, max(len(record_keys), len(dropped)), MAX_RECORDS_PER_EVENT):
        payload = {"records": record_keys[start:start + MAX_RECORDS_PER_EVENT]}
        if dropped[start:start + MAX_RECORDS_PER_EVENT]:
            payload["dropped"] = dropped[start:start + MAX_RECORDS_PER_EVENT]
        emit(tenant_id, EVENT_TYPE, payload)


@dataclass(frozen=True)
class _Needles:
    emails: frozenset[str]
    domains: frozenset[str]
    numbers: frozenset[str]


def _needles(tenant_id: str, records: list[Rec]) -> _Needles:
    """The records' addresses and domains in the form the directory index keys them (`key_address`,
    `key_domain`: lowercased whole, international domains as A-labels), and their numbers."""
    emails, domains, numbers = set(), set(), set()
    for rec in records:
        emails.update(rec.emails)
        domains.update(rec.domains)
        if rec.number:
            numbers.add(rec.number)
        if rec.type == "company":  # its contacts' addresses now pair with the company too
            for contact in directory.contacts_of_company(tenant_id, rec.id):
                emails.update(contact.emails)
        if rec.type == "contact" and rec.company_id:
            company = directory.get_record(tenant_id, "company", rec.company_id)
            if company is not None:
                emails.update(company.emails or [])
    return _Needles(frozenset(key_address(e) for e in emails), frozenset(key_domain(d) for d in domains),
                    frozenset(numbers))


def _is_candidate(message: Message, needles: _Needles, settings: PairingSettings) -> bool:
    """A cheap over-approximation of "the records may match": an address (whole, case-insensitive, as the
    index looks it up; also without its `+tag` when the tenant strips them) or domain of any participant, or
    a subject tag. `pair_message` decides."""
    addresses = [(message.from_addr or {}).get("email")]
    addresses += [a.get("email") for a in list(message.to or []) + list(message.cc or [])]
    for raw in addresses:
        if not raw or "@" not in raw:
            continue
        address = key_address(raw.strip())
        if address in needles.emails or domain_of(address) in needles.domains:
            return True
        if settings.strip_plus_tags and without_plus_tag(address) in needles.emails:
            return True
    if not needles.numbers:
        return False
    subject = message.subject or ""
    tags = set(find_subject_tags(subject)) | set(find_ticket_tags(subject, settings.ticket_tag_prefix))
    return bool(tags & needles.numbers)


def recent_messages(tenant_id: str, days: int, limit: int):
    """The tenant's messages of the last `days` days, mailbox by mailbox, newest first, at most `limit`."""
    since = isoformat(utcnow() - timedelta(days=days))
    count = 0
    for mailbox in Mailbox.query(tenant_id):
        for message in Message.by_mailbox.query(mailbox.mailbox_id, Message.date_key >= since,
                                                scan_index_forward=False):
            if count >= limit:
                return
            count += 1
            yield message


def _pair_all(messages: list[Message], report: RepairReport) -> set[str]:
    """Pair `messages` oldest first (a parent before its replies); the rfc ids of those that got links. Each
    mailbox is read once for the run, not once per message."""
    paired_rfc = set()
    mailboxes: dict[str, Mailbox | None] = {}
    for message in sorted(messages, key=lambda m: m.date_key):
        report.candidates += 1
        if message.mailbox_id not in mailboxes:
            mailboxes[message.mailbox_id] = get_mailbox(message.tenant_id, message.mailbox_id)
        result = pair_message(message, mailbox=mailboxes[message.mailbox_id])
        if result.links or result.signals:
            report.paired += 1
            report.message_ids.append(message.message_id)
            if message.rfc_message_id:
                paired_rfc.add(message.rfc_message_id.strip().strip("<>").lower())
        report.links += len(result.links)
        report.signals += len(result.signals)
    return paired_rfc


def repair_recent(tenant_id: str, records: Rec | list[Rec], days: int | None = None,
                  limit: int = MAX_MESSAGES) -> RepairReport:
    """Pair the tenant's recent messages that `records` now match, then replies to them (thread
    inheritance, at most `MAX_REPLY_ROUNDS` generations); examines at most `limit` messages."""
    records = [records] if isinstance(records, Rec) else list(records)
    context = tenant_context(tenant_id)
    needles = _needles(tenant_id, records)
    report = RepairReport()
    if not (needles.emails or needles.domains or needles.numbers):
        return report
    window = []
    for message in recent_messages(tenant_id, days or context.settings.late_pairing_days, limit + 1):
        if report.examined >= limit:
            report.truncated = True
            break
        report.examined += 1
        if not message.hidden:
            window.append(message)
    candidates = [m for m in window if _is_candidate(m, needles, context.settings)]
    if len(candidates) > MAX_CANDIDATES:   # the newest ones
        candidates = sorted(candidates, key=lambda m: m.date_key, reverse=True)[:MAX_CANDIDATES]
        report.truncated = True
    done = {m.message_id for m in candidates}
    paired_rfc = _pair_all(candidates, report)
    for _ in range(MAX_REPLY_ROUNDS):
        replies = [m for m in window if m.message_id not in done and set(rfc_ids(m)) & paired_rfc]
        if not replies:
            break
        done.update(m.message_id for m in replies)
        paired_rfc = _pair_all(replies, report)
    logger.info("late pairing done", extra={"tenant_id": tenant_id, "examined": report.examined,
                                             "candidates": report.candidates, "paired": report.paired,
                                             "truncated": report.truncated})
    return report


def handle_directory_changed(tenant_id: str, payload: dict) -> RepairReport:
    """The events-consumer entry for a `directory.changed` event: stale links out, then new links in."""
    dropped = [k for k in (payload or {}).get("dropped", [])[:MAX_RECORDS_PER_EVENT] if isinstance(k, str)]
    if dropped:
        unfinished = recheck_records(tenant_id, dropped).unfinished
        if unfinished:
            announce(tenant_id, [], unfinished)
    keys = [k for k in (payload or {}).get("records", [])[:MAX_RECORDS_PER_EVENT] if isinstance(k, str)]
    records = list(directory.read_records(tenant_id, keys).values())
    if not records:
        return RepairReport()
    return repair_recent(tenant_id, records)


def on_event(event) -> RepairReport | None:
    """The notifier's hook for a stored event (`models.event.Event`): late pairing for `directory.changed`,
    nothing for any other type. Raises on store errors so the queue redelivers (the job is idempotent)."""
    if event.type != EVENT_TYPE:
        return None
    return handle_directory_changed(event.tenant_id, event.payload or {})


def handle_event(tenant_id: str, event_id: str) -> RepairReport | None:
    """Run late pairing for a stored event given by key (what the events queue message carries)."""
    try:
        return on_event(Event.get(tenant_id, event_id))
    except DoesNotExist:
        return None


def announce_outcomes(tenant_id: str, outcomes) -> bool:
    """Announce the records of directory writes that added match keys (new addresses, domains, numbers) or
    lost some (their links are re-checked). Returns whether anything was announced, i.e. late pairing was
    queued."""
    keys = [o.record.record_key for o in outcomes if o.added_keys]
    dropped = [key for o in outcomes for key in o.dropped]
    if keys or dropped:
        announce(tenant_id, keys, dropped)
    return bool(keys or dropped)


def announce_deleted(tenant_id: str, dropped: tuple[str, ...] | None) -> None:
    """Announce a deleted record (`directory.delete_record`'s result): its links are removed."""
    if dropped:
        announce(tenant_id, [], dropped)


def announce_leftovers(tenant_id: str, record_type: str, record_id: str) -> bool:
    """For a DELETE of a record that is not in the directory: when links to it remain (the DELETE that removed
    it stopped before announcing it), announce it again so they go. One Query of at most one item: only active
    links carry `entity_key`, the `by_entity` index's key. Returns whether it was announced."""
    key = entity_key(tenant_id, record_type, record_id)
    if next(iter(MessageLink.by_entity.query(key, limit=1)), None) is None:
        return False
    announce(tenant_id, [], [record_key(record_type, record_id)])
    return True
