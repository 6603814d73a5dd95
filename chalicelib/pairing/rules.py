"""Scanner rules (after YetiForce's mail scanner and Caflou's automatic rules): ordered condition → action
lists per tenant or mailbox. Condition evaluation here is pure; actions are carried out by the engine.

Conditions (all given ones must hold): `folder`, `direction`, `from` / `to` (addresses or domains — a domain
covers its subdomains; compared case-insensitively, international domains in either form; `to` covers To and
Cc), `subject_contains` (case-insensitive by Unicode full case folding, `str.casefold`:
"STRASSE" is found in "Straße"; Unicode §3.13 "Default Caseless Matching"), `subject_regex` (the same
folding, `regex.FULLCASE`; validated, bounded: at most 200 characters, no backreferences or nested
quantifiers, run on at most 998 characters of subject with a `REGEX_TIMEOUT_SECONDS` budget — the static
check cannot catch every catastrophic pattern, e.g. `(a|a)+$`, `((a+))+$`, so a pattern that runs out of
time counts as "no match"), `has_attachment`, `auto_reply` (RFC 3834 auto-reply or bulk mail).

Actions: {"type": "pair", "record": {"type", "id"}}, {"type": "create_lead"}, {"type": "create_ticket"},
{"type": "reopen_ticket"}, {"type": "bind", "types": ["company", "contact", "lead"]}, {"type": "skip"}
(pair this message with nothing and stop), {"type": "stop"} (run no later rule).
"""
from __future__ import annotations

import re
from typing import Any

import regex

from chalicelib.logs import logger
from chalicelib.models.directory import RECORD_TYPES, key_address, key_domain
from chalicelib.pairing.addresses import domain_of, normalize_address, normalize_domain
from chalicelib.pairing.facts import MessageFacts

ACTION_TYPES = ("pair", "create_lead", "create_ticket", "reopen_ticket", "bind", "skip", "stop")
CONDITION_KEYS = ("folder", "direction", "from", "to", "subject_contains", "subject_regex", "has_attachment",
                  "auto_reply")
MAX_REGEX = 200
REGEX_TIMEOUT_SECONDS = 0.01   # per message and rule (200 rules at most); sane patterns need microseconds
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)\s*[+*{?]")
_BACKREFERENCE = re.compile(r"\\[1-9]|\(\?P=")


class InvalidRule(ValueError):
    """A rule that cannot be stored; the message names the field."""


def validate_regex(pattern: str) -> regex.Pattern:
    """The compiled pattern (`regex` module, whose `search` takes a timeout; V0 = `re` syntax)."""
    if len(pattern) > MAX_REGEX:
        raise InvalidRule(f"conditions.subject_regex: at most {MAX_REGEX} characters")
    if _BACKREFERENCE.search(pattern) or _NESTED_QUANTIFIER.search(pattern):
        raise InvalidRule("conditions.subject_regex: backreferences and nested quantifiers are not allowed")
    try:
        return regex.compile(pattern, regex.IGNORECASE | regex.FULLCASE | regex.VERSION0)
    except regex.error as exc:
        raise InvalidRule(f"conditions.subject_regex: {exc}") from None


def _targets(values: list[str], field: str) -> list[str]:
    result = []
    for value in values:
        target = normalize_address(value) if "@" in value else normalize_domain(value)
        if target is None:
            raise InvalidRule(f"conditions.{field}: {value!r} is neither an address nor a domain")
        result.append(target)
    return result


def validate(conditions: dict[str, Any], actions: list[dict[str, Any]]) -> tuple[dict, list]:
    """Normalised copies of `conditions` and `actions`, or `InvalidRule`."""
    cleaned = {k: v for k, v in (conditions or {}).items() if v is not None}
    unknown = set(cleaned) - set(CONDITION_KEYS)
    if unknown:
        raise InvalidRule(f"conditions: unknown {', '.join(sorted(unknown))}")
    for field in ("from", "to"):
        if field in cleaned:
            cleaned[field] = _targets(list(cleaned[field]), field)
    if "subject_regex" in cleaned:
        validate_regex(cleaned["subject_regex"])
    if not actions:
        raise InvalidRule("actions: at least one action")
    for index, action in enumerate(actions):
        kind = action.get("type")
        if kind not in ACTION_TYPES:
            raise InvalidRule(f"actions.{index}.type: one of {', '.join(ACTION_TYPES)}")
        if kind == "pair":
            record = action.get("record") or {}
            if record.get("type") not in RECORD_TYPES or not record.get("id"):
                raise InvalidRule(f"actions.{index}.record: needs a type and an id")
        if kind == "bind":
            types = action.get("types") or ["company", "contact", "lead"]
            if set(types) - set(RECORD_TYPES):
                raise InvalidRule(f"actions.{index}.types: record types only")
    return cleaned, list(actions)


def _address_matches(address: str | None, targets: list[str]) -> bool:
    """`address` is one of `targets` or lies in one of their domains (or a subdomain), compared as the
    directory index compares them (`models.directory.key_address`: case-insensitive, international domains
    in either form)."""
    if not address:
        return False
    address = key_address(address)
    domain = domain_of(address)
    for target in targets:
        if "@" in target:
            if address == key_address(target):
                return True
        elif domain == key_domain(target) or domain.endswith("." + key_domain(target)):
            return True
    return False


def conditions_hold(conditions: dict[str, Any], facts: MessageFacts) -> bool:
    c = conditions or {}
    if "folder" in c and c["folder"] != facts.folder:
        return False
    if "direction" in c and c["direction"] != facts.direction:
        return False
    if "from" in c and not _address_matches(facts.sender, c["from"]):
        return False
    if "to" in c and not any(_address_matches(a, c["to"]) for a in facts.recipients):
        return False
    if c.get("subject_contains") and c["subject_contains"].casefold() not in facts.subject.casefold():
        return False
    if c.get("subject_regex") and not subject_matches(c["subject_regex"], facts.subject):
        return False
    if "has_attachment" in c and bool(c["has_attachment"]) != facts.has_attachments:
        return False
    if "auto_reply" in c and bool(c["auto_reply"]) != facts.is_auto:
        return False
    return True


def subject_matches(pattern: str, subject: str) -> bool:
    """`pattern` found in `subject`; False when it is invalid or runs out of its time budget (logged)."""
    try:
        return validate_regex(pattern).search(subject, timeout=REGEX_TIMEOUT_SECONDS) is not None
    except InvalidRule:
        return False
    except TimeoutError:
        logger.warning("subject_regex ran out of time; treated as no match", extra={"pattern": pattern})
        return False
