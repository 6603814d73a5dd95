"""Thread identity: which conversation a message belongs to (pure functions, no I/O).

Order of evidence (the first that names a known conversation wins; `threads/assign.py` looks the keys up):
  1. the message's own Message-ID, already stored by another mailbox or folder of the tenant: a copy of one
     message is in one conversation everywhere;
  2. the provider's thread (Gmail `threadId`, Graph `conversationId`; per mailbox);
  3. the messages it answers, nearest first: `In-Reply-To`, then `References` from the end (RFC 5322 §3.6.4:
     References lists the parent's References followed by the parent's Message-ID, so the first entry is the
     thread's root and the last one the parent);
  4. the subject fallback, only for a message that has NO In-Reply-To/References (a client that dropped
     them): its subject must carry a reply/forward prefix ("Re:", "Fwd:", "AW:", …), the normalized
     subject must match a stored message's, that message must share an address with it other than the
     mailbox's own, and the two dates must lie within `SUBJECT_WINDOW_DAYS`. Two strangers writing "Invoice"
     to the same mailbox therefore never join (their only common address is the mailbox's).
Otherwise the conversation is new. Its id is derived from the thread's root (`initial_id`): the first
References entry, else In-Reply-To, else the message's own Message-ID — so the messages of one thread get the
same id without any lookup when their headers are intact, even when processed concurrently. This is the id
stored at ingest (`sync/store.py`); the lookup above only corrects it. A message bridging two existing
conversations joins the first one found (conversations are never merged).
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import datetime, timedelta
from typing import Any, Iterable

from chalicelib import ids

SUBJECT_WINDOW_DAYS = 30
MAX_PARENT_KEYS = 20            # nearest parents looked up (References may list 50)
MAX_SUBJECT_ADDRESSES = 5       # external participants a subject key is written for / looked up by
MIN_SUBJECT_CHARS = 3
_PREFIX = re.compile(r"^\s*(?:re|fw|fwd|aw|wg|sv|vs|odp|pd|tr|rif|antw|r|ynt|res|enc)\s*(?:\[\d{1,4}\])?\s*:\s*",
                     re.IGNORECASE)


def _norm_id(value: str) -> str:
    return value.strip().strip("<>").strip().lower()


def mid_key(tenant_id: str, rfc_message_id: str) -> str:
    return f"{tenant_id}#mid#{_norm_id(rfc_message_id)}"


def provider_key(tenant_id: str, mailbox_id: str, thread_id: str) -> str:
    return f"{tenant_id}#pt#{mailbox_id}#{thread_id}"


def subject_key(tenant_id: str, subject_digest: str, address: str) -> str:
    return f"{tenant_id}#subj#{subject_digest}#{address}"


def strip_prefixes(subject: str | None) -> tuple[str, bool]:
    """(the subject without reply/forward prefixes, whether it had any); prefixes repeat ("Re: AW: Re:")."""
    text = (subject or "")[:1000]
    had = False
    for _ in range(20):
        match = _PREFIX.match(text)
        if not match:
            break
        text, had = text[match.end():], True
    return text, had


def normalized_subject(subject: str | None) -> str:
    """Casefolded, NFKC, whitespace collapsed, without reply/forward prefixes ("" when too short)."""
    text, _ = strip_prefixes(subject)
    text = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return text if len(text) >= MIN_SUBJECT_CHARS else ""


def subject_digest(subject: str | None) -> str:
    text = normalized_subject(subject)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32] if text else ""


def parents(message: Any) -> list[str]:
    """The Message-IDs this message answers, nearest first (In-Reply-To, then References backwards)."""
    found: list[str] = []
    for value in [message.in_reply_to or ""] + list(reversed(list(message.references or []))):
        value = _norm_id(value)
        if value and value not in found:
            found.append(value)
    return found[:MAX_PARENT_KEYS]


def root(message: Any) -> str | None:
    """The thread's root Message-ID as this message knows it (RFC 5322 §3.6.4), else its own."""
    references = [r for r in (message.references or []) if _norm_id(r)]
    if references:
        return _norm_id(references[0])
    if message.in_reply_to and _norm_id(message.in_reply_to):
        return _norm_id(message.in_reply_to)
    return _norm_id(message.rfc_message_id) if message.rfc_message_id else None


def initial_id(tenant_id: str, message: Any) -> str:
    """The conversation id a message gets without any lookup (see the module docstring)."""
    start = root(message)
    if start:
        return ids.stable_id("cnv", tenant_id, "mid", start)
    if message.thread_id:
        return ids.stable_id("cnv", tenant_id, "pt", message.mailbox_id, message.thread_id)
    return ids.stable_id("cnv", tenant_id, "msg", message.message_id)


def addresses(message: Any) -> list[dict]:
    """Every address entry of the message ({"name", "email"}), sender first."""
    entries = [message.from_addr] if message.from_addr else []
    for field in (message.to, message.cc):
        entries.extend(field or [])
    return [e for e in entries if isinstance(e, dict) and e.get("email")]


def external_addresses(message: Any, own: Iterable[str]) -> list[str]:
    """The message's addresses other than the mailbox's own, lowercased, first `MAX_SUBJECT_ADDRESSES`."""
    mine = {o.lower() for o in own if o}
    found: list[str] = []
    for entry in addresses(message):
        email = str(entry["email"]).strip().lower()
        if email and email not in mine and email not in found:
            found.append(email)
    return found[:MAX_SUBJECT_ADDRESSES]


def may_join_by_subject(message: Any) -> bool:
    """A reply that lost its references: no In-Reply-To/References, a reply/forward prefix, a real subject."""
    if message.in_reply_to or message.references:
        return False
    _, had_prefix = strip_prefixes(message.subject)
    return had_prefix and bool(normalized_subject(message.subject))


def within_window(first: str | None, second: str | None) -> bool:
    try:
        a = datetime.fromisoformat((first or "").replace("Z", "+00:00"))
        b = datetime.fromisoformat((second or "").replace("Z", "+00:00"))
    except ValueError:
        return False
    return abs(a - b) <= timedelta(days=SUBJECT_WINDOW_DAYS)
