"""Request/response models for stored messages (docs/api.md, messages)."""

from typing import Any, Literal

from pydantic import ConfigDict, Field

from chalicelib.api.schemas.common import ApiModel, ListQuery


class MessageListQuery(ListQuery):
    folder: str | None = Field(None, max_length=255, description="`inbox`, `sent` or a named folder synced "
                                                                 "(`sync_folders`)")
    paired: bool | None = Field(None, description="true: only paired messages; false: only unpaired ones.")


class Address(ApiModel):
    name: str | None = None
    email: str


class Link(ApiModel):
    model_config = ConfigDict(extra="allow")
    type: str
    id: str
    source: str | None = None
    reason: str | None = None


class MessageSummary(ApiModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    mailbox_id: str
    folder: str
    direction: Literal["inbound", "outbound"]
    subject: str | None
    from_: Address | None = Field(alias="from")
    to: list[Address]
    cc: list[Address]
    date: str
    snippet: str | None = Field(description="null when the mailbox does not show snippets")
    has_attachments: bool
    links: list[Link]
    removed_at_source: str | None = Field(description="when the provider no longer had it; kept in the CRM")
    skipped_reason: str | None = Field(description="set when the message was recorded without its content")
    unread: bool | None = Field(None, description="unread at the source as of the last sync (IMAP \\Seen, Gmail "
                                "UNREAD label, Graph isRead); null: the provider did not tell")


class MessageList(ApiModel):
    items: list[MessageSummary]
    next_cursor: str | None


class AttachmentOut(ApiModel):
    index: int
    filename: str | None
    content_type: str
    size: int
    content_id: str | None
    disposition: str | None = None
    download_url: str


class MessageDetail(MessageSummary):
    bcc: list[Address]
    reply_to: list[Address]
    rfc_message_id: str | None
    in_reply_to: str | None
    references: list[str]
    thread_id: str | None
    size: int
    headers: dict[str, Any] = Field(description="automation headers (auto-submitted, precedence, list-id, ...)")
    text: str | None
    html: str | None = Field(description="sanitized HTML; cid: images point at attachment downloads")
    attachments: list[AttachmentOut]
    parse_errors: list[str]
    body_new: str | None = Field(None, description="what the sender wrote: the text (or the HTML's text) without "
                                 "the quoted replies and the signature, from its first 16,000 characters")
