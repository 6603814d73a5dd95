"""List snippets: the first ≤ 200 characters of what the sender actually wrote.

Stripped before collapsing whitespace: quoted lines ("> ..."), the reply header and everything after it
("On <date>, <name> wrote:" and a few common translations, possibly wrapped over two lines), Outlook's
"-----Original Message-----" separator or a "From: ... / Sent: ..." header block, and the signature after
the RFC 3676 §4.3 delimiter "-- ". When nothing is left (a message that is only a quote), the whole text is
used instead, so the snippet is empty only for an empty message.

Bounded: HTML is read up to `MAX_SNIPPET_HTML` characters; quotes (`<blockquote>`) are removed with one
linear pass that counts nesting (an unclosed quote runs to the end), every pattern has a bounded width,
and nh3 only sees HTML within the sanitizer's budget (`security.sanitize.within_budget`), else the tags are
stripped by a linear pass.
"""
from __future__ import annotations

import html as html_lib
import re

import nh3

from chalicelib.security.sanitize import visible_text, within_budget

SNIPPET_CHARS = 200
MAX_SNIPPET_HTML = 256 * 1024
MAX_SNIPPET_TEXT = 200_000

_REPLY_HEADER = re.compile(
    r"^\s*(on|am|le|el|il|op|dne|em|w dniu)\s.{0,300}"
    r"(wrote|schrieb|a écrit|escribió|ha scritto|schreef|napsal|escreveu|napisał).{0,200}:\s*$",
    re.IGNORECASE)
_ORIGINAL = re.compile(r"^\s*-{2,}\s*(original message|ursprüngliche nachricht|původní zpráva|message d'origine)"
                       r"\s*-{2,}\s*$", re.IGNORECASE)
_OUTLOOK_FROM = re.compile(r"^\s*\*?(from|von|od|de)\s*:\*?\s", re.IGNORECASE)
_OUTLOOK_SENT = re.compile(r"^\s*\*?(sent|date|gesendet|odesláno|envoyé)\s*:\*?\s", re.IGNORECASE)
_UNDERSCORES = re.compile(r"^\s*_{10,}\s*$")
_BLOCK_END = re.compile(r"<\s{0,8}(br|/p|/div|/tr|/li|/h[1-6]|/table|/blockquote)\b[^<>]{0,1000}>", re.IGNORECASE)
_BLOCKQUOTE_TAG = re.compile(r"<(/?)blockquote\b[^<>]{0,1000}>?", re.IGNORECASE)


def drop_blockquotes(html: str) -> str:
    """`html` without its (outermost) `<blockquote>` elements, each replaced by a line break; linear."""
    kept: list[str] = []
    depth = position = 0
    for match in _BLOCKQUOTE_TAG.finditer(html):
        if not match.group(1):
            if depth == 0:
                kept.append(html[position:match.start()])
                kept.append("\n")
            depth += 1
        elif depth:
            depth -= 1
            if depth == 0:
                position = match.end()
    if depth == 0:
        kept.append(html[position:])
    return "".join(kept)


def html_to_text(html: str) -> str:
    """Visible text of an HTML body (no script/style content), one line per block, quotes removed."""
    if not html:
        return ""
    try:
        marked = _BLOCK_END.sub("\n", drop_blockquotes(html[:MAX_SNIPPET_HTML]))
        if not within_budget(marked):
            return visible_text(marked)
        return html_lib.unescape(nh3.clean(marked, tags=set(), clean_content_tags={"script", "style", "head",
                                                                                     "title"}))
    except Exception:  # noqa: BLE001 — a snippet is best effort
        return ""


def _reply_header(line: str) -> bool:
    """"On <date>, <name> wrote:" — a date (digits) distinguishes it from prose like "On it I wrote:"."""
    return bool(_REPLY_HEADER.match(line)) and any(c.isdigit() for c in line)


def _is_reply_start(lines: list[str], i: int) -> bool:
    line = lines[i]
    if _ORIGINAL.match(line) or _reply_header(line):
        return True
    if i + 1 < len(lines) and _reply_header(f"{line} {lines[i + 1]}"):
        return True
    if _OUTLOOK_FROM.match(line):
        return any(_OUTLOOK_SENT.match(nxt) for nxt in lines[i + 1:i + 4])
    if _UNDERSCORES.match(line):
        return any(_OUTLOOK_FROM.match(nxt) for nxt in lines[i + 1:i + 3])
    return False


def strip_quotes(text: str) -> str:
    lines = text.splitlines()
    kept: list[str] = []
    for i, line in enumerate(lines):
        if line.rstrip() == "--" or _is_reply_start(lines, i):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line)
    return "\n".join(kept)


def _collapse(text: str) -> str:
    return " ".join(text.replace("\u200b", " ").replace("\xa0", " ").split())


def make_snippet(text: str | None, limit: int = SNIPPET_CHARS) -> str:
    if not text:
        return ""
    text = text[:MAX_SNIPPET_TEXT]
    snippet = _collapse(strip_quotes(text)) or _collapse(text)
    if len(snippet) > limit:
        snippet = snippet[:limit - 1].rstrip() + "…"
    return snippet
