"""List snippets: the first ≤ 200 characters of what the sender actually wrote.

Stripped before collapsing whitespace: quoted lines ("> ..."), the reply header and everything after it
("On <date>, <name> wrote:" and a few common translations, possibly wrapped over two lines), Outlook's
"-----Original Message-----" separator or a "From: ... / Sent: ..." header block, and the signature after
the RFC 3676 §4.3 delimiter "-- ". When nothing is left (a message that is only a quote), the whole text is
used instead, so the snippet is empty only for an empty message.
"""
from __future__ import annotations

import html as html_lib
import re

import nh3

SNIPPET_CHARS = 200

_REPLY_HEADER = re.compile(
    r"^\s*(on|am|le|el|il|op|dne|em|w dniu)\s.{0,300}"
    r"(wrote|schrieb|a écrit|escribió|ha scritto|schreef|napsal|escreveu|napisał).{0,200}:\s*$",
    re.IGNORECASE)
_ORIGINAL = re.compile(r"^\s*-{2,}\s*(original message|ursprüngliche nachricht|původní zpráva|message d'origine)"
                       r"\s*-{2,}\s*$", re.IGNORECASE)
_OUTLOOK_FROM = re.compile(r"^\s*\*?(from|von|od|de)\s*:\*?\s", re.IGNORECASE)
_OUTLOOK_SENT = re.compile(r"^\s*\*?(sent|date|gesendet|odesláno|envoyé)\s*:\*?\s", re.IGNORECASE)
_UNDERSCORES = re.compile(r"^\s*_{10,}\s*$")
_BLOCK_END = re.compile(r"<\s*(br|/p|/div|/tr|/li|/h[1-6]|/table|/blockquote)\b[^>]*>", re.IGNORECASE)
_BLOCKQUOTE = re.compile(r"<blockquote\b.*?</blockquote\s*>", re.IGNORECASE | re.DOTALL)


def html_to_text(html: str) -> str:
    """Visible text of an HTML body (no script/style content), one line per block, quotes removed."""
    if not html:
        return ""
    try:
        marked = _BLOCK_END.sub("\n", _BLOCKQUOTE.sub("\n", html))
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
    text = text[:200_000]
    snippet = _collapse(strip_quotes(text)) or _collapse(text)
    if len(snippet) > limit:
        snippet = snippet[:limit - 1].rstrip() + "…"
    return snippet
