"""Search tokens: what a message is indexed under and what a query asks for (pure functions).

Normalization: NFKD, combining marks dropped (accents folded: "Poptávka" → "poptavka"), NFKC, casefold.
Words are runs of letters/digits/underscore (`\\w`) of 2–64 characters. An address entry gives its whole
address, its domain, and the words of both and of the display name, so "jan@acme.example", "@acme.example",
"acme" and "Novák" all find Jan Novák's mail, and "jan.novak" finds jan.novak@… by its words. Every token is one
a query can ask for (`query_tokens`: a word, a whole address, a domain): the local part is not a token of its
own — a query never yields "jan.novak" (its words, "jan" and "novak", are tokens), and a one-word local part is
already a word — so no posting is written that no query can read. A message is indexed under at most
`MAX_MESSAGE_TOKENS` distinct tokens of its subject, participants (from, to, cc, bcc), snippet and attachment
names, in that order. No prefixes and no stemming: a query word matches whole tokens only.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any, Iterable

MIN_TOKEN, MAX_TOKEN, MAX_ADDRESS_TOKEN = 2, 64, 128
MAX_MESSAGE_TOKENS = 300
MAX_QUERY_TOKENS = 8
MAX_FIELD_CHARS = 4_000
_WORD = re.compile(r"\w+")


class QueryTooLong(ValueError):
    """A query with more than `MAX_QUERY_TOKENS` tokens."""


def fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text[:MAX_FIELD_CHARS])
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFKC", stripped).casefold()


def words(text: str | None) -> list[str]:
    return [w for w in _WORD.findall(fold(text or "")) if MIN_TOKEN <= len(w) <= MAX_TOKEN]


def address_tokens(entry: Any) -> list[str]:
    if not isinstance(entry, dict):
        return []
    email = fold(str(entry.get("email") or "")).strip()
    tokens: list[str] = []
    if email and len(email) <= MAX_ADDRESS_TOKEN:
        _, at, domain = email.rpartition("@")
        tokens.append(email)
        if at and MIN_TOKEN <= len(domain) <= MAX_ADDRESS_TOKEN:
            tokens.append(domain)
        tokens += words(email)       # the local part's words (a one-word local part is one of them)
    return tokens + words(entry.get("name"))


def message_tokens(message: Any) -> list[str]:
    """The distinct tokens a stored message is indexed under (first `MAX_MESSAGE_TOKENS`)."""
    found: dict[str, None] = {}

    def add(tokens: Iterable[str]) -> None:
        for token in tokens:
            if len(found) < MAX_MESSAGE_TOKENS:
                found.setdefault(token, None)

    add(words(message.subject))
    for entry in [message.from_addr] + list(message.to or []) + list(message.cc or []) + list(message.bcc or []):
        add(address_tokens(entry))
    add(words(message.snippet))
    for attachment in message.attachments or []:
        add(words((attachment or {}).get("filename")))
    return list(found)


def query_tokens(query: str) -> list[str]:
    """The tokens a query asks for (AND): each whitespace-separated term gives its words, except an address
    ("jan@acme.example": the whole address) and a domain ("@acme.example"). Raises QueryTooLong."""
    found: dict[str, None] = {}
    for term in (query or "").split():
        folded = fold(term).strip("<>()[],;\"'")
        if "@" in folded and len(folded) <= MAX_ADDRESS_TOKEN:
            local, _, domain = folded.rpartition("@")
            token = folded if local else domain
            if len(token) >= MIN_TOKEN:
                found.setdefault(token, None)
                continue
        for word in words(term):
            found.setdefault(word, None)
    if len(found) > MAX_QUERY_TOKENS:
        raise QueryTooLong(f"at most {MAX_QUERY_TOKENS} words")
    return list(found)
