"""Tolerant decoding of header values and body charsets (the header half of `sync.mime`).

- RFC 2047 encoded words (`=?charset?B|Q?...?=`) are decoded wherever they appear (also glued to text, as
  broken mailers send them); adjacent words of one charset are joined before decoding (RFC 2047 §6.2), so a
  multi-byte character split across two words survives; a word that does not decode is kept verbatim.
- Raw 8-bit header bytes (RFC 6532 allows UTF-8; older mailers send Latin-1) decode as UTF-8, else CP1252.
- Charsets: the declared one; if unknown (LookupError), not a text encoding (`undefined`, `punycode`, `idna`,
  `hex`, ... — they raise instead of decoding mail), malformed (a NUL or other control character) or the
  bytes do not fit, UTF-8, else Latin-1 — decoding never fails. Lone surrogates never leave this module
  (DynamoDB and JSON reject them).
- Decoded header text never keeps control characters: CR, LF, NUL and the other C0/C1 controls (also when
  an encoded word decodes to them) become a space, so a stored header cannot inject lines.
- Message-IDs (RFC 5322 §3.6.4) are kept whole up to `MAX_MSG_ID_CHARS`; a longer one is stored as its
  first characters plus a SHA-256 of the whole id (lowercased, as ids are compared), so two long ids that
  share a prefix never merge.
- Dates (RFC 5322 §3.3): a zone the parser does not know is never read as UTC silently. "-0000" is UTC
  (§3.3: no zone information); "(GMT+02:00)", "GMT+2", "+02:00" give their offset; IANA / POSIX names
  ("EST5EDT", "Europe/Prague") resolve through `zoneinfo`; a missing zone is read as UTC and reported;
  anything else is unparsable. Years follow §4.3: two digits 00-49 → 20xx, 50-99 → 19xx, three digits
  + 1900; a one-digit year (e.g. 0) is unparsable.

Problems are appended to the caller's `errors` list ("charset: unknown x-foo", "header: ...", "date: ...").
"""
from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import re
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_tz
from typing import Any
from zoneinfo import ZoneInfo

from chalicelib.sync.mime_address import MAX_ADDRESSES, parse_addresses
from chalicelib.timeutil import isoformat

__all__ = ["MAX_ADDRESSES", "addresses", "clean_text", "decode_bytes", "decode_words", "header_text",
           "normalize_msg_id", "parse_date", "valid_unicode"]

MAX_MSG_ID_CHARS = 250
NOT_TEXT_CHARSETS = {"undefined", "punycode", "idna"}

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_MSG_ID = re.compile(r"<([^<>\s]+)>")
_FOLD = re.compile(r"\r?\n(?=[ \t])")


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def clean_text(text: str) -> str:
    """Header text without control characters (CR/LF/NUL/C1 → space)."""
    return _CONTROL.sub(" ", text)


def _charset_ok(name: str) -> bool:
    if not name or _CONTROL.search(name) or len(name) > 64:
        return False
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError, TypeError):
        return False
    return getattr(info, "_is_text_encoding", True) and info.name not in NOT_TEXT_CHARSETS


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
        except Exception:  # noqa: BLE001 — codecs raise UnicodeError, ValueError, ... on hostile bytes
            pass
    elif errors is not None:
        errors.append(f"charset: unknown {clean_text(name[:40])}")
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
        except Exception:  # noqa: BLE001 — binascii.Error, ValueError: keep the word verbatim
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
    return valid_unicode(clean_text(_FOLD.sub("", text).replace("\r", "").replace("\n", " ")))


def addresses(raw: str, name: str, errors: list[str]) -> list[dict[str, str]]:
    """Strictly parsed addresses (`sync.mime_address`); display names decoded (RFC 2047), controls removed."""
    return parse_addresses(raw, name, errors, lambda display: clean_text(decode_words(display, errors)))


