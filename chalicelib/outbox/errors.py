"""Domain outcomes of the outbox; the API layer maps each to one problem+json response."""
from __future__ import annotations


class OutboxProblem(Exception):
    """Base class; `str()` is safe to show to the caller."""


class InvalidField(OutboxProblem):
    """→ 422 naming `field`."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


class TooLarge(InvalidField):
    """→ 413 naming `field` (attachments over the documented limit)."""


class KeyReused(OutboxProblem):
    """The Idempotency-Key was used before with a different request (→ 422 idempotency-key-reused)."""


class NotCancellable(OutboxProblem):
    """Only queued or scheduled items can be cancelled (→ 409)."""
