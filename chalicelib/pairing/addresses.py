"""Address normalisation for directory keys and matching.

Lookups are exact and case-insensitive on the domain only (RFC 5321 §2.4: the local part may be
case-sensitive; the domain is not). Display names are tolerated ("Jan <jan@acme.example>" → the address).
A `+tag` in the local part is kept unless the tenant asks to strip it (`strip_plus_tags`).
"""
from __future__ import annotations

import functools
from email.utils import parseaddr
from pathlib import Path

_FREEMAIL_FILE = Path(__file__).with_name("data") / "freemail_domains.txt"


def normalize_address(value: str | None) -> str | None:
    """"local@domain" with the domain lowercased, or None when `value` holds no usable address."""
    if not value:
        return None
    text = value.strip()
    if "<" in text or " " in text:
        text = parseaddr(text)[1] or text
    text = text.strip().strip("<>").strip()
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain or " " in text:
        return None
    return f"{local}@{domain.lower().rstrip('.')}"


def normalize_domain(value: str | None) -> str | None:
    if not value:
        return None
    domain = value.strip().lower().lstrip("@").rstrip(".")
    return domain if domain and "." in domain and " " not in domain else None


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]


def without_plus_tag(address: str) -> str:
    """"jan+crm@acme.example" → "jan@acme.example" (sub-addressing, RFC 5233)."""
    local, _, domain = address.rpartition("@")
    base = local.split("+", 1)[0]
    return f"{base}@{domain}" if base else address


@functools.lru_cache(maxsize=1)
def freemail_domains() -> frozenset[str]:
    lines = _FREEMAIL_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def is_freemail(domain: str, extra: frozenset[str] | set[str] = frozenset()) -> bool:
    return domain in freemail_domains() or domain in extra


def in_domains(domain: str, domains: set[str] | frozenset[str]) -> bool:
    """`domain` equals one of `domains` or is a subdomain of one (mail.acme.example ∈ acme.example)."""
    return any(domain == d or domain.endswith("." + d) for d in domains)
