"""The API shapes of a stored message (docs/api.md), built from the `Message` item.

A listing needs the item and its links only; the detail view re-parses the raw message, sanitizes its HTML and
cuts the reply chain, so the MIME parser (`sync.store` → `sync.mime`, `email.policy`), nh3 and the reply parser
load on the first detail view, not with the listings (`chalicelib.lazy`: the API's cold start and first list).
"""
from __future__ import annotations

from typing import Any

from chalicelib.config import get_settings
from chalicelib.lazy import lazy_module
from chalicelib.models.message import Message
from chalicelib.pairing.links import links_for_message, links_for_messages

sanitize = lazy_module("chalicelib.security.sanitize")
store = lazy_module("chalicelib.sync.store")
reply_text = lazy_module("chalicelib.sync.reply_text")
snippet = lazy_module("chalicelib.sync.snippet")


def message_links(message: Message) -> list[dict[str, Any]]:
    """The message's CRM links [{type, id, source, reason}] (given the item, so a message with
    `link_count == 0` costs no read)."""
    return list(links_for_message(message))


def attachment_url(message_id: str, index: int) -> str:
    """Absolute, under the public base URL (`Settings.public_url`): a bare path drops the stage prefix."""
    return get_settings().public_url(f"/v1/messages/{message_id}/attachments/{index}")


def page_links(messages: list[Message]) -> dict[str, list[dict[str, Any]]]:
    """The links of a whole page of messages, read in one batch (`pairing.links.links_for_messages`)."""
    return links_for_messages(messages)


def summary(message: Message, *, show_snippet: bool,
            links: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """`links`: the message's links when the caller read them for its whole page (`page_links`); else read here."""
    return {
        "id": message.message_id, "mailbox_id": message.mailbox_id, "folder": message.folder,
        "direction": message.direction, "subject": message.subject, "from": message.from_addr,
        "to": list(message.to or []), "cc": list(message.cc or []), "date": message.date,
        "snippet": (message.snippet or "") if show_snippet else None,
        "has_attachments": bool(message.has_attachments), "links": message_links(message) if links is None else links,
        "removed_at_source": message.removed_at_source, "skipped_reason": message.skipped_reason,
        "unread": message.unread,
    }


def detail(message: Message, *, show_snippet: bool) -> dict[str, Any]:
    """Summary + headers, text, sanitized HTML (cid: images → attachment URLs), attachments, parse errors, and
    `body_new`: the text without the quoted reply chain and signature (`sync.reply_text`, first 16,000
    characters). Bodies come from re-parsing the raw object (they are not stored in DynamoDB)."""
    parsed = store.load_parsed(message) if message.raw_s3_key else None
    attachments = [{**{k: v for k, v in a.items() if k != "raw"},         # "raw": the byte span (internal)
                    "download_url": attachment_url(message.message_id, a["index"])}
                   for a in (message.attachments or [])]
    cid_map = {a["content_id"]: a["download_url"] for a in attachments if a.get("content_id")}
    html = sanitize.sanitize_html(parsed.html, cid_map=cid_map) if parsed and parsed.html else None
    body_text = (parsed.text if parsed and parsed.text and parsed.text.strip()
                 else snippet.html_to_text(parsed.html) if parsed and parsed.html else "")
    return {
        **summary(message, show_snippet=show_snippet),
        "bcc": list(message.bcc or []), "reply_to": list(message.reply_to or []),
        "rfc_message_id": message.rfc_message_id, "in_reply_to": message.in_reply_to,
        "references": list(message.references or []), "thread_id": message.thread_id,
        "size": int(message.size or 0), "headers": dict(message.headers or {}),
        "text": parsed.text if parsed else None, "html": html, "attachments": attachments,
        "body_new": reply_text.new_text(body_text) or None,
        "parse_errors": list(message.parse_errors or []),
    }
