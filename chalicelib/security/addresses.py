"""Addresses and display names that are safe in a mail header and an SMTP envelope exactly as they are.

- `is_plain_address`: an addr-spec `local@domain` (RFC 5322 §3.4.1) in its dot-atom form only — ASCII atext
  (§3.2.3) with dots only between atoms, the local part at most 64 octets (RFC 5321 §4.5.3.1.1), at most 254
  characters in all; the domain LDH labels (RFC 1035 §2.3.1; international names as A-labels). Refused: quoted
  or commented forms, control characters, and non-ASCII local parts — those need SMTPUTF8 (RFC 6531), which
  the 7-bit outbox does not use, and an encoded word is not allowed inside an addr-spec (RFC 2047 §5).
- `ascii_domain` / `with_ascii_domain`: a domain, or an address whose domain is written in U-labels
  (`jan@münchen.example`), with the domain as A-labels (`jan@xn--mnchen-3ya.example`, IDNA2008 with UTS #46
  mapping: RFC 5891 §4, unicode.org/reports/tr46) — the form a 7-bit header and envelope carry (RFC 5321
  §2.3.5); the local part is left as it is. `privacy.lists` normalizes its entries' domains with it too.
- `header_safe_name`: a display name with control characters (RFC 5322 §2.2 allows none in a field body;
  CR/LF would start a new header) turned into spaces.

The API refuses input that fails these (422); addresses the outbox takes from a stored message (reply and
reply-all recipients: whatever an inbound message said) are dropped or cleaned with them instead.

The IDNA conversions live in `chalicelib.idn` (below the models, whose directory index keys use them).
"""
from __future__ import annotations

import re

from chalicelib.idn import ascii_domain

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDR_SPEC = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*@{_LABEL}(?:\.{_LABEL})+")
# What a header value must not carry: the controls of RFC 5322 §2.2 (CR and LF among them), the C1 controls
# (NEL, U+0085), and the Unicode line and paragraph separators U+2028/U+2029 — Python's email package splits a
# header at every line boundary `str.splitlines` knows and refuses such a value when it writes the message.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
MAX_LOCAL_PART = 64
MAX_ADDRESS = 254


def is_plain_address(value: str) -> bool:
    return (len(value) <= MAX_ADDRESS and _ADDR_SPEC.fullmatch(value) is not None
            and len(value.rpartition("@")[0]) <= MAX_LOCAL_PART)


def with_ascii_domain(value: str) -> str:
    """The address with an international domain as A-labels; unchanged when the domain is ASCII or cannot be
    encoded (`is_plain_address` then refuses it)."""
    local, at, domain = value.rpartition("@")
    if not at or domain.isascii():
        return value
    try:
        return f"{local}@{ascii_domain(domain)}"
    except ValueError:
        return value


def has_header_break(value: str) -> bool:
    """True when `value` holds a character a header value must not carry (see `_CONTROL`)."""
    return _CONTROL.search(value) is not None


def header_safe_text(value: str) -> str:
    """`value` with every character a header must not carry replaced by a space (for text taken from stored
    mail — an inbound subject or filename may decode to anything)."""
    return _CONTROL.sub(" ", value)


def header_safe_name(value: str | None) -> str | None:
    if not value:
        return value
    return " ".join(_CONTROL.sub(" ", value).split()) or None
