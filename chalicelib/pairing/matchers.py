"""The matchers: small pure functions from a message's facts and a directory snapshot to matches.

Each match says why it was made (`reason`) and how sure the matcher is (`confidence`, used for signals).
A snapshot holds only what one batched read returned: the index items for the message's keys and the
records they name, so matchers never touch the store.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from chalicelib.models.directory import domain_key, email_key, number_key, record_key, rfc_key, thread_key
from chalicelib.pairing.addresses import domain_of, in_domains, is_freemail, without_plus_tag
from chalicelib.pairing.facts import MessageFacts
from chalicelib.pairing.settings import PairingSettings


@dataclass(frozen=True)
class Rec:
    type: str
    id: str
    name: str | None = None
    emails: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    number: str | None = None
    company_id: str | None = None
    status: str | None = None
    readers: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return record_key(self.type, self.id)


@dataclass(frozen=True)
class Match:
    type: str
    id: str
    reason: str
    matcher: str
    confidence: float

    @property
    def key(self) -> str:
        return record_key(self.type, self.id)


@dataclass
class Snapshot:
    """`index`: index_key → record keys; `records`: record key → Rec (for the keys read)."""
    tenant_id: str
    index: dict[str, set[str]] = field(default_factory=dict)
    records: dict[str, Rec] = field(default_factory=dict)

    def lookup(self, key: str, record_type: str | None = None) -> list[Rec]:
        found = [self.records[k] for k in sorted(self.index.get(key, ())) if k in self.records]
        return [r for r in found if record_type is None or r.type == record_type]


def lookup_addresses(facts: MessageFacts, settings: PairingSettings) -> dict[str, str]:
    """Lookup address → the counterpart it stands for (adds the un-tagged form when configured)."""
    result = {}
    for address in facts.counterparts:
        result.setdefault(address, address)
        if settings.strip_plus_tags:
            result.setdefault(without_plus_tag(address), address)
    return result


def matchable_domains(facts: MessageFacts, settings: PairingSettings) -> list[str]:
    if not settings.domain_match:
        return []
    domains = dict.fromkeys(domain_of(a) for a in facts.counterparts)
    return [d for d in domains if not is_freemail(d, settings.free_mail_domains)
            and not in_domains(d, settings.own_domains)]


MAX_PARENTS = 5


def parent_keys(facts: MessageFacts, settings: PairingSettings) -> list[tuple[str, str]]:
    """(index key, description) of the messages this one answers, nearest first, then its provider thread."""
    if not settings.thread_inheritance:
        return []
    keys = [(rfc_key(facts.tenant_id, r), f"reply to <{r}>") for r in facts.rfc_parents[:MAX_PARENTS]]
    if facts.thread_id:
        keys.append((thread_key(facts.tenant_id, facts.mailbox_id, facts.thread_id),
                     f"provider thread {facts.thread_id}"))
    return keys


def index_keys(facts: MessageFacts, settings: PairingSettings, body_ticket_tags: tuple[str, ...] = ()
               ) -> list[str]:
    """Every directory index key this message can match on (one BatchGetItem resolves them all)."""
    tenant = facts.tenant_id
    keys = [key for key, _ in parent_keys(facts, settings)]
    keys += [email_key(tenant, a) for a in lookup_addresses(facts, settings)]
    keys += [domain_key(tenant, d) for d in matchable_domains(facts, settings)]
    for tag in facts.subject_tags:
        keys += [number_key(tenant, "project", tag), number_key(tenant, "task", tag)]
    for tag in dict.fromkeys(facts.ticket_tags + body_ticket_tags):
        keys.append(number_key(tenant, "ticket", tag))
    return list(dict.fromkeys(keys))


def match_people(facts: MessageFacts, snap: Snapshot, settings: PairingSettings) -> list[Match]:
    """Contacts and leads whose address is a counterpart's."""
    matches = []
    for lookup, counterpart in lookup_addresses(facts, settings).items():
        for record_type in ("contact", "lead"):
            for rec in snap.lookup(email_key(facts.tenant_id, lookup), record_type):
                matches.append(Match(rec.type, rec.id, f"{record_type} address {counterpart}",
                                     record_type, 0.95))
    return matches


