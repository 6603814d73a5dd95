"""What pairing needs to know about a message, derived once and purely from its stored metadata.

Counterparts (docs/architecture.md, pairing): the sender of inbound mail; every recipient (To, Cc, Bcc) of
outbound mail.
Addresses of the tenant (own domains, the tenant's mailbox addresses) are never counterparts. A message
whose participants are all the tenant's own is internal and pairs with nothing; blocklisted counterparts
(the pairing blocklist and the mailbox's never-pair lists, `privacy/lists.py`) are dropped, and a message
left without counterparts because of them pairs with nothing.

Auto-replies and bulk mail (RFC 3834 §5: `Auto-Submitted` other than "no"; `Precedence: bulk|list|junk`;
`X-Autoreply`, `X-Autorespond`; a mailing list's `List-Id`, RFC 2919) never create leads or tickets.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from chalicelib.pairing.addresses import domain_of, in_domains, normalize_address
from chalicelib.pairing.settings import PairingSettings

# "#1234#" subject tags; the lookahead finds overlapping tags ("#12#34#" → 12 and 34).
SUBJECT_TAG = re.compile(r"(?=#([0-9A-Za-z][0-9A-Za-z_./-]{0,39})#)")
REPLY_PREFIX = re.compile(r"^\s*(re|aw|odp|sv|vs|antw|r)\s*(\[\d+\])?\s*:", re.IGNORECASE)
MAX_SUBJECT = 998   # RFC 5322 §2.1.1 line limit: nothing longer is matched against


@dataclass(frozen=True)
class MessageFacts:
    tenant_id: str
    message_id: str
    mailbox_id: str
    direction: str
    folder: str
    subject: str
    sender: str | None
    sender_name: str | None
    recipients: tuple[str, ...]
    counterparts: tuple[str, ...]
    internal: bool
    blocked: bool
    subject_tags: tuple[str, ...]
    ticket_tags: tuple[str, ...]
    auto_reason: str | None
    has_attachments: bool
    is_reply: bool
    rfc_parents: tuple[str, ...] = field(default=())
    thread_id: str | None = None

    @property
    def is_auto(self) -> bool:
        return self.auto_reason is not None


def header_value(headers: dict[str, Any] | None, name: str) -> str | None:
    """A header from `Message.headers`, whatever the key case or value shape (str or list)."""
    for key, value in (headers or {}).items():
        if str(key).lower() == name:
            if isinstance(value, (list, tuple)):
                value = value[0] if value else None
            return None if value is None else str(value)
    return None


def auto_reason(headers: dict[str, Any] | None) -> str | None:
    auto = header_value(headers, "auto-submitted")
    if auto is not None and auto.split(";")[0].strip().lower() not in ("", "no"):
        return f"Auto-Submitted: {auto.strip()}"
    precedence = header_value(headers, "precedence")
    if precedence is not None and precedence.strip().lower() in ("bulk", "list", "junk"):
        return f"Precedence: {precedence.strip()}"
    for name in ("x-autoreply", "x-autorespond"):
        value = header_value(headers, name)
        if value is not None and value.strip().lower() not in ("no", "false", "0"):
            return f"{name}: {value.strip()}"
    if header_value(headers, "list-id"):
        return "List-Id (mailing list)"
    return None


def ticket_tag_pattern(prefix: str) -> re.Pattern:
    return re.compile(r"\[" + re.escape(prefix) + r"([0-9A-Za-z][0-9A-Za-z_-]{0,39})\]", re.IGNORECASE)


def find_ticket_tags(text: str, prefix: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(ticket_tag_pattern(prefix).findall(text or "")))


def find_subject_tags(subject: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(SUBJECT_TAG.findall(subject or "")))


def _emails(entries: Iterable[Any]) -> list[str]:
    result = []
    for entry in entries or []:
        raw = entry.get("email") if isinstance(entry, dict) else entry
        address = normalize_address(raw)
        if address:
            result.append(address)
    return result


def rfc_ids(message) -> tuple[str, ...]:
    """Message-IDs this message answers: In-Reply-To first, then References newest first (bounded)."""
    ids = []
    if message.in_reply_to:
        ids.extend(message.in_reply_to.split())
    ids.extend(reversed(list(message.references or [])))
    cleaned = [i.strip().strip("<>").lower() for i in ids if i and i.strip().strip("<>")]
    return tuple(dict.fromkeys(cleaned))[:10]


def message_facts(message, settings: PairingSettings, own_addresses: frozenset[str] = frozenset()
                  ) -> MessageFacts:
    sender_entry = message.from_addr or {}
    sender = (_emails([sender_entry]) or [None])[0]
    recipients = _emails(list(message.to or []) + list(message.cc or []) + list(getattr(message, "bcc", None) or []))
    own_lower = {a.lower() for a in own_addresses}

    def is_own(address: str) -> bool:
        return address.lower() in own_lower or in_domains(domain_of(address), settings.own_domains)

    def is_blocked(address: str) -> bool:
        if settings.never_pair is not None and settings.never_pair.matches(address):
            return True
        return address in settings.blocked_addresses or in_domains(domain_of(address), settings.blocked_domains)

    participants = ([sender] if sender else []) + recipients
    internal = bool(participants) and all(is_own(a) for a in participants)
    candidates = [sender] if message.direction == "inbound" and sender else (
        recipients if message.direction == "outbound" else [])
    external = [a for a in dict.fromkeys(candidates) if not is_own(a)]
    counterparts = tuple(a for a in external if not is_blocked(a))
    subject = (message.subject or "")[:MAX_SUBJECT]
    return MessageFacts(
        tenant_id=message.tenant_id, message_id=message.message_id, mailbox_id=message.mailbox_id,
        direction=message.direction, folder=message.folder, subject=subject, sender=sender,
        sender_name=(sender_entry.get("name") or None) if isinstance(sender_entry, dict) else None,
        recipients=tuple(recipients), counterparts=counterparts, internal=internal,
        blocked=bool(external) and not counterparts,
        subject_tags=find_subject_tags(subject), ticket_tags=find_ticket_tags(subject, settings.ticket_tag_prefix),
        auto_reason=auto_reason(message.headers), has_attachments=bool(message.has_attachments),
        is_reply=bool(message.in_reply_to or message.references or REPLY_PREFIX.match(subject)),
        rfc_parents=rfc_ids(message), thread_id=message.thread_id)
