"""Guards against the MIME parser crashing or mis-decoding real-world and malformed mail (import must never stop)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from chalicelib.sync.limits import ITEM_BUDGET, stored_size
from chalicelib.sync.mime import ParsedMessage, attachment_content, decode_words, parse_message
from chalicelib.sync.snippet import make_snippet
from tests.corpora import CPYTHON_DATA, FIXTURES, corpus_files, label
from tests.mailfactory import make_message

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
_corpus = corpus_files


def fixture(name: str) -> ParsedMessage:
    return parse_message((FIXTURES / name).read_bytes())


def _sane(parsed: ParsedMessage) -> None:
    assert isinstance(parsed, ParsedMessage)
    assert not any(e.startswith("parse:") for e in parsed.parse_errors), parsed.parse_errors
    assert parsed.date is None or ISO_UTC.match(parsed.date)
    assert len(parsed.snippet) <= 200 and "\n" not in parsed.snippet
    for addr in [parsed.from_addr or {"email": "x@y", "name": ""}, *parsed.to, *parsed.cc, *parsed.reply_to]:
        assert "@" in addr["email"] and addr["email"] == addr["email"].strip()
    assert parsed.rfc_message_id is None or ("<" not in parsed.rfc_message_id and ">" not in parsed.rfc_message_id)
    assert [a["index"] for a in parsed.attachments] == list(range(len(parsed.attachments)))
    assert parsed.has_attachments == bool(parsed.attachments)
    for text in (parsed.subject, parsed.text, parsed.html):
        assert text is None or isinstance(text, str)
    stored = {k: v for k, v in vars(parsed).items() if k not in ("text", "html")}
    json.dumps(stored, ensure_ascii=False).encode("utf-8")       # DynamoDB-storable: no lone surrogates
    assert stored_size(parsed) <= ITEM_BUDGET
    header_text = json.dumps([parsed.subject, parsed.headers, parsed.from_addr, parsed.to, parsed.attachments])
    assert not re.search(r"\\u000[0-9a-d]|\\r|\\n", header_text.replace("\\u0009", "")), header_text[:300]


def test_the_corpora_are_present():
    files = _corpus()
    assert len([p for p in files if p.parent == FIXTURES]) >= 8
    if CPYTHON_DATA.is_dir():
        assert any(p.parent == CPYTHON_DATA for p in files)


@pytest.mark.parametrize("path", _corpus(), ids=label)
def test_every_corpus_file_parses_without_crashing(path: Path):
    raw = path.read_bytes()
    parsed = parse_message(raw)
    _sane(parsed)
    for attachment in parsed.attachments[:5]:
        content = attachment_content(raw, attachment["index"])
        assert content is not None and len(content.data) == attachment["size"]


def test_garbage_and_wrong_types_never_raise():
    for raw in (b"", b"\x00\xff" * 1000, b"Content-Type: multipart/mixed; boundary=x\n\n--x\n" * 500,
                "not bytes", None, b"From: " + b"\xff" * 10_000, b"Subject: =?utf-8?b?====?=\n\n"):
        _sane(parse_message(raw))  # type: ignore[arg-type]


def test_lone_surrogates_from_utf7_are_replaced():
    parsed = parse_message(b"Subject: =?utf-7?q?+2D0-?=\nContent-Type: text/plain; charset=utf-7\n\n+2D0-x")
    _sane(parsed)
    assert parsed.text.endswith("x")


def test_attachment_metadata_is_capped():
    raw = make_message(attachments=[(f"f{i}.txt", "text/plain", b"x") for i in range(205)])
    parsed = parse_message(raw)
    assert len(parsed.attachments) == 200
    assert any(e.startswith("mime: more than 200 attachments") for e in parsed.parse_errors)


def test_deeply_nested_multipart_is_bounded():
    nested = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i) for i in range(300))
    _sane(parse_message(b"Subject: deep\n" + nested + b"Content-Type: text/plain\n\nleaf\n"))


def test_bad_charset_falls_back_to_utf8_and_is_reported():
    parsed = fixture("bad-charset.eml")
    assert parsed.text.strip() == "Café olé"
    assert "charset: unknown x-foo" in parsed.parse_errors


def test_broken_encoded_words_decode_what_they_can():
    parsed = fixture("broken-encoded-words.eml")
    # glued words and a UTF-8 sequence split across two words are joined; the broken word stays verbatim
    assert parsed.subject == "Žluťoučký kůň =?utf-8?b?!!!broken?= end"
    assert parsed.from_addr == {"name": "Ján Novák", "email": "jan@example.com"}
    assert parsed.to == [{"name": "Bogus Name", "email": "bogus@example.com"},
                         {"name": "Ánna", "email": "anna@example.com"}]
    assert "header: broken encoded word" in parsed.parse_errors
    assert "charset: unknown x-bogus" in parsed.parse_errors


def test_encoded_comma_in_display_name_does_not_split_the_address():
    assert decode_words("=?utf-8?q?Doe=2C_John?=") == "Doe, John"
    parsed = parse_message(b"From: =?utf-8?q?Doe=2C_John?= <john@example.com>\n\nx")
    assert parsed.from_addr == {"name": "Doe, John", "email": "john@example.com"}


def test_missing_boundary_keeps_the_body_as_text():
    parsed = fixture("missing-boundary.eml")
    assert "boundary: missing" in parsed.parse_errors
    assert "no boundary parameter" in parsed.text
    assert parsed.subject == "Missing boundary"


def test_missing_message_id_is_reported():
    parsed = fixture("missing-message-id.eml")
    assert parsed.rfc_message_id is None
    assert "message-id: missing" in parsed.parse_errors


def test_duplicate_message_id_uses_the_first():
    parsed = fixture("duplicate-message-id.eml")
    assert parsed.rfc_message_id == "first-id@example.com"
    assert "header: duplicate Message-ID" in parsed.parse_errors


def test_unparsable_date_is_none_and_reported():
    parsed = fixture("unparsable-date.eml")
    assert parsed.date is None
    assert "date: unparsable" in parsed.parse_errors


def test_8bit_headers_decode_as_utf8_or_latin1():
    parsed = fixture("8bit-headers.eml")
    assert parsed.subject == "Příliš žluťoučký kůň"
    assert parsed.from_addr == {"name": "Jan Novák", "email": "jan@example.com"}
    assert parsed.cc == [{"name": "François", "email": "francois@example.com"}]   # a Latin-1 byte
    assert "header: 8-bit bytes in subject" in parsed.parse_errors


def test_huge_headers_are_capped():
    parsed = fixture("huge-header.eml")
    assert len(parsed.to) == 200 and parsed.to[0]["email"] == "user0@example.com"
    assert len(parsed.subject) == 1000
    assert len(parsed.references) == 50
    assert parsed.references[0] == "ref0@example.com" and parsed.references[-1] == "ref999@example.com"
    assert "header: To truncated to 200 addresses" in parsed.parse_errors
    assert parsed.rfc_message_id == "huge@example.com"


def test_reply_threading_headers_and_snippet_strip_quotes_and_signature():
    parsed = fixture("reply-quoted.eml")
    assert parsed.in_reply_to == "offer@example.com"
    assert parsed.references == ["root@example.com", "offer@example.com"]
    assert parsed.snippet == "Thanks, we accept the offer."


def test_html_only_message_snippet_and_inline_image():
    parsed = fixture("outlook-reply.eml")
    assert parsed.text is None and "<script>" in parsed.html
    assert parsed.snippet == "Tuesday works for me."
    assert parsed.attachments == [{"index": 0, "filename": "logo.png", "content_type": "image/png", "size": 8,
                                   "content_id": "logo@example.com", "disposition": "inline",
                                   "raw": {"start": 726, "end": 738, "encoding": "base64"}}]


def test_factory_message_with_attachments_round_trips():
    raw = make_message(subject="Nabídka č. 5", from_="Jan Novák <Jan@Acme.example>", cc=["b@x.example"],
                       html="<p>Hi</p>", attachments=[("cenník.pdf", "application/pdf", b"%PDF-1.4 data")],
                       extra_headers={"Auto-Submitted": "auto-replied", "List-Id": "<news.acme.example>"})
    parsed = parse_message(raw)
    assert parsed.subject == "Nabídka č. 5"
    assert parsed.from_addr == {"name": "Jan Novák", "email": "jan@acme.example"}
    assert parsed.headers == {"auto-submitted": "auto-replied", "list-id": "<news.acme.example>"}
    assert parsed.text.startswith("Hello,") and parsed.html.strip() == "<p>Hi</p>"
    [attachment] = parsed.attachments
    assert attachment["filename"] == "cenník.pdf" and attachment["disposition"] == "attachment"
    assert attachment_content(raw, 0).data == b"%PDF-1.4 data"
    assert attachment_content(raw, 1) is None
    assert parsed.parse_errors == []


@pytest.mark.parametrize("text, expected", [
    ("Hi\n\n-----Original Message-----\nFrom: a\nSent: b\n\nold", "Hi"),
    ("Hi there\nFrom: Alice <a@x>\nSent: Monday\nTo: Bob\n\nold", "Hi there"),
    ("Ok\nAm 01.01.2026 um 10:00 schrieb Alice <a@x>:\n> alt", "Ok"),
    ("> only a quote", "> only a quote"),
    ("x" * 300, "x" * 199 + "…"),
    ("  spaced \t out \n\n text ", "spaced out text"),
])
def test_snippet_rules(text, expected):
    assert make_snippet(text) == expected
