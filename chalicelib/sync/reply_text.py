"""What the sender actually wrote: a text body without the quoted reply chain and the signature.

The splitting is mail-parser-reply's (`mailparser_reply`, MIT, https://github.com/alfonsrv/mail-parser-reply):
it finds the reply headers of the common clients in several languages ("On <date>, <name> wrote:" of Gmail
and Apple Mail, Outlook's "From: … Sent: …" block and "-----Original Message-----", their German, Czech,
French, … forms) and the signature (the RFC 3676 §4.3 delimiter "-- ", "Sent from my …", "Best regards"),
and we keep the latest reply's body. Lines quoted with ">" (RFC 3676 §4.5) that remain are dropped.

Bounded (the issue #8 lesson): the library's patterns are super-linear on long lines ("On On On …" of 4 KB
took 4 s on one line), so it only ever sees the first `MAX_INPUT_CHARS` characters, cut into lines of at most
`MAX_LINE_CHARS`; its cost then stays well under a second for any input (tests/unit/test_reply_text.py). The
new text of a reply is at the top, so the bound loses only the tail of very long messages.
"""
from __future__ import annotations

from functools import cache

from mailparser_reply import EmailMessage

MAX_INPUT_CHARS = 16_000
MAX_LINE_CHARS = 200
_RULE_CHARS = set("_-\u2014 \t")
LANGUAGES = ["en", "de", "cs", "fr", "es", "it", "nl", "pl", "sv", "da"]


def bounded(text: str, max_chars: int = MAX_INPUT_CHARS) -> str:
    """`text` cut to `max_chars`, every line longer than `MAX_LINE_CHARS` wrapped (nothing is dropped)."""
    lines = []
    for line in text[:max_chars].replace("\r\n", "\n").split("\n"):
        while len(line) > MAX_LINE_CHARS:
            lines.append(line[:MAX_LINE_CHARS])
            line = line[MAX_LINE_CHARS:]
        lines.append(line)
    return "\n".join(lines)


@cache
def _patterns() -> dict:
    """The parser's three patterns for `LANGUAGES`, built once: an `EmailMessage` otherwise rebuilds their
    source from its language tables on every message (a quarter of its time on a snippet's few hundred
    characters) before `re`'s cache finds the compiled pattern. They are the library's own patterns, handed to
    each instance through its `_header_regex` / `_signature_regex` / `_disclaimers_regex` fields."""
    prototype = EmailMessage(text="", languages=list(LANGUAGES), keep_hyphen_lists=True)
    return {"_header_regex": prototype.HEADER_REGEX, "_signature_regex": prototype.SIGNATURE_REGEX,
            "_disclaimers_regex": prototype.DISCLAIMERS_REGEX}


def new_text(text: str | None, max_chars: int = MAX_INPUT_CHARS) -> str:
    """The latest reply of `text` without the quoted chain and signature ("" when nothing is left, e.g. a
    message that is only a quote). Never raises: a parser failure returns the bounded text without ">" lines."""
    if not text:
        return ""
    text = bounded(text, max_chars)
    try:
        message = EmailMessage(text=text, languages=list(LANGUAGES), keep_hyphen_lists=True, **_patterns()).read()
        latest = message.replies[0].body if message.replies else text
    except Exception:  # noqa: BLE001 - best effort: the display keeps the full text anyway
        latest = text
    kept = [line for line in latest.split("\n") if not line.lstrip().startswith(">")]
    while kept and set(kept[-1].strip()) <= _RULE_CHARS:    # a separator line left above the quote (Outlook)
        kept.pop()
    return "\n".join(kept).strip()
