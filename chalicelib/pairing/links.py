"""The hooks the messages API calls (`chalicelib.messages.views`): a message's active links, or a whole page's.

A page's links come from the `by_mailbox` index of MessageLink (hash `mailbox_id`, range `date_key`, the
message's own `date_key`): the links of every message of the page in one mailbox lie between the page's
lowest and highest `date_key`, so one Query per mailbox of the page reads them all, instead of one Query per
message. Links of other messages inside that range (hidden ones, another folder) are read and dropped; a
range holding far more than the page needs (a sparse page, e.g. a record's e-mails spread over a year) stops
after `MAX_RANGE_READS` items and the messages still incomplete are read one by one. A message is complete
when it has as many active links as its `link_count` (kept equal to them by `pairing.store`); a message
with `link_count == 0` costs no read.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from chalicelib.models.message import Message
from chalicelib.models.pairing import MessageLink

MAX_RANGE_READS = 2_000   # items one page's range Query may read before falling back to per-message Queries


def _shape(link: MessageLink) -> dict:
    return {"type": link.entity_type, "id": link.entity_id, "source": link.source, "reason": link.reason}


def links_for_message(message: str | Message) -> list[dict]:
    """[{type, id, source, reason}] of the message's active links (a `Message` with `link_count == 0` costs
    no read)."""
    if isinstance(message, Message):
        if not int(message.link_count or 0):
            return []
        message = message.message_id
    return [_shape(link) for link in MessageLink.query(message) if link.status == "active"]


def links_for_messages(messages: Iterable[Message]) -> dict[str, list[dict]]:
    """message_id -> [{type, id, source, reason}] for a page of messages: one Query per mailbox of the page
    (a mailbox's listing: one Query in all), ordered as `links_for_message` orders them (by link key)."""
    found: dict[str, list[MessageLink]] = {}
    wanted: dict[str, list[Message]] = defaultdict(list)
    for message in messages:
        found[message.message_id] = []
        if int(message.link_count or 0) > 0:
            wanted[message.mailbox_id].append(message)
    incomplete: list[Message] = []
    for mailbox_id, page in wanted.items():
        keys = sorted(m.date_key for m in page)
        ids = {m.message_id for m in page}
        result = MessageLink.by_mailbox.query(mailbox_id, MessageLink.date_key.between(keys[0], keys[-1]),
                                              filter_condition=MessageLink.status == "active",
                                              page_size=min(MAX_RANGE_READS, 4 * len(page) + 100))
        pages = result.page_iter
        for raw_page in pages:
            for raw in raw_page.get("Items") or []:
                link = MessageLink.from_raw_data(raw)
                if link.message_id in ids:
                    found[link.message_id].append(link)
            if pages.total_scanned_count >= MAX_RANGE_READS:
                break
        incomplete += [m for m in page if len(found[m.message_id]) != int(m.link_count or 0)]
    for message in incomplete:   # links without the index keys, a drifted count, or a sparse range
        found[message.message_id] = [link for link in MessageLink.query(message.message_id) if link.status == "active"]
    return {message_id: [_shape(link) for link in sorted(links, key=lambda link: link.link_key)]
            for message_id, links in found.items()}
