"""Links follow the directory: when a record is deleted, or loses an address, domain, number or its company,
the links it no longer justifies are removed (tombstoned like an unpairing, audited with actor "directory").

Which active links of a re-checked record go:
- the record is gone → every link to it, whoever made it (a link to a record that does not exist shows a
  deleted company on the message and counts it in `?paired=true`); its open signals are dismissed;
- the record still exists → only links that matching made and matching no longer finds: `auto` and `thread`
  links, and `rule` links made by a rule's `bind` action. Links made by a person (`manual`, an accepted
  `signal`), links to a record created from the message (`created`) and a rule's explicit `pair` stay.
  "Still found" means the matchers, run again on the message against the current directory, match the
  record by any route (the address went but the domain still matches → the link stays).

Messages are handled oldest first (the `by_entity` GSI is ordered by the message's `date_key`): a parent
loses its link — and its thread marker, in the same transaction — before its replies are re-matched, so a
reply that only inherited the link loses it too. Each record handles at most `MAX_LINKS` links per event; a
deleted record with more is listed in `unfinished` and announced again by the caller.
Idempotent: only active links are read and each removal is conditional on the link being active.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pynamodb.exceptions import DoesNotExist

from chalicelib.logs import logger
from chalicelib.models.directory import split_record_key
from chalicelib.models.message import Message
from chalicelib.models.pairing import MessageLink, Signal
from chalicelib.pairing import directory
from chalicelib.pairing.context import TenantContext, tenant_context
from chalicelib.pairing.engine import find_matches
from chalicelib.pairing.facts import message_facts
from chalicelib.pairing.store import entity_key, remove_link, set_signal_status

ACTOR = "directory"
MATCHED_SOURCES = ("auto", "thread", "rule")
MAX_LINKS = 2000
MAX_OPEN_SIGNALS = 5000


@dataclass
class StaleReport:
    examined: int = 0
    removed: list[tuple[str, str]] = field(default_factory=list)   # (message_id, record key)
    signals_closed: int = 0
    truncated: bool = False
    unfinished: list[str] = field(default_factory=list)   # deleted records with links left: announce again


def _message(tenant_id: str, message_id: str) -> Message | None:
    try:
        message = Message.get(message_id)
    except DoesNotExist:
        return None
    return message if message.tenant_id == tenant_id else None


def _explicit_rule_pair(link: MessageLink, context: TenantContext) -> bool:
    """True when the rule that made `link` names its record in a `pair` action (not a `bind` of matches)."""
    rule_id = (link.actor or "").removeprefix("rule:")
    for rule in context.rules:
        if rule.rule_id == rule_id:
            return any(a.get("type") == "pair" and (a.get("record") or {}).get("type") == link.entity_type
                       and (a.get("record") or {}).get("id") == link.entity_id for a in rule.actions or [])
    return False


def still_justified(message: Message, link: MessageLink, context: TenantContext) -> bool:
    if link.source not in MATCHED_SOURCES:
        return True
    if link.source == "rule" and _explicit_rule_pair(link, context):
        return True
    facts = message_facts(message, context.settings, context.own_addresses)
    return any((m.type, m.id) == (link.entity_type, link.entity_id) for m in find_matches(message, facts, context))


def _close_open_signals(tenant_id: str, record_type: str, record_id: str, report: StaleReport) -> None:
    condition = (Signal.entity_type == record_type) & (Signal.entity_id == record_id)
    examined = 0
    for signal in Signal.by_tenant_status.query(f"{tenant_id}#open", filter_condition=condition,
                                                page_size=500):
        examined += 1
        if examined > MAX_OPEN_SIGNALS:
            report.truncated = True
            return
        if set_signal_status(signal, "dismissed", ACTOR):
            report.signals_closed += 1


def recheck_record(tenant_id: str, record_key: str, report: StaleReport | None = None) -> StaleReport:
    """Remove the links `record_key` no longer justifies (see the module docstring)."""
    report = report or StaleReport()
    record_type, record_id = split_record_key(record_key)
    gone = directory.get_record(tenant_id, record_type, record_id) is None
    context = tenant_context(tenant_id)
    reason = "record deleted from the directory" if gone else "record no longer matches the message"
    links = MessageLink.by_entity.query(entity_key(tenant_id, record_type, record_id), scan_index_forward=True,
                                        page_size=200)
    removed_before = len(report.removed)
    for count, link in enumerate(links):
        if count >= MAX_LINKS:
            report.truncated = True
            if gone and len(report.removed) > removed_before:   # the next pass makes progress
                report.unfinished.append(record_key)
            break
        report.examined += 1
        if link.status != "active" or link.tenant_id != tenant_id:
            continue
        message = _message(tenant_id, link.message_id)
        if message is None:
            continue
        if not gone and still_justified(message, link, context):
            continue
        if remove_link(message, record_type, record_id, ACTOR, reason) is not None:
            report.removed.append((message.message_id, record_key))
    if gone:
        _close_open_signals(tenant_id, record_type, record_id, report)
    return report


def recheck_records(tenant_id: str, record_keys: list[str]) -> StaleReport:
    report = StaleReport()
    for key in dict.fromkeys(record_keys):
        recheck_record(tenant_id, key, report)
    logger.info("stale links removed", extra={"tenant_id": tenant_id, "records": len(record_keys),
                                              "examined": report.examined, "removed": len(report.removed),
                                              "signals_closed": report.signals_closed,
                                              "truncated": report.truncated})
    return report
