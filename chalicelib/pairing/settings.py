"""Per-tenant pairing settings, stored under `Tenant.settings["pairing"]` (read with defaults).

    {"blocklist": {"addresses": [...], "domains": [...]},   # pair these with nothing
     "ticket_tag_prefix": "T-",     # ticket tag "[T-1234]" in the subject
     "ticket_tag_in_body": false,   # also look for the ticket tag in the text body (loads the parsed body)
     "strip_plus_tags": false,      # also look up "jan@x" for "jan+tag@x"
     "domain_match": true,          # company by e-mail domain (never free-mail or own domains)
     "free_mail_domains": [...],    # added to the shipped free-mail list
     "thread_inheritance": true,    # a reply inherits the links of the message it answers
     "late_pairing_days": 30}       # how far back a directory change re-pairs messages
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chalicelib.pairing.addresses import normalize_address, normalize_domain

DEFAULT_TICKET_PREFIX = "T-"


@dataclass(frozen=True)
class PairingSettings:
    blocked_addresses: frozenset[str] = frozenset()
    blocked_domains: frozenset[str] = frozenset()
    ticket_tag_prefix: str = DEFAULT_TICKET_PREFIX
    ticket_tag_in_body: bool = False
    strip_plus_tags: bool = False
    domain_match: bool = True
    free_mail_domains: frozenset[str] = frozenset()
    thread_inheritance: bool = True
    late_pairing_days: int = 30
    own_domains: frozenset[str] = field(default=frozenset())
    never_pair: Any = None          # the mailbox's never-pair lists (privacy.lists.Matcher), set per mailbox

    def to_dict(self) -> dict[str, Any]:
        return {"blocklist": {"addresses": sorted(self.blocked_addresses), "domains": sorted(self.blocked_domains)},
                "ticket_tag_prefix": self.ticket_tag_prefix, "ticket_tag_in_body": self.ticket_tag_in_body,
                "strip_plus_tags": self.strip_plus_tags, "domain_match": self.domain_match,
                "free_mail_domains": sorted(self.free_mail_domains),
                "thread_inheritance": self.thread_inheritance, "late_pairing_days": self.late_pairing_days}


def _addresses(values) -> frozenset[str]:
    return frozenset(a for a in (normalize_address(v) for v in values or []) if a)


def _domains(values) -> frozenset[str]:
    return frozenset(d for d in (normalize_domain(v) for v in values or []) if d)


def from_tenant(settings: dict | None, own_domains: list[str] | None = None) -> PairingSettings:
    raw = dict((settings or {}).get("pairing") or {})
    blocklist = raw.get("blocklist") or {}
    return PairingSettings(
        blocked_addresses=_addresses(blocklist.get("addresses")),
        blocked_domains=_domains(blocklist.get("domains")),
        ticket_tag_prefix=str(raw.get("ticket_tag_prefix") or DEFAULT_TICKET_PREFIX),
        ticket_tag_in_body=bool(raw.get("ticket_tag_in_body", False)),
        strip_plus_tags=bool(raw.get("strip_plus_tags", False)),
        domain_match=bool(raw.get("domain_match", True)),
        free_mail_domains=_domains(raw.get("free_mail_domains")),
        thread_inheritance=bool(raw.get("thread_inheritance", True)),
        late_pairing_days=int(raw.get("late_pairing_days", 30)),
        own_domains=_domains(own_domains),
    )