def _fit_msg_id(value: str) -> str:
    if len(value) <= MAX_MSG_ID_CHARS:
        return value
    digest = hashlib.sha256(value.lower().encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return f"{value[:MAX_MSG_ID_CHARS - 48]}~sha256:{digest}"


def normalize_msg_id(value: str | None) -> str | None:
    """`<id@host>` → `id@host`; a bare id without brackets is accepted; None when absent or empty.
    Over `MAX_MSG_ID_CHARS`: prefix + hash of the whole id (never a bare truncation)."""
    if not value:
        return None
    match = _MSG_ID.search(value)
    if match:
        return _fit_msg_id(clean_text(match.group(1)))
    bare = value.strip().strip("<>").strip()
    return _fit_msg_id(bare) if bare and not any(c.isspace() or ord(c) < 32 for c in bare) else None


def msg_ids(value: str) -> list[str]:
    """Every `<id>` of a References / In-Reply-To value, normalized like `normalize_msg_id`."""
    return [_fit_msg_id(clean_text(m)) for m in _MSG_ID.findall(value)]


_TIME_AND_ZONE = re.compile(r"\d{1,2}:\d{2}(?::\d{2})?(?:\.\d+)?\s*(.*)$", re.DOTALL)
_OFFSET = re.compile(r"^\(?\s*(?:GMT|UTC|UT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?\s*\)?", re.IGNORECASE)
_ZONE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-/]{1,40}$")
_YEAR = re.compile(r"(?<![\d:+\-])(\d+)(?![\d:])")
_TIME = re.compile(r"\d{1,2}:\d{2}")
_NUMERIC_ZONE = re.compile(r"^[+-]\d{4}$")
_KNOWN_ZONES = {"UT", "UTC", "GMT", "Z", "EST", "EDT", "CST", "CDT", "MST", "MDT", "PST", "PDT"}  # RFC 5322 §4.3


def _zone_offset(zone: str, local: datetime) -> timedelta | None:
    """The UTC offset a zone text names, or None when unknown (see the module docstring)."""
    match = _OFFSET.match(zone)
    if match:
        hours, minutes = int(match.group(2)), int(match.group(3) or 0)
        if hours <= 14 and minutes < 60:
            offset = timedelta(hours=hours, minutes=minutes)
            return -offset if match.group(1) == "-" else offset
        return None
    token = zone.strip("() \t").split()[0] if zone.strip("() \t") else ""
    if _ZONE_NAME.match(token):
        try:
            return ZoneInfo(token).utcoffset(local)          # the offset in force at that local time
        except Exception:  # noqa: BLE001 — ZoneInfoNotFoundError, ValueError on odd keys
            return None
    return None


def _year(raw: str, parsed: int) -> int | None:
    """RFC 5322 §4.3 year rules applied to the year as written (day and year precede the time)."""
    time_match = _TIME.search(raw)
    numbers = [m for m in _YEAR.findall(raw[:time_match.start()] if time_match else raw) if len(m) <= 4]
    written = numbers[-1] if len(numbers) >= 2 else None
    if written is None or int(written) != parsed % (10 ** len(written)):
        return parsed
    if len(written) == 1:
        return None
    if len(written) == 2:
        return int(written) + (2000 if int(written) < 50 else 1900)
    if len(written) == 3:
        return int(written) + 1900
    return parsed


def parse_date(raw: str | None, errors: list[str]) -> str | None:
    if not raw:
        errors.append("date: missing")
        return None
    text = clean_text(raw).strip()[:200]
    try:
        fields = parsedate_tz(text)
        if fields is None:
            raise ValueError("unparsable")
        year = _year(text, fields[0])
        if year is None:
            raise ValueError("year")
        zone_match = _TIME_AND_ZONE.search(text)
        zone = zone_match.group(1).strip() if zone_match else ""
        if re.fullmatch(r"\d{4}", zone):                   # asctime form: "Tue Dec  6 10:00:00 2026"
            zone = ""
        token = zone.split()[0].upper() if zone else ""
        if _NUMERIC_ZONE.match(token) or token in _KNOWN_ZONES:
            offset = timedelta(seconds=fields[9] or 0)      # "-0000": UTC, no zone information (§3.3)
        elif not zone:
            errors.append("date: no time zone, read as UTC")
            offset = timedelta(0)
        else:
            found = _zone_offset(zone, datetime(year, *fields[1:6]))
            if found is None:
                errors.append(f"date: unknown time zone {clean_text(zone[:40])}")
                return None
            offset = found
        moment = datetime(year, *fields[1:6], tzinfo=timezone(offset)).astimezone(timezone.utc)
        if not 1970 <= moment.year <= 2200:
            raise ValueError("out of range")
        return isoformat(moment)
    except Exception:  # noqa: BLE001 — TypeError/ValueError/OverflowError/IndexError on garbage
        errors.append("date: unparsable")
        return None
