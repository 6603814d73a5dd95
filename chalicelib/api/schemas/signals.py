"""Request/response models for suggested pairings (signals)."""

from typing import Literal

from pydantic import Field

from chalicelib.api.schemas.common import ApiModel, ListQuery


class SignalQuery(ListQuery):
    status: Literal["open", "accepted", "dismissed", "undone"] = "open"
    mailbox_id: str | None = Field(None, max_length=200)


class SignalOut(ApiModel):
    id: str
    message_id: str
    mailbox_id: str
    record: dict
    reason: str
    matcher: str
    confidence: float
    status: str
    created_at: str
    resolved_at: str | None
    resolved_by: str | None


class SignalList(ApiModel):
    items: list[SignalOut]
    next_cursor: str | None
