"""The storage budget: a parsed message always fits one DynamoDB item (400 KB, names and values included).

Every header-derived field of `ParsedMessage` that is stored in the `Message` item gets a byte budget
(UTF-8, as DynamoDB counts; JSON attributes as their JSON text). Lists keep their first entries that fit
(References keep the first — the thread root — and the latest); strings are cut. The budgets add up to
`ITEM_BUDGET`, which leaves the rest of the 400 KB for what the store adds (keys, ids, state) — and
`fit_to_budget` checks the total again, cutting the largest lists first. Whatever is cut is named in
`parse_errors` ("limit: To cut to 123 of 200 addresses (48 KB)").

| field | budget |
|---|---|
| from_addr, sender, reply_to | 2 KB, 2 KB, 4 KB |
| to, cc / bcc | 64 KB, 48 KB / 16 KB |
| subject, snippet | 4 KB, 1 KB (1,000 / 200 characters) |
| rfc_message_id, in_reply_to | 1 KB each (250 characters, longer ids are hashed: `mime_decode`) |
| references | 16 KB (≤ 50 ids) |
| headers (automation headers) | 16 KB |
| attachments (≤ 200 entries) | 64 KB |
| parse_errors | 8 KB (≤ 60 entries of ≤ 200 characters) |
| **ITEM_BUDGET** (all of the above) | 256 KB |
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

ITEM_BUDGET = 256 * 1024
DYNAMODB_ITEM_LIMIT = 400 * 1024
FIELD_BUDGETS = {
    "from_addr": 2 * 1024, "sender": 2 * 1024, "reply_to": 4 * 1024, "to": 64 * 1024, "cc": 48 * 1024, "bcc": 16 * 1024,
    "subject": 4 * 1024, "snippet": 1024, "rfc_message_id": 1024, "in_reply_to": 1024,
    "references": 16 * 1024, "headers": 16 * 1024, "attachments": 64 * 1024, "parse_errors": 8 * 1024,
}
# The field budgets sum below ITEM_BUDGET, so fields within their budgets are an item within it (the whole-item
# shrink below only runs if someone raises a field budget past that).
_FIELDS_FIT_ITEM = sum(FIELD_BUDGETS.values()) + sum(len(name) for name in FIELD_BUDGETS) <= ITEM_BUDGET
MAX_PARSE_ERRORS = 60
MAX_ERROR_CHARS = 200
_SHRINK_ORDER = ("bcc", "cc", "to", "attachments", "references", "headers", "reply_to")


def size_of(value: Any) -> int:
    """Bytes DynamoDB counts for a stored value (JSON text for dicts/lists of dicts; UTF-8 for strings)."""
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return sum(size_of(v) + 3 for v in value) + 3       # a list of strings: per-element overhead
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def _surely_within(value: Any, budget: int) -> bool:
    """A cheap upper bound (≤ 4 UTF-8 bytes per character, ≤ 2× for JSON escapes) for small values."""
    if isinstance(value, str):
        return len(value) * 4 <= budget
    if isinstance(value, list) and len(value) <= 8:
        return all(_surely_within(v, budget // 16) for v in value)
    if isinstance(value, dict) and len(value) <= 8:
        return all(isinstance(v, (int, type(None))) or (isinstance(v, str) and len(v) * 8 + 64 <= budget // 8)
                   for v in value.values())
    return False


def _cut_text(value: str, budget: int) -> str:
    return value.encode("utf-8")[:budget].decode("utf-8", "ignore")


def _fit_list(items: list[Any], budget: int) -> list[Any]:
    kept: list[Any] = []
    used = 3
    for item in items:
        used += size_of(item) + 3
        if used > budget:
            break
        kept.append(item)
    return kept


def _fit_references(refs: list[str], budget: int) -> list[str]:
    """Keep the thread root and as many of the latest ids as fit (RFC 5322 §3.6.4)."""
    if size_of(refs) <= budget or not refs:
        return refs
    latest = _fit_list(list(reversed(refs[1:])), budget - size_of(refs[0]) - 6)
    return ([refs[0]] if size_of(refs[0]) + 6 <= budget else []) + list(reversed(latest))


def _fit_headers(headers: dict[str, str], budget: int) -> dict[str, str]:
    share = max(64, budget // max(1, len(headers)) - 64)
    return {name: _cut_text(value, share) for name, value in headers.items()}


def _fit_field(name: str, value: Any, budget: int) -> Any:
    if isinstance(value, str):
        return _cut_text(value, budget)
    if name == "references":
        return _fit_references(value, budget)
    if name == "headers":
        return _fit_headers(value, budget)
    if name in ("from_addr", "sender"):
        return {"name": _cut_text(value.get("name") or "", 512), "email": value.get("email", "")[:320]}
    return _fit_list(value, budget)


def _describe(name: str, before: Any, after: Any) -> str:
    kb = f"{size_of(before) // 1024} KB"
    if isinstance(before, list):
        return f"limit: {name} cut to {len(after)} of {len(before)} entries ({kb})"
    return f"limit: {name} cut ({kb})"


def _errors(errors: list[str]) -> list[str]:
    cleaned = [e[:MAX_ERROR_CHARS] for e in dict.fromkeys(errors)]
    if len(cleaned) > MAX_PARSE_ERRORS:
        cleaned = cleaned[:MAX_PARSE_ERRORS - 1] + [f"limit: {len(cleaned) - MAX_PARSE_ERRORS + 1} more errors"]
    return _fit_list(cleaned, FIELD_BUDGETS["parse_errors"])


def stored_size(parsed: Any) -> int:
    """Bytes the budgeted fields of `parsed` take in the item (attribute names included)."""
    return sum(size_of(getattr(parsed, name)) + len(name) for name in FIELD_BUDGETS)


def fit_to_budget(parsed: Any) -> Any:
    """`parsed` (a `sync.mime.ParsedMessage`) with every stored field within its budget, the whole within
    `ITEM_BUDGET`; what was cut is appended to `parse_errors`."""
    changes: dict[str, Any] = {}
    notes: list[str] = []
    for name, budget in FIELD_BUDGETS.items():
        value = getattr(parsed, name)
        if name == "parse_errors" or not value or _surely_within(value, budget) or size_of(value) <= budget:
            continue
        changes[name] = _fit_field(name, value, budget)
        notes.append(_describe(name, value, changes[name]))
    fitted = dataclasses.replace(parsed, **changes)
    for name in _SHRINK_ORDER if not _FIELDS_FIT_ITEM else ():   # every field is within its budget by now
        if stored_size(fitted) <= ITEM_BUDGET:
            break
        value = getattr(fitted, name)
        smaller = _fit_field(name, value, size_of(value) // 4)
        notes.append(_describe(name, value, smaller))
        fitted = dataclasses.replace(fitted, **{name: smaller})
    errors = _errors([*parsed.parse_errors, *notes])
    if not notes and errors == parsed.parse_errors:
        return parsed
    return dataclasses.replace(fitted, parse_errors=errors)
