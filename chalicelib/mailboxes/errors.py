"""Domain outcomes of the mailbox service; the API layer maps each to one problem+json response."""
from __future__ import annotations

from chalicelib.tenancy.limits import Contended  # noqa: F401 - re-exported: a lost create race (→ 409)


class MailboxError(Exception):
    """Base class; `str()` is safe to show to the caller (never contains a secret)."""


class InvalidField(MailboxError):
    """A request field is unacceptable (→ 422 naming `field`)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotPermitted(MailboxError):
    """The caller may see the thing but not do this (→ 403)."""


class LimitReached(MailboxError):
    """The tenant's plan allows no more of this (→ 403 plan-limit)."""


class Missing(MailboxError):
    """A referenced item does not exist for this tenant/caller (→ 404)."""


class VerificationFailed(MailboxError):
    """The mail server did not accept the settings; `outcome` says why (→ 422 / 502)."""

    def __init__(self, outcome):
        super().__init__(outcome.detail)
        self.outcome = outcome
