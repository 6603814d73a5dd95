"""Guards against HTML-only mail hanging the snippet extraction (quadratic patterns, unbounded input)."""
from __future__ import annotations

import time

import pytest

from chalicelib.sync.mime import parse_message
from chalicelib.sync.snippet import drop_blockquotes, html_to_text


@pytest.mark.parametrize("html", [
    "<p>Reply</p>" + "<blockquote>quoted " * 100_000,              # 1.2 MB of unclosed quotes: > 100 s before
    "<p>Reply</p>" + "<br" * 300_000,                             # tags without ">"
    "<p>Reply</p>" + "<div>" * 200_000,                           # nesting beyond nh3's budget
    "<p>Reply</p>" + "<" + " " * 1_000_000 + "br",
])
def test_hostile_html_snippets_are_fast(html):
    """Each of these took seconds to minutes; the snippet must stay a cheap step of ingest."""
    started = time.perf_counter()
    text = html_to_text(html)
    assert time.perf_counter() - started < 2
    assert text.strip().startswith("Reply")


def test_html_only_message_with_unclosed_quotes_parses_quickly():
    """The same through the parser, as ingest runs it."""
    raw = (b"From: a@example.com\r\nContent-Type: text/html\r\n\r\n<p>New text</p>"
           + b"<blockquote>old " * 100_000)
    started = time.perf_counter()
    parsed = parse_message(raw)
    assert time.perf_counter() - started < 3
    assert parsed.snippet == "New text"


def test_blockquotes_are_removed_with_their_nesting():
    """Nested quotes are removed whole (the old non-greedy pattern left the outer quote's tail)."""
    html = "<p>A</p><blockquote>q1<blockquote>q2</blockquote>q1 tail</blockquote><p>B</p><blockquote>open"
    assert drop_blockquotes(html) == "<p>A</p>\n<p>B</p>\n"
    assert html_to_text(html).split() == ["A", "B"]
