"""List snippets: the first ≤ 200 characters of what the sender actually wrote.

The quoted reply chain and the signature are left out by the reply parser (`sync/reply_text.py`,
mail-parser-reply: Gmail's "On … wrote:", Outlook's "From: … Sent: …" block and "-----Original Message-----",
their translations, ">" quotes, the RFC 3676 §4.3 "-- " signature), which sees only as much of the text as the
snippet's first 200 characters depend on (`reply_window`). When nothing is left (a message that is only a
quote), the whole text is used instead, so the snippet is empty only for an empty message.

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
from chalicelib.sync.reply_text import new_text

SNIPPET_CHARS = 200
MAX_SNIPPET_HTML = 256 * 1024
MAX_SNIPPET_TEXT = 200_000
MAX_REPLY_PARSE_CHARS = 8_000    # the reply parser sees at most this much (its patterns are super-linear)
REPLY_HEADER_CHARS = 300         # room for a reply header begun before the snippet ends (its 2nd line starts in it)
_NON_SPACE = re.compile(r"\S+")

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


def _collapse(text: str) -> str:
    return " ".join(text.replace("\u200b", " ").replace("\xa0", " ").split())


def reply_window(text: str, limit: int = SNIPPET_CHARS) -> int:
    """How much of `text` the reply parser must see to settle the snippet's first `limit` characters: up to
    where `limit` non-space characters have passed (the collapsed snippet is full by then), plus room for a
    reply header that starts there, to the end of that line; at most `MAX_REPLY_PARSE_CHARS`. What follows can
    only cut text after the snippet's end (the parser splits at headers and signatures it finds), and the
    parser's time grows with its input (about 1 ms per 1,000 characters), most of an import's parse time."""
    seen = 0
    for run in _NON_SPACE.finditer(text, 0, MAX_REPLY_PARSE_CHARS):
        seen += len(run.group())
        if seen >= limit:
            end = text.find("\n", run.end() + REPLY_HEADER_CHARS)
            return min(len(text) if end < 0 else end, MAX_REPLY_PARSE_CHARS)
    return min(len(text), MAX_REPLY_PARSE_CHARS)


def make_snippet(text: str | None, limit: int = SNIPPET_CHARS) -> str:
    if not text:
        return ""
    text = text[:MAX_SNIPPET_TEXT]
    snippet = _collapse(new_text(text, reply_window(text, limit))) or _collapse(text)
    if len(snippet) > limit:
        snippet = snippet[:limit - 1].rstrip() + "…"
    return snippet
