"""Strict parsing of address headers (From, To, Cc, Bcc, Reply-To).

`email.utils.getaddresses` reads malformed values "helpfully": `alice@example.com)<mallory@evil.example>`
or `alice@example.com <mallory@evil.example>` yield alice as the first address (CVE-2023-27043). Python
3.11.10 / 3.12.6 / 3.13 added `strict=True`, which rejects such values; this module applies the same checks
on every interpreter (the validation below follows CPython's `email/utils.py` of 3.13, PSF licence):

- parentheses (comments) must balance outside quoted display names;
- the parser must find exactly one address per top-level comma (commas inside quotes do not count);
- a parsed address must not contain "[" (a failed domain-literal parse).

A header that fails is parsed again piece by piece (split at top-level commas) so one malformed recipient
does not lose the others; `From` keeps only a value that is valid as a whole, so a malformed From is never
read as its first token. Problems are appended to the caller's `errors` ("header: From malformed").
"""
from __future__ import annotations

from email.utils import getaddresses
from typing import Callable, Iterator

MAX_ADDRESSES = 200          # per header; the storage budget (`sync.limits`) may keep fewer
MAX_HEADER_CHARS = 64_000    # read per address header (cut at a comma); more cannot be stored anyway


def _iter_escaped_chars(addr: str) -> Iterator[tuple[int, str]]:
    pos = 0
    escape = False
    for pos, ch in enumerate(addr):
        if escape:
            yield pos, "\\" + ch
            escape = False
        elif ch == "\\":
            escape = True
        else:
            yield pos, ch
    if escape:
        yield pos, "\\"


def _strip_quoted_realnames(addr: str) -> str:
    if '"' not in addr:
        return addr
    start, open_pos, result = 0, None, []
    for pos, ch in _iter_escaped_chars(addr):
        if ch == '"':
            if open_pos is None:
                open_pos = pos
            else:
                if start != open_pos:
                    result.append(addr[start:open_pos])
                start, open_pos = pos + 1, None
    if start < len(addr):
        result.append(addr[start:])
    return "".join(result)


def _parentheses_balance(addr: str) -> bool:
    if "(" not in addr and ")" not in addr:
        return True
    opens = 0
    for _, ch in _iter_escaped_chars(_strip_quoted_realnames(addr)):
        if ch == "(":
            opens += 1
        elif ch == ")":
            opens -= 1
            if opens < 0:
                return False
    return opens == 0


def strict_getaddresses(value: str) -> list[tuple[str, str]] | None:
    """(display name, address) pairs, or None when `value` is malformed (see the module docstring)."""
    if not value.strip():
        return []
    if not _parentheses_balance(value):
        return None
    pairs = getaddresses([value])
    if any("[" in address for _, address in pairs):
        return None
    if len(pairs) != 1 + _strip_quoted_realnames(value).count(","):
        return None
    return pairs


def split_top_level(value: str) -> list[str]:
    """`value` split at commas outside quotes, parentheses and angle brackets."""
    pieces, current, quoted, depth, angle = [], [], False, 0, False
    for _, ch in _iter_escaped_chars(value):
        if ch == '"' and not depth:
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")" and depth:
            depth -= 1
        elif not quoted and not depth and ch in "<>":
            angle = ch == "<"
        elif ch == "," and not (quoted or depth or angle):
            pieces.append("".join(current))
            current = []
            continue
        current.append(ch)
    pieces.append("".join(current))
    return [p for p in pieces if p.strip()]


def parse_addresses(raw: str, name: str, errors: list[str],
                    clean: Callable[[str], str]) -> list[dict[str, str]]:
    """Addresses of one header as [{"name", "email"}] (email lowercased); `clean` decodes display names."""
    if len(raw) > MAX_HEADER_CHARS:
        errors.append(f"header: {name} over {MAX_HEADER_CHARS} characters, the rest is not read")
        raw = raw[:max(0, raw.rfind(",", 0, MAX_HEADER_CHARS))]
    try:
        pairs = strict_getaddresses(raw)
        if pairs is None:
            errors.append(f"header: {name} malformed")
            if name == "From":
                return []
            pairs = [p for piece in split_top_level(raw) for p in (strict_getaddresses(piece) or [])]
    except Exception:  # noqa: BLE001 — getaddresses has raised on pathological input in older Pythons
        errors.append(f"header: {name} unparsable")
        return []
    result = []
    for display, email in pairs:
        email = email.strip().strip("<>").strip()
        if "@" not in email or any(c.isspace() or ord(c) < 32 for c in email):
            continue
        result.append({"name": clean(display).strip().strip('"')[:200], "email": email.lower()[:320]})
    if len(result) > MAX_ADDRESSES:
        errors.append(f"header: {name} truncated to {MAX_ADDRESSES} addresses")
        result = result[:MAX_ADDRESSES]
    return result
