"""International domain names: U-labels ↔ A-labels (IDNA2008 with UTS #46 mapping: RFC 5891 §4,
unicode.org/reports/tr46), used by outgoing addresses (`security.addresses`), the privacy lists and the
directory index keys (`models.directory`).

`idna` loads on the first international domain (`chalicelib.lazy`), not on the API's cold start, which the
request models importing these modules would otherwise pay for its tables (~5 M instructions, 0.4 %).
"""
from __future__ import annotations

from chalicelib.lazy import lazy_module

idna = lazy_module("idna")


def ascii_domain(domain: str) -> str:
    """`domain` as A-labels (IDNA2008 with UTS #46 mapping); raises ValueError when it cannot be one."""
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValueError(f"not a valid domain: {exc}") from None


def unicode_domain(domain: str) -> str:
    """`domain` with its A-labels as U-labels (`xn--mnchen-3ya.example` → `münchen.example`); raises ValueError
    when it cannot be decoded."""
    try:
        return idna.decode(domain, uts46=True)
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValueError(f"not a valid domain: {exc}") from None
