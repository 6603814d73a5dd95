"""Tolerant decoding of header values and body charsets (the header half of `sync.mime`).

- RFC 2047 encoded words (`=?charset?B|Q?...?=`) are decoded wherever they appear (also glued to text, as
  broken mailers send them); adjacent words of one charset are joined before decoding (RFC 2047 §6.2), so a
  multi-byte character split across two words survives; a word that does not decode is kept verbatim.
- Raw 8-bit header bytes (RFC 6532 allows UTF-8; older mailers send Latin-1) decode as UTF-8, else CP1252.
- Charsets: the declared one; if unknown (LookupError) or the bytes do not fit, UTF-8, else Latin-1 —
  decoding never fails. Lone surrogates never leave this module (DynamoDB and JSON reject them).

Problems are appended to the caller's `errors` list ("charset: unknown x-foo", "header: ...", "date: ...").
"""
from __future__ import annotations

import base64
import binascii
import codecs
import re
from datetime import timezone
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from chalicelib.timeutil import isoformat

MAX_ADDRESSES = 200          # per address header; keeps DynamoDB items far below 400 KB

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_MSG_ID = re.compile(r"<([^<>\s]+)>")
_FOLD = re.compile(r"\r?\n(?=[ \t])")


def _charset_ok(name: str) -> bool:
    try:
        codecs.lookup(name)
        return True
    except (LookupError, ValueError, TypeError):
        return False


def decode_bytes(data: bytes, charset: str | None, errors: list[str] | None = None) -> str:
    """Decode with the declared charset; when it is unknown or the bytes do not fit: UTF-8 (with
    replacement characters when only a few sequences are broken), else Latin-1. Never fails."""
    return valid_unicode(_decode_bytes(data, charset, errors))


def valid_unicode(text: str) -> str:
    """Lone surrogates (from codecs like UTF-7) cannot be stored or serialized: replace them."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _decode_bytes(data: bytes, charset: str | None, errors: list[str] | None) -> str:
    name = (charset or "").strip().strip('"').lower() or "us-ascii"
    if name in {"unknown-8bit", "x-unknown", "8bit", "default"}:
        name = "utf-8"
    if _charset_ok(name):
        try:
            return data.decode(name)
        except (UnicodeDecodeError, LookupError):
            pass
    elif errors is not None:
        errors.append(f"charset: unknown {name[:40]}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    replaced = data.decode("utf-8", "replace")
    if replaced.count("\ufffd") * 4 <= sum(1 for byte in data if byte > 127):
        return replaced                                 # mostly valid UTF-8 with a few broken sequences
    return data.decode("latin-1")


def _word_bytes(encoding: str, text: str) -> bytes:
    if encoding in "bB":
        text = re.sub(r"[\s=]", "", text)
        if re.search(r"[^A-Za-z0-9+/]", text):
            raise ValueError("not base64")
        if len(text) % 4 == 1:                          # a dangling sextet carries no whole byte
            text = text[:-1]
        return base64.b64decode(text + "=" * (-len(text) % 4))
    return binascii.a2b_qp(text.replace("_", " ").encode("ascii", "replace"), header=True)


def decode_words(value: str, errors: list[str] | None = None) -> str:
    """RFC 2047 decoding, tolerant of glued, split and broken encoded words."""
    if "=?" not in value:
        return value
    out: list[str] = []
    pending: tuple[str, bytearray] | None = None
    pos = 0

    def flush() -> None:
        nonlocal pending
        if pending is not None:
            out.append(decode_bytes(bytes(pending[1]), pending[0], errors))
            pending = None

    for match in _ENCODED_WORD.finditer(value):
        between = value[pos:match.start()]
        charset = match.group(1).split("*", 1)[0].lower()   # RFC 2231 §5 language suffix
        try:
            chunk = _word_bytes(match.group(2), match.group(3))
        except (binascii.Error, ValueError):
            flush()
            out.append(between + match.group(0))
            if errors is not None:
                errors.append("header: broken encoded word")
            pos = match.end()
            continue
        if between and not between.isspace():
            flush()
            out.append(between)
        elif between and pending is None:
            out.append(between)
        if pending is not None and pending[0] != charset:
            flush()
        if pending is None:
            pending = (charset, bytearray())
        pending[1].extend(chunk)
        pos = match.end()
    flush()
    out.append(value[pos:])
    return "".join(out)


def header_text(value: Any, name: str, errors: list[str]) -> str:
    """A raw compat32 header value (str with surrogate-escaped 8-bit bytes) as clean unfolded text."""
    text = str(value)
    if any("\udc80" <= c <= "\udcff" for c in text):   # raw 8-bit bytes, surrogate-escaped by the parser
        raw = text.encode("ascii", "surrogateescape")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("cp1252", "replace")
        errors.append(f"header: 8-bit bytes in {name}")
    return valid_unicode(_FOLD.sub("", text).replace("\r", "").replace("\n", " ").replace("\x00", ""))


def addresses(raw: str, name: str, errors: list[str]) -> list[dict[str, str]]:
    try:
        pairs = getaddresses([raw])
    except Exception:  # noqa: BLE001 — getaddresses has raised on pathological input in older Pythons
        errors.append(f"header: {name} unparsable")
        return []
    result = []
    for display, email in pairs:
        email = email.strip().strip("<>").strip()
        if "@" not in email or any(c.isspace() for c in email):
            continue
        result.append({"name": decode_words(display, errors).strip().strip('"')[:200], "email": email.lower()[:320]})
    if len(result) > MAX_ADDRESSES:
        errors.append(f"header: {name} truncated to {MAX_ADDRESSES} addresses")
        result = result[:MAX_ADDRESSES]
    return result


def normalize_msg_id(value: str | None) -> str | None:
    """`<id@host>` → `id@host`; a bare id without brackets is accepted; None when absent or empty."""
    if not value:
        return None
    match = _MSG_ID.search(value)
    if match:
        return match.group(1)[:500]
    bare = value.strip().strip("<>").strip()
    return bare[:500] if bare and not any(c.isspace() for c in bare) else None


def parse_date(raw: str | None, errors: list[str]) -> str | None:
    if not raw:
        errors.append("date: missing")
        return None
    try:
        moment = parsedate_to_datetime(raw.strip())
        if moment.tzinfo is None:                       # "-0000": UTC with no zone information (RFC 5322)
            moment = moment.replace(tzinfo=timezone.utc)
        moment = moment.astimezone(timezone.utc)
        if not 1970 <= moment.year <= 2200:
            raise ValueError("out of range")
        return isoformat(moment)
    except Exception:  # noqa: BLE001 — TypeError/ValueError/OverflowError/IndexError on garbage
        errors.append("date: unparsable")
        return None
