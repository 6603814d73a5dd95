"""Tolerant MIME parsing: raw RFC 5322 bytes → `ParsedMessage`. Never raises, on any input.

Speed: the tree is parsed with `compat32` (`email.policy.default` is ~8× slower) and only the headers the
service needs are decoded, with the tolerant decoders of `sync.mime_decode`.

`parse_errors` entries start with what failed: "date: unparsable", "charset: unknown x-foo",
"boundary: missing", "message-id: missing", "header: ...", "mime: <DefectName>", "mime: parse budget ...".

Hostile mail: the parser reads only the part of the raw message the parse budget allows (`sync.mime_budget`:
lines, nesting depth, parts); every header field and every part is decoded on its own, so one that fails
(an `undefined` / `punycode` charset, a broken encoded word) costs only itself and is named in
`parse_errors`; the result is cut to the storage budget (`sync.limits`) so its item always fits DynamoDB.
A decoded text or HTML body is kept up to `MAX_BODY_BYTES`.

Attachment bodies stay in the raw object. Each listed attachment records where its encoded body lies in the
raw bytes (`"raw": {"start", "end", "encoding"}`), so a download reads and decodes just that byte range
(`decode_span`); `attachment_content(raw, index)` extracts one by walking the same part order as
`parse_message` (the fallback for attachments without a span, e.g. message/rfc822), so an `index` is stable.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message as MimePart
from email.policy import compat32
from typing import Any, Callable, Iterator, TypeVar

from chalicelib.sync.limits import fit_to_budget
from chalicelib.sync.mime_budget import parse_window
from chalicelib.sync.mime_decode import (addresses, clean_text, decode_bytes, decode_words, header_text,
                                         msg_ids, normalize_msg_id, parse_date)
from chalicelib.sync.snippet import html_to_text, make_snippet

T = TypeVar("T")

AUTOMATION_HEADERS = ("Auto-Submitted", "Precedence", "X-Autoreply", "X-Autorespond", "List-Id",
                      "List-Unsubscribe", "Return-Path")
MAX_REFERENCES = 50          # RFC 5322 §3.6.4: keep the first (thread root) and the latest ones
MAX_SUBJECT_CHARS = 1000
MAX_HEADER_CHARS = 2000
MAX_PART_DEPTH = 50
MAX_ATTACHMENTS = 200        # listed in the metadata; later ones are still in the raw object
MAX_RAW_HEADER_CHARS = 128 * 1024  # one header value, before decoding
MAX_HEADER_REPEATS = 64            # occurrences of one header read (To: may repeat; 100,000 To lines do not)
MAX_BODY_BYTES = 2 * 1024 * 1024   # decoded text / HTML body kept for display and the snippet
SPAN_ENCODINGS = {"base64", "quoted-printable", "7bit", "8bit", "binary", ""}


@dataclass(frozen=True)
class ParsedMessage:
    from_addr: dict[str, str] | None = None          # {"name", "email"}
    to: list[dict[str, str]] = field(default_factory=list)
    cc: list[dict[str, str]] = field(default_factory=list)
    bcc: list[dict[str, str]] = field(default_factory=list)
    reply_to: list[dict[str, str]] = field(default_factory=list)
    sender: dict[str, str] | None = None             # Sender (RFC 5322 §3.6.2: the agent that sent it for From)
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
        payload = part._payload  # noqa: SLF001 — get_payload() decodes 8-bit text with the declared charset
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
    return clean_text(str(value).split(";", 1)[0].strip().lower())[:64] or None if value else None


def _filename(part: MimePart, errors: list[str]) -> str | None:
    try:    # not get_filename(): it decodes RFC 2231 values itself and raises on hostile charsets
        name = part.get_param("filename", None, "content-disposition") or part.get_param("name")
    except Exception:  # noqa: BLE001
        name = None
    if isinstance(name, tuple):                         # undecoded RFC 2231 triple
        name = decode_bytes((name[2] or "").encode("latin-1", "replace"), name[0], errors)
    if not name:
        return None
    return clean_text(decode_words(header_text(name, "filename", errors), errors)).strip()[:255] or None


def _content_type(part: MimePart) -> str:
    """RFC 6838 §4.2: type and subtype names are at most 127 characters each."""
    try:
        value = clean_text(part.get_content_type().lower()).replace(" ", "")
        return value if len(value) <= 255 else "application/octet-stream"
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
        payload = part._payload  # noqa: SLF001 — get_payload() may raise on an 8-bit body's charset
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
    if len(data) > MAX_BODY_BYTES:
        errors.append(f"mime: body over {MAX_BODY_BYTES} bytes, truncated")
        data = data[:MAX_BODY_BYTES]
    try:
        charset = part.get_content_charset()
    except Exception:  # noqa: BLE001
        charset = None
    return decode_bytes(data, charset, errors).replace("\x00", "")


def _encoding(part: MimePart) -> str:
    return str(part.get("Content-Transfer-Encoding", "") or "").strip().lower()


def decode_span(data: bytes, encoding: str) -> bytes:
    """An attachment body as stored in the raw message (bytes of its span) → its decoded bytes, exactly as
    `email` decodes it (same code path: a one-part message with that Content-Transfer-Encoding)."""
    part = MimePart()
    if encoding:
        part["Content-Transfer-Encoding"] = encoding
    part.set_payload(data.decode("ascii", "surrogateescape"))
    return _payload_bytes(part)


class _Spans:
    """Where each leaf's encoded body lies in the raw bytes (compat32 keeps a leaf's payload verbatim, so
    the next occurrence after the previous leaf is it). Stops at the first miss (never rescans)."""

    def __init__(self, raw: bytes, end: int) -> None:
        self.raw, self.end, self.cursor, self.lost = raw, end, 0, False

    def locate(self, part: MimePart) -> tuple[int, int] | None:
        payload = part._payload  # noqa: SLF001 — the verbatim body; get_payload() may decode it
        if self.lost or not isinstance(payload, str):
            return None
        try:
            body = payload.encode("ascii", "surrogateescape")
        except UnicodeEncodeError:
            self.lost = True
            return None
        start = self.raw.find(body, self.cursor, self.end)
        if start < 0:
            self.lost = True
            return None
        self.cursor = start + len(body)
        return start, self.cursor


def _walk(msg: MimePart, errors: list[str], cut: bool) -> Iterator[tuple[MimePart, str, str | None, bool]]:
    """Leaves in document order with (content type, filename, is attachment). When the parse window was cut,
    the last leaf is incomplete: it is still yielded as a body but never as an attachment."""
    leaves = _leaf_parts(msg, errors)
    current = next(leaves, None)
    while current is not None:
        following = next(leaves, None)
        try:
            content_type = _content_type(current)
            filename = _filename(current, errors)
            is_attachment = _is_attachment(current, content_type, filename)
        except Exception as exc:  # noqa: BLE001 — one hostile part costs only itself
            errors.append(f"mime: part unreadable ({type(exc).__name__})")
            current = following
            continue
        if not (cut and following is None and is_attachment):
            yield current, content_type, filename, is_attachment
        current = following


def _head(value: Any, name: str, errors: list[str]) -> Any:
    """A raw header value cut to `MAX_RAW_HEADER_CHARS` before decoding (References keep both ends)."""
    text = str(value)
    if len(text) <= MAX_RAW_HEADER_CHARS:
        return value
    errors.append(f"header: {name} over {MAX_RAW_HEADER_CHARS} characters, cut")
    if name == "references":
        return text[:MAX_RAW_HEADER_CHARS // 4] + " " + text[-(MAX_RAW_HEADER_CHARS * 3 // 4):]
    return text[:MAX_RAW_HEADER_CHARS]


def _guard(errors: list[str], label: str, default: T, compute: Callable[[], T]) -> T:
    """One field's value, or `default` with "<label>: unreadable" when decoding it fails."""
    try:
        return compute()
    except Exception as exc:  # noqa: BLE001 — a hostile header costs only its own field
        errors.append(f"{label}: unreadable ({type(exc).__name__})")
        return default


