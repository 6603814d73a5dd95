"""`pair_message`: the one entry point the sync worker (and late pairing) calls for every stored message.

Steps: mailbox mode (`off` → nothing) → facts (internal or blocklisted → nothing) → one batched directory
read for every address, domain, tag and parent message of the message (+ one for the records found) →
matchers (incl. thread inheritance) → scanner rules →
writes: in `auto` mode matcher matches become links, in `signal` mode suggestions; links that rules make
(pair, bind, created records) are made in both modes; a message's links go in together (`store.write_links`:
as few transactions as fit — per link its put and audit entry, once the message's count and each thread
marker). Then events: `message.paired` (new links), `signal.created` (each new signal); `record.created` is
emitted where the record is made.

Idempotent: links, signals and created records are keyed (see `store`, `records`), so pairing the same
message again writes nothing new and emits nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from chalicelib.logs import logger
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.notify.events import emit
from chalicelib.pairing import actions, directory
from chalicelib.pairing.context import TenantContext, for_mailbox, get_mailbox, tenant_context
from chalicelib.pairing.facts import MessageFacts, find_ticket_tags, message_facts
from chalicelib.pairing.matchers import Match, Snapshot, contact_company_keys, index_keys, run_matchers
from chalicelib.pairing.store import LinkSpec, all_links, write_links, write_signal
from chalicelib.sync.store import load_parsed

MODES = ("auto", "signal", "off")


@dataclass
class PairingResult:
    message_id: str
    mode: str
    skipped: str | None = None                       # why nothing was paired ("pairing off", "internal", ...)
    matches: list[Match] = field(default_factory=list)
    links: list[dict] = field(default_factory=list)  # links created now: {type, id, source, reason}
    signals: list[str] = field(default_factory=list)  # signal ids created now
    records: list[dict] = field(default_factory=list)  # records created now: {type, id}
    reopened: list[str] = field(default_factory=list)  # ticket ids reopened now
    suppressed: list[str] = field(default_factory=list)  # rule actions not run (auto-reply, bulk)


def body_ticket_tags(message: Message, facts: MessageFacts, context: TenantContext) -> tuple[str, ...]:
    if not context.settings.ticket_tag_in_body:
        return ()
    try:
        parsed = load_parsed(message)
    except Exception:
        logger.warning("body not available for ticket tags", extra={"message_id": message.message_id})
        return ()
    text = getattr(parsed, "text", None) if not isinstance(parsed, dict) else parsed.get("text")
    tags = find_ticket_tags((text or "")[:200_000], context.settings.ticket_tag_prefix)
    return tuple(t for t in tags if t not in facts.ticket_tags)


def read_snapshot(facts: MessageFacts, context: TenantContext, body_tags: tuple[str, ...]) -> Snapshot:
    snap = Snapshot(facts.tenant_id)
    snap.index = directory.read_snapshot_items(index_keys(facts, context.settings, body_tags))
    record_keys = set().union(*snap.index.values()) if snap.index else set()
    snap.records = directory.read_records(facts.tenant_id, record_keys)
    missing = contact_company_keys(snap)
    if missing:
        snap.records.update(directory.read_records(facts.tenant_id, missing))
    return snap


def find_matches(message: Message, facts: MessageFacts, context: TenantContext) -> list[Match]:
    body_tags = body_ticket_tags(message, facts, context)
    return run_matchers(facts, read_snapshot(facts, context, body_tags), context.settings, body_tags)


def suggest(message: Message, matches: list[Match]) -> list[str]:
    """Signal mode: one open signal per match not already linked (or unlinked) and never suggested before."""
    existing = {(link.entity_type, link.entity_id) for link in all_links(message.message_id)}
    created = []
    for match in matches:
        if (match.type, match.id) in existing:
            continue
        signal = write_signal(message, match.type, match.id, match.reason, match.matcher, match.confidence)
        if signal is not None:
            created.append(signal.signal_id)
            if message.private:      # private mail: no events (messages/privacy.py)
                continue
            emit(message.tenant_id, "signal.created", {
                "signal_id": signal.signal_id, "message_id": message.message_id, "mailbox_id": message.mailbox_id,
                "record": {"type": match.type, "id": match.id}, "reason": match.reason,
                "confidence": match.confidence})
    return created


def pair_message(message: Message, *, mailbox: Mailbox | None = None) -> PairingResult:
    """Pair one stored message with directory records according to its mailbox's pairing mode (`mailbox`
    may be passed by a caller that has just loaded it, saving one read)."""
    if mailbox is None or mailbox.mailbox_id != message.mailbox_id or mailbox.tenant_id != message.tenant_id:
        mailbox = get_mailbox(message.tenant_id, message.mailbox_id)
    mode = (mailbox.pairing_mode if mailbox is not None else "off") or "auto"
    result = PairingResult(message.message_id, mode)
    if mode not in ("auto", "signal"):
        result.skipped = "pairing off"
        return result
    context = for_mailbox(tenant_context(message.tenant_id), mailbox)
    facts = message_facts(message, context.settings, context.own_addresses)
    if facts.internal:
        result.skipped = "internal mail"
        return result
    if facts.blocked:
        result.skipped = "blocklisted"
        return result
    return apply_matches(message, facts, find_matches(message, facts, context), context, result)


def apply_matches(message: Message, facts: MessageFacts, matches: list[Match], context: TenantContext,
                  result: PairingResult, *, announce: bool = True,
                  deferred: list[tuple[Message, LinkSpec]] | None = None) -> PairingResult:
    """Rules, then links (auto) or signals (signal mode) for `matches`, then their events (`pair_message`'s
    second half; `pairing/page.py` calls it with matches found in one read for a whole page). With
    `announce=False` the caller sends `message.paired` for the new links (`paired_payload`), e.g. a whole page's
    in one queue message. With `deferred` the links are not written but appended to it as (message, spec) for the
    caller to write with a whole page's (`store.write_links`); it fills `result.links` (`link_dicts`)."""
    mode = result.mode
    result.matches = matches
    plan = actions.run_rules(message, facts, result.matches, context, result)
    ruled = {(s.type, s.id) for s in plan.links}
    pending = [m for m in plan.matches if (m.type, m.id) not in ruled]
    specs = list(plan.links)
    if mode == "auto":
        specs += [LinkSpec(m.type, m.id, "thread" if m.matcher == "thread" else "auto", m.reason,
                           f"matcher:{m.matcher}") for m in pending]
    elif pending:
        result.signals = suggest(message, pending)
    if deferred is not None:
        deferred.extend((message, spec) for spec in specs)
        return result
    written = write_links([(message, spec) for spec in specs], require_record=True)
    new_links = [link for link in written if link is not None]
    result.links = link_dicts(new_links)
    if announce and new_links and not message.private:
        emit(message.tenant_id, "message.paired", paired_payload(message, result))
    return result


def link_dicts(links) -> list[dict]:
    """`PairingResult.links` of new links: {type, id, source, reason}."""
    return [{"type": link.entity_type, "id": link.entity_id, "source": link.source, "reason": link.reason}
            for link in links]


def paired_payload(message: Message, result: PairingResult) -> dict:
    """The `message.paired` event's payload for the links `result` created."""
    return {"message_id": message.message_id, "mailbox_id": message.mailbox_id, "links": result.links}
