"""Guards against inputs no corpus holds crashing the parser or producing an unstorable item: a bounded,
derandomized hypothesis fuzz of real messages with mutated bytes and hostile header values (runs in CI)."""
from __future__ import annotations

import datetime as dt
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.sync.limits import ITEM_BUDGET, stored_size
from chalicelib.sync.mime import ParsedMessage, attachment_content, decode_span, parse_message
from tests.corpora import FIXTURES
from tests.mailfactory import HOSTILE_TOKENS as TOKENS, make_message

SEEDS = [p.read_bytes() for p in sorted(FIXTURES.glob("*.eml")) if p.stat().st_size <= 16_384] + [
    make_message(message_id="<seed@example.com>", date=dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc),
                 html="<p>Hi</p><blockquote>old</blockquote>", cc=["Ánna <anna@example.com>"],
                 attachments=[("a.pdf", "application/pdf", b"%PDF-1.4" * 20), ("b.txt", "text/plain", b"x=y\n")])]
FUZZ = settings(max_examples=80, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])



def _storable(parsed: ParsedMessage, raw: bytes) -> None:
    assert isinstance(parsed, ParsedMessage)
    assert not any(e.startswith("parse:") for e in parsed.parse_errors), parsed.parse_errors
    stored = {k: v for k, v in vars(parsed).items() if k not in ("text", "html")}
    json.dumps(stored, ensure_ascii=False).encode("utf-8")             # no lone surrogates
    assert stored_size(parsed) <= ITEM_BUDGET
    assert [a["index"] for a in parsed.attachments] == list(range(len(parsed.attachments)))
    for value in [parsed.subject or "", *parsed.headers.values(), *(a["email"] for a in parsed.to)]:
        assert "\r" not in value and "\n" not in value and "\x00" not in value
    for item in parsed.attachments[:3]:
        span = item.get("raw")
        if span:
            assert len(decode_span(raw[span["start"]:span["end"]], span["encoding"])) == item["size"]
        assert attachment_content(raw, item["index"]) is not None


@st.composite
def mutated(draw) -> bytes:
    raw = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(raw)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        chunk = draw(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=12)))
        if action == "insert":
            raw[at:at] = chunk
        elif action == "delete":
            del raw[at:at + draw(st.integers(1, 64))]
        else:
            raw[at:at + len(chunk)] = chunk
    return bytes(raw)


@FUZZ
@given(mutated())
def test_mutated_real_mail_parses_to_a_storable_item(raw):
    _storable(parse_message(raw), raw)


HEADER_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)


@FUZZ
@given(st.dictionaries(st.sampled_from(["From", "To", "Cc", "Subject", "Date", "Message-ID", "References",
                                        "In-Reply-To", "List-Id", "Content-Type", "Content-Disposition"]),
                       HEADER_TEXT, max_size=6),
       st.binary(max_size=300))
def test_arbitrary_header_values_never_lose_the_message(headers, body):
    lines = [f"{name}: {value}".encode("utf-8", "surrogateescape") for name, value in headers.items()]
    raw = b"\r\n".join([*lines, b"X-Marker: kept", b"", body])
    parsed = parse_message(raw)
    _storable(parsed, raw)
