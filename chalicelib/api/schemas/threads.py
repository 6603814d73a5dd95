"""Request/response models for conversations and search (docs/api.md, "Conversations", "Search")."""

from typing import Literal

from pydantic import Field, model_validator

from chalicelib.api.schemas.common import ApiModel, ListQuery
from chalicelib.api.schemas.messages import Address, MessageSummary


class ThreadListQuery(ListQuery):
    mailbox_id: str | None = Field(None, max_length=100, description="a mailbox's conversations (its copies)")
    record_type: str | None = Field(None, max_length=40)
    record_id: str | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def _one_scope(self):
        if bool(self.mailbox_id) == bool(self.record_type or self.record_id):
            raise ValueError("give either mailbox_id or record_type and record_id")
        if not self.mailbox_id and not (self.record_type and self.record_id):
            raise ValueError("record_type and record_id go together")
        return self


class LatestMessage(ApiModel):
    model_config = {"populate_by_name": True}
    id: str
    date: str
    from_: Address | None = Field(None, alias="from")
    subject: str | None = None
    snippet: str | None = Field(None, description="null when the mailbox does not show snippets")


class ThreadSummary(ApiModel):
    id: str
    mailbox_id: str | None = Field(description="the mailbox whose copies this entry counts (null: a record's view)")
    subject: str | None
    participants: list[Address]
    message_count: int
    unread: bool | None = Field(description="unread at the source; null: the provider does not tell")
    last_activity: str | None
    latest: LatestMessage | None


class ThreadList(ApiModel):
    items: list[ThreadSummary]
    next_cursor: str | None


class ThreadDetail(ApiModel):
    id: str
    items: list[MessageSummary] = Field(description="its messages the caller may read, oldest first")
    next_cursor: str | None


class SearchQuery(ListQuery):
    q: str = Field(min_length=1, max_length=500, description="words, addresses or @domains; all must match")
    mailbox_id: str | None = Field(None, max_length=100)
    folder: str | None = Field(None, max_length=255, description="`inbox`, `sent` or a named folder synced")
    after: str | None = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}(T[0-9:.]+Z?)?$", description="inclusive (UTC)")
    before: str | None = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}(T[0-9:.]+Z?)?$", description="exclusive (UTC)")
    has_attachments: bool | None = None
    paired: bool | None = None
    direction: Literal["inbound", "outbound"] | None = None


class ThreadPrivacyOut(ApiModel):
    id: str
    private: bool
    changed: int = Field(description="messages whose mark changed")
    left_alone: int = Field(description="messages of it the caller may read but not mark (read access only)")
