"""Running scanner rules against a message: evaluate each applicable rule in order, carry out its actions.

Rule-made links (pair, bind, links to records a rule creates) are made in `auto` and `signal` modes alike:
an administrator asked for them explicitly. Side effects — creating a record, reopening a ticket — are
carried out only after every applicable rule has run, and not at all when one ends in `skip` ("pair this
message with nothing"): a created record's id is known beforehand (`records.record_id_for`), so later rules
see its link while it is pending. Auto-replies and bulk mail never create leads or tickets and
never reopen tickets (RFC 3834 §2: automatic responses must not trigger further automatic actions).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from chalicelib.models.directory import DirectoryRecord
from chalicelib.models.message import Message
from chalicelib.pairing import directory
from chalicelib.pairing.context import TenantContext
from chalicelib.pairing.facts import MessageFacts
from chalicelib.pairing.matchers import Match
from chalicelib.pairing.records import create_from_message, record_id_for
from chalicelib.pairing.rules import conditions_hold
from chalicelib.pairing.store import LinkSpec, audit_entry

if TYPE_CHECKING:
    from chalicelib.pairing.engine import PairingResult

PEOPLE = ("company", "contact", "lead")
CLOSED_TICKET = ("closed", "resolved", "done")
REOPENED_STATUS = "open"   # what `reopen_ticket` sets (its undo restores the previous status only from it)


@dataclass
class Plan:
    matches: list[Match]
    links: list[LinkSpec] = field(default_factory=list)
    effects: list[Callable[[], None]] = field(default_factory=list)   # run after the rules, unless skipped

    def add(self, spec: LinkSpec) -> None:
        if all((s.type, s.id) != (spec.type, spec.id) for s in self.links):
            self.links.append(spec)


def _create(message, facts, plan, result, rule, record_type: str) -> None:
    reason = f"rule '{rule.name}': new {record_type} from message"

    def create() -> None:
        created = create_from_message(message, record_type, f"rule:{rule.rule_id}", reason)
        if created.created:
            result.records.append({"type": record_type, "id": created.record.record_id})

    plan.effects.append(create)
    plan.add(LinkSpec(record_type, record_id_for(message, record_type), "created", reason, f"rule:{rule.rule_id}"))


def _made_here(message: Message) -> bool:
    """True when the lead this message's sender is known as was created from this very message: pairing
    runs again (a redelivered job), and `create_from_message` finishes what a stopped run left undone."""
    record = directory.get_record(message.tenant_id, "lead", record_id_for(message, "lead"))
    return record is not None and record.created_by == f"message:{message.message_id}"


def _reopen(message: Message, facts: MessageFacts, plan: Plan, result, rule) -> None:
    for match in [m for m in plan.matches if m.type == "ticket"]:
        record = directory.get_record(message.tenant_id, "ticket", match.id)
        if record is None or (record.status or "").lower() not in CLOSED_TICKET:
            continue
        previous = record.status
        record.update(actions=[DirectoryRecord.status.set(REOPENED_STATUS)])
        audit_entry(message.tenant_id, "ticket.reopened", f"rule:{rule.rule_id}",
                    f"rule '{rule.name}': reply to a {previous} ticket", message_id=message.message_id,
                    entity_type="ticket", entity_id=match.id, details={"previous_status": previous}).save()
        result.reopened.append(match.id)


def _run_action(action: dict, message, facts, plan: Plan, result, rule) -> str | None:
    """Carry out one action; returns "stop" or "skip" when rule processing must end."""
    kind = action.get("type")
    actor = f"rule:{rule.rule_id}"
    if kind in ("stop", "skip"):
        return kind
    if kind == "pair":
        record = action.get("record") or {}
        if directory.get_record(message.tenant_id, record.get("type", ""), record.get("id", "")) is not None:
            plan.add(LinkSpec(record["type"], record["id"], "rule", f"rule '{rule.name}'", actor))
    elif kind == "bind":
        for match in [m for m in plan.matches if m.type in (action.get("types") or PEOPLE)]:
            plan.add(LinkSpec(match.type, match.id, "rule", f"{match.reason} (rule '{rule.name}')", actor))
    elif kind in ("create_lead", "create_ticket", "reopen_ticket") and facts.is_auto:
        result.suppressed.append(f"{kind}: {facts.auto_reason}")
    elif kind == "create_lead":
        known = {(m.type, m.id) for m in plan.matches if m.type in PEOPLE}
        known |= {(s.type, s.id) for s in plan.links if s.type in PEOPLE}
        if not (facts.direction == "inbound" and facts.sender and facts.counterparts):
            return None
        if not known or (known == {("lead", record_id_for(message, "lead"))} and _made_here(message)):
            _create(message, facts, plan, result, rule, "lead")
    elif kind == "create_ticket":
        if not any(m.type == "ticket" for m in plan.matches) and not any(s.type == "ticket" for s in plan.links):
            _create(message, facts, plan, result, rule, "ticket")
    elif kind == "reopen_ticket" and facts.direction == "inbound":
        plan.effects.append(lambda: _reopen(message, facts, plan, result, rule))
    return None


def run_rules(message: Message, facts: MessageFacts, matches: list[Match], context: TenantContext,
              result: "PairingResult") -> Plan:
    plan = Plan(list(matches))
    for rule in context.rules_for(message.mailbox_id):
        if not conditions_hold(rule.conditions or {}, facts):
            continue
        outcome = None
        for action in rule.actions or []:
            outcome = _run_action(action, message, facts, plan, result, rule)
            if outcome:
                break
        if outcome == "skip":
            result.skipped = f"rule '{rule.name}': skip"
            return Plan([])
        if outcome == "stop":
            break
    for effect in plan.effects:
        effect()
    return plan
