"""Plans: which features a tenant has and its default mail import window.

A tenant's `settings.import_window_days` may allow more than its plan's default.
"""
from __future__ import annotations

from dataclasses import dataclass

MAILBOX_CONNECTION = "mailbox_connection"


@dataclass(frozen=True)
class Plan:
    """A plan: the features it grants, its default import window and how many mailboxes it allows."""
    name: str
    features: frozenset[str]
    import_window_days: int
    max_mailboxes: int


PLANS: dict[str, Plan] = {
    "free": Plan("free", frozenset(), import_window_days=7, max_mailboxes=0),
    "standard": Plan("standard", frozenset({MAILBOX_CONNECTION}), import_window_days=7, max_mailboxes=100),
    "enterprise": Plan("enterprise", frozenset({MAILBOX_CONNECTION}), import_window_days=90, max_mailboxes=10_000),
}


def get_plan(name: str) -> Plan:
    try:
        return PLANS[name]
    except KeyError:
        raise ValueError(f"unknown plan {name!r}; known: {', '.join(sorted(PLANS))}") from None


def import_window_days(plan_name: str, tenant_settings: dict | None) -> int:
    override = (tenant_settings or {}).get("import_window_days")
    default = get_plan(plan_name).import_window_days
    return max(default, int(override)) if override else default