def _window(raw: bytes, errors: list[str]) -> tuple[MimePart, int]:
    window = parse_window(raw)
    if window.reason:
        errors.append(window.reason)
    return message_from_bytes(raw[:window.end], policy=compat32), window.end


# ---------------------------------------------------------------- entry points

def _attachment(part: MimePart, content_type: str, filename: str | None, index: int,
                spans: _Spans) -> dict[str, Any]:
    raw_cid = part.get("Content-ID")
    content_id = normalize_msg_id(str(raw_cid)) if raw_cid else None
    item: dict[str, Any] = {"index": index, "filename": filename, "content_type": content_type,
                            "size": len(_payload_bytes(part)), "content_id": content_id,
                            "disposition": _disposition(part)}
    span = spans.locate(part)
    encoding = _encoding(part)
    if span is not None and encoding in SPAN_ENCODINGS:
        item["raw"] = {"start": span[0], "end": span[1], "encoding": encoding}
    return item


def _parse(raw: bytes) -> ParsedMessage:
    errors: list[str] = []
    msg, end = _window(raw, errors)
    wanted = {"from", "sender", "to", "cc", "bcc", "reply-to", "subject", "date", "message-id", "in-reply-to",
              "references", *(h.lower() for h in AUTOMATION_HEADERS)}
    headers = {name: [_guard(errors, f"header: {name}", "", lambda v=v, n=name: header_text(_head(v, n, errors), n,
                                                                                          errors))
                      for v in values[:MAX_HEADER_REPEATS]]
               for name, values in _raw_headers(msg, wanted).items()}

    def first(name: str) -> str | None:
        return headers.get(name, [None])[0]

    def subject_text() -> str | None:
        value = first("subject")
        return None if value is None else " ".join(clean_text(decode_words(value, errors)).split())

    from_list = _guard(errors, "header: From", [], lambda: addresses(first("from") or "", "From", errors))
    subject = _guard(errors, "header: Subject", None, subject_text)
    if subject is not None and len(subject) > MAX_SUBJECT_CHARS:
        errors.append("header: Subject truncated")
        subject = subject[:MAX_SUBJECT_CHARS]
    if len(headers.get("message-id", [])) > 1:
        errors.append("header: duplicate Message-ID")
    rfc_id = _guard(errors, "header: Message-ID", None, lambda: normalize_msg_id(first("message-id")))
    if rfc_id is None:
        errors.append("message-id: missing")
    references = _guard(errors, "header: References", [], lambda: msg_ids(" ".join(headers.get("references", []))))
    if len(references) > MAX_REFERENCES:
        references = references[:1] + references[-(MAX_REFERENCES - 1):]
    extra = {name.lower(): _guard(errors, f"header: {name}", "",
                                  lambda n=name: clean_text(decode_words(first(n.lower()) or "", errors)))
             [:MAX_HEADER_CHARS]
             for name in AUTOMATION_HEADERS if first(name.lower()) is not None}

    text = html = None
    attachments: list[dict[str, Any]] = []
    spans = _Spans(raw, end)
    try:
        for part, content_type, filename, is_attachment in _walk(msg, errors, end < len(raw)):
            try:
                if is_attachment and len(attachments) >= MAX_ATTACHMENTS:
                    errors.append(f"mime: more than {MAX_ATTACHMENTS} attachments, the rest are not listed")
                elif is_attachment:
                    attachments.append(_attachment(part, content_type, filename, len(attachments), spans))
                elif content_type == "text/html" and html is None:
                    html = _part_text(part, errors)
                elif content_type != "text/html" and text is None:
                    text = _part_text(part, errors)   # text/plain, or a multipart whose boundary is missing
            except Exception as exc:  # noqa: BLE001 — one hostile part costs only itself
                errors.append(f"mime: part unreadable ({type(exc).__name__})")
    except RecursionError:
        errors.append("mime: nesting too deep")
    snippet = _guard(errors, "snippet", "", lambda: make_snippet(text) if text and text.strip()
                     else make_snippet(html_to_text(html or "")))
    return fit_to_budget(ParsedMessage(
        from_addr=from_list[0] if from_list else None,
        to=_guard(errors, "header: To", [], lambda: addresses(", ".join(headers.get("to", [])), "To", errors)),
        cc=_guard(errors, "header: Cc", [], lambda: addresses(", ".join(headers.get("cc", [])), "Cc", errors)),
        bcc=_guard(errors, "header: Bcc", [], lambda: addresses(", ".join(headers.get("bcc", [])), "Bcc", errors)),
        reply_to=_guard(errors, "header: Reply-To", [],
                        lambda: addresses(first("reply-to") or "", "Reply-To", errors)),
        sender=_guard(errors, "header: Sender", None,
                      lambda: next(iter(addresses(first("sender") or "", "Sender", errors)), None)),
        subject=subject, date=_guard(errors, "date", None, lambda: parse_date(first("date"), errors)),
        rfc_message_id=rfc_id,
        in_reply_to=_guard(errors, "header: In-Reply-To", None, lambda: normalize_msg_id(first("in-reply-to"))),
        references=references, headers=extra, attachments=attachments, has_attachments=bool(attachments),
        text=text, html=html, snippet=snippet, parse_errors=list(dict.fromkeys(errors))))


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
        raw = bytes(raw)
        msg, end = _window(raw, [])
        position = 0
        for part, content_type, filename, is_attachment in _walk(msg, [], end < len(raw)):
            if not is_attachment:
                continue
            if position == index:
                return AttachmentContent(filename, content_type, _payload_bytes(part))
            position += 1
    except Exception:  # noqa: BLE001
        return None
    return None
