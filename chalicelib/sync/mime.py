"""Tolerant MIME parsing: raw RFC 5322 bytes → `ParsedMessage`. Never raises, on any input.

Speed: the tree is parsed with `compat32` (`email.policy.default` is ~8× slower) and only the headers the
service needs are decoded, with the tolerant decoders of `sync.mime_decode`.

`parse_errors` entries start with what failed: "date: unparsable", "charset: unknown x-foo",
"boundary: missing", "message-id: missing", "header: ...", "mime: <DefectName>".
Attachment bodies stay in the raw object; `attachment_content(raw, index)` extracts one on demand, walking
the same part order as `parse_message`, so an attachment's `index` is stable.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message as MimePart
from email.policy import compat32
from typing import Any, Iterator

from chalicelib.sync.mime_decode import (addresses, decode_bytes, decode_words, header_text, normalize_msg_id,
                                         parse_date)
from chalicelib.sync.snippet import html_to_text, make_snippet

AUTOMATION_HEADERS = ("Auto-Submitted", "Precedence", "X-Autoreply", "X-Autorespond", "List-Id",
                      "List-Unsubscribe", "Return-Path")
MAX_REFERENCES = 50          # RFC 5322 §3.6.4: keep the first (thread root) and the latest ones
MAX_SUBJECT_CHARS = 1000
MAX_HEADER_CHARS = 2000
MAX_PART_DEPTH = 50
MAX_ATTACHMENTS = 200        # listed in the metadata; later ones are still in the raw object

_MSG_ID = re.compile(r"<([^<>\s]+)>")


@dataclass(frozen=True)
class ParsedMessage:
    from_addr: dict[str, str] | None = None          # {"name", "email"}
    to: list[dict[str, str]] = field(default_factory=list)
    cc: list[dict[str, str]] = field(default_factory=list)
    bcc: list[dict[str, str]] = field(default_factory=list)
    reply_to: list[dict[str, str]] = field(default_factory=list)
    subject: str | None = None
    date: str | None = None                          # ISO 8601 UTC ("...Z") or None when unparsable
    rfc_message_id: str | None = None                # without <>
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # AUTOMATION_HEADERS present, lowercased names
    attachments: list[dict[str, Any]] = field(default_factory=list)
    has_attachments: bool = False
    text: str | None = None
    html: str | None = None
    snippet: str = ""
    parse_errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AttachmentContent:
    filename: str | None
    content_type: str
    data: bytes


def _raw_headers(msg: MimePart, wanted: set[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in getattr(msg, "_headers", []):
        key = str(name).lower()
        if key in wanted:
            found.setdefault(key, []).append(value)
    return found


# ---------------------------------------------------------------- parts

def _leaf_parts(msg: MimePart, errors: list[str]) -> Iterator[MimePart]:
    """Leaf parts in document order; an enclosed message/rfc822 is one leaf (an attachment)."""
    stack: list[tuple[MimePart, int]] = [(msg, 0)]
    while stack:
        part, depth = stack.pop()
        _note_defects(part, errors)
        payload = part.get_payload()
        if part.get_content_maintype() == "multipart" and isinstance(payload, list):
            if depth >= MAX_PART_DEPTH:
                errors.append("mime: nesting too deep")
                continue
            stack.extend((child, depth + 1) for child in reversed(payload) if isinstance(child, MimePart))
        else:
            yield part


_DEFECTS = {"NoBoundaryInMultipartDefect": "boundary: missing",
            "StartBoundaryNotFoundDefect": "boundary: start not found",
            "CloseBoundaryNotFoundDefect": "boundary: closing boundary missing",
            "MultipartInvariantViolationDefect": "boundary: multipart without parts"}


def _note_defects(part: MimePart, errors: list[str]) -> None:
    for defect in getattr(part, "defects", []):
        label = _DEFECTS.get(type(defect).__name__, f"mime: {type(defect).__name__}")
        if label not in errors:
            errors.append(label)


def _disposition(part: MimePart) -> str | None:
    value = part.get("Content-Disposition")
    return str(value).split(";", 1)[0].strip().lower() or None if value else None


def _filename(part: MimePart, errors: list[str]) -> str | None:
    try:
        name = part.get_filename() or part.get_param("name")
    except Exception:  # noqa: BLE001 — RFC 2231 values with unknown charsets
        name = None
    if isinstance(name, tuple):                         # undecoded RFC 2231 triple
        name = decode_bytes((name[2] or "").encode("latin-1", "replace"), name[0], errors)
    if not name:
        return None
    return decode_words(header_text(name, "filename", errors), errors).strip()[:255] or None


def _content_type(part: MimePart) -> str:
    try:
        return part.get_content_type().lower()
    except Exception:  # noqa: BLE001
        return "application/octet-stream"


def _is_attachment(part: MimePart, content_type: str, filename: str | None) -> bool:
    disposition = _disposition(part)
    if disposition == "attachment" or filename or content_type == "message/rfc822":
        return True
    if content_type in {"text/plain", "text/html"}:
        return False
    return not content_type.startswith("multipart/")


def _payload_bytes(part: MimePart) -> bytes:
    try:
        payload = part.get_payload()
        if isinstance(payload, list):                   # message/rfc822 and friends: the enclosed message
            inner = payload[0] if payload else None
            return inner.as_bytes(policy=compat32) if isinstance(inner, MimePart) else b""
        data = part.get_payload(decode=True)
        if isinstance(data, bytes):
            return data
        return payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
    except Exception:  # noqa: BLE001 — one undecodable part must not lose the rest of the message
        return b""


def _part_text(part: MimePart, errors: list[str]) -> str:
    data = _payload_bytes(part)
    try:
        charset = part.get_content_charset()
    except Exception:  # noqa: BLE001
        charset = None
    return decode_bytes(data, charset, errors).replace("\x00", "")


def _walk(msg: MimePart, errors: list[str]) -> Iterator[tuple[MimePart, str, str | None, bool]]:
    for part in _leaf_parts(msg, errors):
        content_type = _content_type(part)
        filename = _filename(part, errors)
        yield part, content_type, filename, _is_attachment(part, content_type, filename)


# ---------------------------------------------------------------- entry points

def _parse(raw: bytes) -> ParsedMessage:
    errors: list[str] = []
    msg = message_from_bytes(raw, policy=compat32)
    wanted = {"from", "to", "cc", "bcc", "reply-to", "subject", "date", "message-id", "in-reply-to",
              "references", *(h.lower() for h in AUTOMATION_HEADERS)}
    headers = {name: [header_text(v, name, errors) for v in values]
               for name, values in _raw_headers(msg, wanted).items()}

    def first(name: str) -> str | None:
        return headers.get(name, [None])[0]

    from_list = addresses(first("from") or "", "From", errors)
    subject = first("subject")
    if subject is not None:
        subject = " ".join(decode_words(subject, errors).split())
        if len(subject) > MAX_SUBJECT_CHARS:
            errors.append("header: Subject truncated")
            subject = subject[:MAX_SUBJECT_CHARS]
    if len(headers.get("message-id", [])) > 1:
        errors.append("header: duplicate Message-ID")
    rfc_id = normalize_msg_id(first("message-id"))
    if rfc_id is None:
        errors.append("message-id: missing")
    references = [m[:500] for m in _MSG_ID.findall(" ".join(headers.get("references", [])))]
    if len(references) > MAX_REFERENCES:
        references = references[:1] + references[-(MAX_REFERENCES - 1):]
    extra = {name.lower(): decode_words(first(name.lower()) or "", errors)[:MAX_HEADER_CHARS]
             for name in AUTOMATION_HEADERS if first(name.lower()) is not None}

    text = html = None
    attachments: list[dict[str, Any]] = []
    for part, content_type, filename, is_attachment in _walk(msg, errors):
        if is_attachment and len(attachments) >= MAX_ATTACHMENTS:
            errors.append(f"mime: more than {MAX_ATTACHMENTS} attachments, the rest are not listed")
        elif is_attachment:
            content_id = normalize_msg_id(str(part.get("Content-ID") or "")) if part.get("Content-ID") else None
            attachments.append({"index": len(attachments), "filename": filename, "content_type": content_type,
                                "size": len(_payload_bytes(part)), "content_id": content_id,
                                "disposition": _disposition(part)})
        elif content_type == "text/html" and html is None:
            html = _part_text(part, errors)
        elif content_type != "text/html" and text is None:
            text = _part_text(part, errors)          # text/plain, or a multipart whose boundary is missing
    snippet = make_snippet(text) if text and text.strip() else make_snippet(html_to_text(html or ""))
    return ParsedMessage(
        from_addr=from_list[0] if from_list else None,
        to=addresses(", ".join(headers.get("to", [])), "To", errors),
        cc=addresses(", ".join(headers.get("cc", [])), "Cc", errors),
        bcc=addresses(", ".join(headers.get("bcc", [])), "Bcc", errors),
        reply_to=addresses(first("reply-to") or "", "Reply-To", errors),
        subject=subject, date=parse_date(first("date"), errors), rfc_message_id=rfc_id,
        in_reply_to=normalize_msg_id(first("in-reply-to")), references=references, headers=extra,
        attachments=attachments, has_attachments=bool(attachments), text=text, html=html, snippet=snippet,
        parse_errors=list(dict.fromkeys(errors)))


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse `raw` best effort. Never raises; what could not be parsed is named in `parse_errors`."""
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raw = str(raw or "").encode("utf-8", "surrogateescape")
    try:
        return _parse(bytes(raw))
    except RecursionError:
        return ParsedMessage(parse_errors=["mime: nesting too deep"])
    except Exception as exc:  # noqa: BLE001 — the contract is "never raise"
        return ParsedMessage(parse_errors=[f"parse: {type(exc).__name__}"])


def attachment_content(raw: bytes, index: int) -> AttachmentContent | None:
    """The decoded bytes of attachment `index` (as numbered by `parse_message`), or None."""
    try:
        msg = message_from_bytes(bytes(raw), policy=compat32)
        position = 0
        for part, content_type, filename, is_attachment in _walk(msg, []):
            if not is_attachment:
                continue
            if position == index:
                return AttachmentContent(filename, content_type, _payload_bytes(part))
            position += 1
    except Exception:  # noqa: BLE001
        return None
    return None