def match_company(facts: MessageFacts, snap: Snapshot, settings: PairingSettings) -> list[Match]:
    """A company whose address, or whose contact's address, is a counterpart's; else by domain
    (never on free-mail or the tenant's own domains)."""
    matches = []
    for lookup, counterpart in lookup_addresses(facts, settings).items():
        key = email_key(facts.tenant_id, lookup)
        for rec in snap.lookup(key, "company"):
            matches.append(Match("company", rec.id, f"company address {counterpart}", "company", 0.95))
        for contact in snap.lookup(key, "contact"):
            company = snap.records.get(record_key("company", contact.company_id or ""))
            if company is not None:
                matches.append(Match("company", company.id,
                                     f"{counterpart} is contact {contact.id} of the company", "company", 0.9))
    for domain in matchable_domains(facts, settings):
        for rec in snap.lookup(domain_key(facts.tenant_id, domain), "company"):
            matches.append(Match("company", rec.id, f"company domain {domain}", "company_domain", 0.6))
    return matches


def match_subject_tags(facts: MessageFacts, snap: Snapshot) -> list[Match]:
    """Projects and tasks whose number appears as "#1234#" in the subject; unknown numbers do nothing."""
    matches = []
    for tag in facts.subject_tags:
        for record_type in ("project", "task"):
            for rec in snap.lookup(number_key(facts.tenant_id, record_type, tag), record_type):
                matches.append(Match(rec.type, rec.id, f"subject tag #{tag}#", record_type, 0.9))
    return matches


def match_ticket(facts: MessageFacts, snap: Snapshot, settings: PairingSettings,
                 body_tags: tuple[str, ...] = ()) -> list[Match]:
    matches = []
    prefix = settings.ticket_tag_prefix
    for tag, where in [(t, "subject") for t in facts.ticket_tags] + [(t, "body") for t in body_tags]:
        for rec in snap.lookup(number_key(facts.tenant_id, "ticket", tag), "ticket"):
            matches.append(Match("ticket", rec.id, f"ticket tag [{prefix}{tag}] in {where}", "ticket",
                                 0.95 if where == "subject" else 0.85))
    return matches


def match_thread(facts: MessageFacts, snap: Snapshot, settings: PairingSettings) -> list[Match]:
    """Thread inheritance: the links of the nearest message this one answers (In-Reply-To, then References
    newest first, RFC 5322 §3.6.4), else of its provider thread — so a reply that dropped the tag still
    lands on the project. Links to records no longer in the directory are not inherited."""
    for key, why in parent_keys(facts, settings):
        inherited = snap.lookup(key)
        if inherited:
            return [Match(rec.type, rec.id, why, "thread", 0.8) for rec in inherited]
    return []


def contact_company_keys(snap: Snapshot) -> list[str]:
    """Company record keys of the contacts in the snapshot that are not loaded yet."""
    keys = {record_key("company", r.company_id) for r in snap.records.values() if r.type == "contact" and r.company_id}
    return sorted(k for k in keys if k not in snap.records)


def dedupe(matches: list[Match]) -> list[Match]:
    """One match per record: the most confident, first reason wins on ties."""
    best: dict[str, Match] = {}
    for match in matches:
        current = best.get(match.key)
        if current is None or match.confidence > current.confidence:
            best[match.key] = match
    return list(best.values())


def run_matchers(facts: MessageFacts, snap: Snapshot, settings: PairingSettings,
                 body_tags: tuple[str, ...] = ()) -> list[Match]:
    if facts.internal or facts.blocked:
        return []
    return dedupe(match_company(facts, snap, settings) + match_people(facts, snap, settings)
                  + match_subject_tags(facts, snap) + match_ticket(facts, snap, settings, body_tags)
                  + match_thread(facts, snap, settings))
