"""Message queries and CRM-side changes. Never touches the provider mailbox or the raw S3 object."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.lazy import lazy_module
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.models.paging import filtered_page

if TYPE_CHECKING:   # an annotation only
    from chalicelib.sync.mime import AttachmentContent

# An attachment's byte range is read and decoded with the MIME code; listings do not load it (chalicelib.lazy);
# nor the conversation bookkeeping only a delete needs.
attachments = lazy_module("chalicelib.sync.attachments")
assign = lazy_module("chalicelib.threads.assign")


# What a listed message needs (`views.summary`, `views.page_links`) and the keys a page resumes from; the
# rest of the item (headers, attachments, references, ...) is only for the detail view. A ProjectionExpression
# does not lower the read units (DynamoDB Developer Guide, "Query": capacity is measured on the whole items
# read) but halves what is sent, parsed and built for a page.
SUMMARY_ATTRIBUTES = ["message_id", "tenant_id", "mailbox_id", "mailbox_folder", "date_key", "folder",
                      "direction", "subject", "from_addr", "to", "cc", "date", "snippet", "has_attachments",
                      "removed_at_source", "skipped_reason", "unread", "link_count"]


def list_messages(mailbox: Mailbox, *, folder: str | None, paired: bool | None, limit: int,
                  start_key: dict[str, Any] | None) -> tuple[list[Message], dict[str, Any] | None]:
    """Newest first (`date_key` descending on `by_mailbox` / `by_mailbox_folder`), hidden ones excluded.
    Filters run after DynamoDB's page limit, so a page reads at most `paging.MAX_PAGES` pages and may hold
    fewer than `limit` items while the returned key is not None. The messages carry `SUMMARY_ATTRIBUTES`
    only: read for a listing, never saved back."""
    condition = Message.hidden.does_not_exist() | (Message.hidden == False)  # noqa: E712 — a DynamoDB condition
    if paired is True:
        condition &= Message.link_count > 0
    elif paired is False:
        condition &= Message.link_count.does_not_exist() | (Message.link_count == 0)
    if folder:
        result = Message.by_mailbox_folder.query(f"{mailbox.mailbox_id}#{folder}", scan_index_forward=False,
                                                 filter_condition=condition, page_size=limit,
                                                 last_evaluated_key=start_key, attributes_to_get=SUMMARY_ATTRIBUTES)
    else:
        result = Message.by_mailbox.query(mailbox.mailbox_id, scan_index_forward=False,
                                          filter_condition=condition, page_size=limit,
                                          last_evaluated_key=start_key, attributes_to_get=SUMMARY_ATTRIBUTES)
    items, last = filtered_page(result, Message, limit)
    return [m for m in items if m.tenant_id == mailbox.tenant_id], last


def get_attachment(message: Message, index: int) -> AttachmentContent | None:
    """One attachment, read from its byte range of the raw object (`sync.attachments`)."""
    return attachments.read_attachment(message, index)


def hide(message: Message) -> None:
    """Delete in the CRM only: the message disappears from listings, reads and its conversation (uncounted from
    its mailbox's thread entry, which no longer shows it as the latest or lists its addresses — hidden and
    uncounted in one write); provider and S3 keep it."""
    assign.forget(message, hide=True)
