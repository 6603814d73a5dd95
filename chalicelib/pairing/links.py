"""The hook the messages API calls (`chalicelib.messages.views.message_links`): a message's active links."""
from __future__ import annotations

from chalicelib.models.message import Message
from chalicelib.models.pairing import MessageLink


def links_for_message(message: str | Message) -> list[dict]:
    """[{type, id, source, reason}] of the message's active links (a `Message` with `link_count == 0` costs
    no read)."""
    if isinstance(message, Message):
        if not int(message.link_count or 0):
            return []
        message = message.message_id
    return [{"type": l.entity_type, "id": l.entity_id, "source": l.source, "reason": l.reason}
            for l in MessageLink.query(message) if l.status == "active"]
