"""Attachment downloads without re-parsing the message.

At ingest, `sync.mime` records for each listed attachment where its encoded body lies in the raw object
(`attachments[i]["raw"] = {"start", "end", "encoding"}`, byte offsets, end exclusive). A download reads just
that range from S3 (`Range: bytes=start-(end-1)`, RFC 9110 §14.1.2) and decodes it; when the decoded size
differs from the one recorded at ingest, or the attachment has no span (message/rfc822 parts, items stored
before spans existed), it falls back to walking the whole message (`mime.attachment_content`). Only
listed attachments are served: an index the item does not list (cut by the storage budget) is not found,
so no request can force a full parse of a message for nothing.
"""
from __future__ import annotations

from typing import Any, Callable

from chalicelib import aws
from chalicelib.config import get_settings
from chalicelib.models.message import Message
from chalicelib.sync import store
from chalicelib.sync.mime import AttachmentContent, attachment_content, decode_span


def _listed(message: Message, index: int) -> dict[str, Any] | None:
    for item in message.attachments or []:
        if isinstance(item, dict) and item.get("index") == index:
            return item
    return None


def _read_range(key: str, start: int, end: int) -> bytes:
    if end <= start:
        return b""
    response = aws.s3().get_object(Bucket=get_settings().raw_bucket, Key=key, Range=f"bytes={start}-{end - 1}")
    return response["Body"].read()


def span_content(listed: dict[str, Any], read_range: Callable[[int, int], bytes]) -> AttachmentContent | None:
    """The listed attachment decoded from its recorded byte span (`read_range(start, end)` gives those raw
    bytes), or None when it has no usable span or the decoded size differs from the one recorded at ingest."""
    span = listed.get("raw")
    if not isinstance(span, dict):
        return None
    try:
        start, end = int(span["start"]), int(span["end"])
        data = decode_span(read_range(start, end), str(span.get("encoding") or ""))
    except (KeyError, TypeError, ValueError):
        return None
    if data is None or len(data) != int(listed.get("size") or 0):    # a stale span: the caller parses
        return None
    return AttachmentContent(listed.get("filename"), listed.get("content_type") or "application/octet-stream", data)


def read_attachment(message: Message, index: int) -> AttachmentContent | None:
    """Attachment `index` of a stored message (as numbered at ingest), or None."""
    if not message.raw_s3_key or index < 0:
        return None
    listed = _listed(message, index)
    if listed is None:
        return None
    content = span_content(listed, lambda start, end: _read_range(message.raw_s3_key, start, end))
    return content or attachment_content(store.load_raw(message), index)
