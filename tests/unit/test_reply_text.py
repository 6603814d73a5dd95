"""Guards against snippets and `body_new` showing the quoted reply chain or the signature instead of what the
sender wrote, and against the reply parser's super-linear patterns stalling ingest on hostile text."""
from __future__ import annotations

import time

import pytest

from chalicelib.providers.base import FetchedMessage, MessageRef
from chalicelib.sync import store
from chalicelib.sync.reply_text import new_text
from chalicelib.sync.snippet import make_snippet, reply_window
from tests.mailfactory import make_message
from tests.unit.test_message_store import make_mailbox

GMAIL = ("Thanks, we accept the offer.\n\nOn Tue, Dec 1, 2026 at 10:00 AM Jan Novák <jan@acme.example> wrote:\n"
         "> Here is the offer.\n> Best, Jan\n")
GMAIL_WRAPPED = ("Thanks, we accept the offer.\n\nOn Tue, Dec 1, 2026 at 10:00 AM Jan Novák <jan@acme.example>\n"
                 "wrote:\n> Here is the offer.\n")
OUTLOOK = ("Tuesday works for me.\n\nFrom: Jan Novák <jan@acme.example>\nSent: Monday, November 30, 2026 9:00 AM\n"
           "To: Jana <jana@crm.example>\nSubject: Meeting\n\nCan we meet?\n")
OUTLOOK_ORIGINAL = "Agreed.\n\n-----Original Message-----\nFrom: Jan\nSent: Monday\nSubject: x\n\nold text\n"
QUOTED = "I agree with both points.\n> first point\n> second point\n"
SIGNED = "See you tomorrow.\n\n-- \nJana Svobodová\nAcme Sales\n+420 123 456 789\n"
GERMAN = "Passt.\n\nAm 01.12.2026 um 10:00 schrieb Jan Novák <jan@acme.example>:\n> Alt\n"
CZECH = "Dobrý den, souhlasím.\n\nDne 1. 12. 2026 v 10:00 Jan Novák <jan@acme.example> napsal(a):\n> Nabídka\n"


@pytest.mark.parametrize("text, expected", [
    (GMAIL, "Thanks, we accept the offer."),
    (GMAIL_WRAPPED, "Thanks, we accept the offer."),
    (OUTLOOK, "Tuesday works for me."),
    (OUTLOOK_ORIGINAL, "Agreed."),
    (QUOTED, "I agree with both points."),
    (SIGNED, "See you tomorrow."),
    (GERMAN, "Passt."),
    (CZECH, "Dobrý den, souhlasím."),
    ("- one\n- two\n", "- one\n- two"),          # a hyphen list is not a signature
])
def test_new_text_of_common_client_replies(text, expected):
    assert new_text(text) == expected


@pytest.mark.parametrize("text", [GMAIL, GMAIL_WRAPPED, OUTLOOK, OUTLOOK_ORIGINAL, QUOTED, SIGNED, GERMAN, CZECH,
                                  "- one\n- two\n", "Bonjour,\n\nLe 1 déc. 2026 à 10:00, Jan a écrit :\n> x\n",
                                  "Ok.\n\nCAUTION: This e-mail is confidential, see our mail policy.\n"])
def test_the_shared_patterns_are_the_librarys_own(text):
    """Guards the patterns built once (`reply_text._patterns`) against splitting differently from the
    library building them itself for each message."""
    from mailparser_reply import EmailMessage

    from chalicelib.sync.reply_text import LANGUAGES, _patterns, bounded
    reference = EmailMessage(text=bounded(text), languages=list(LANGUAGES), keep_hyphen_lists=True).read()
    ours = EmailMessage(text=bounded(text), languages=list(LANGUAGES), keep_hyphen_lists=True,
                        **_patterns()).read()
    assert [(r.content, r.headers, r.signatures, r.disclaimers) for r in ours.replies] == \
        [(r.content, r.headers, r.signatures, r.disclaimers) for r in reference.replies]


def test_snippets_skip_quotes_and_signatures():
    assert make_snippet(GMAIL) == "Thanks, we accept the offer."
    assert make_snippet(OUTLOOK) == "Tuesday works for me."
    assert make_snippet(SIGNED) == "See you tomorrow."
    assert make_snippet("> only a quote") == "> only a quote"     # nothing new: the whole text


@pytest.mark.parametrize("reply", [GMAIL, OUTLOOK, OUTLOOK_ORIGINAL, QUOTED, SIGNED, GERMAN, CZECH])
@pytest.mark.parametrize("before", [0, 150, 190, 400])
def test_the_snippet_parses_only_what_its_first_characters_depend_on(reply, before):
    """Guards the parse window (`reply_window`: ingest time goes to the reply parser) against cutting a reply
    header or signature the snippet depends on: the same snippet as with the parser seeing the whole text."""
    text = ("Lorem ipsum dolor sit amet. " * 40)[:before] + reply + "\n" + "Older text.\n" * 2_000
    whole = " ".join((new_text(text, len(text)) or text).split())
    expected = whole if len(whole) <= 200 else whole[:199].rstrip() + "…"
    assert make_snippet(text) == expected
    assert reply_window(text) < 2_000


@pytest.mark.parametrize("unit", ["On ", "On x ", "Dne ", "> ", "From: x\n", "a" * 60 + "\n", " "])
def test_hostile_text_is_bounded(unit):
    """"On " * 1,400 (4 KB on one line) took 4 s in the parser, 16 KB 70 s; bounded input keeps it short."""
    text = unit * (2_000_000 // len(unit))
    started = time.perf_counter()
    new_text(text)
    make_snippet(text)
    assert time.perf_counter() - started < 3


def test_detail_shows_body_new_without_the_quote(api, tenant):
    mailbox = make_mailbox(tenant["id"], "mbx_quote")
    raw = make_message(subject="Re: Offer", body=GMAIL)
    message = store.save_fetched(mailbox, FetchedMessage(MessageRef("inbox", "1"), raw)).message
    detail = api("GET", f"/v1/messages/{message.message_id}", key=tenant["key"])
    assert detail.status == 200, detail
    assert detail.json["body_new"] == "Thanks, we accept the offer."
    assert "Here is the offer." in detail.json["text"]          # the full text is still there
    assert detail.json["snippet"] == "Thanks, we accept the offer."


def test_detail_body_new_of_an_html_only_reply(api, tenant):
    mailbox = make_mailbox(tenant["id"], "mbx_quote_html")
    html = ('<div>Tuesday works.</div><div class="gmail_quote">On Mon, Nov 30, 2026 Jan wrote:'
            '<blockquote>Can we meet?</blockquote></div>')
    raw = make_message(subject="Re: Meeting", body="", html=html)
    message = store.save_fetched(mailbox, FetchedMessage(MessageRef("inbox", "1"), raw)).message
    detail = api("GET", f"/v1/messages/{message.message_id}", key=tenant["key"])
    assert detail.json["body_new"] == "Tuesday works."
