"""Guards against real-world and malformed mail failing to store, losing raw bytes, breaking the detail view
or serving the wrong attachment bytes (moto: S3 + DynamoDB through `store.save_fetched`)."""
from __future__ import annotations

import boto3
import pytest

from chalicelib.api.schemas.messages import MessageDetail
from chalicelib.config import get_settings
from chalicelib.messages import views
from chalicelib.models.message import Message
from chalicelib.providers.base import FetchedMessage, MessageRef
from chalicelib.sync import attachments as attachment_reads
from chalicelib.sync import store
from chalicelib.sync.mime import attachment_content
from tests.corpora import CPYTHON_DATA, PUBLIC, corpus_files, label
from tests.mailfactory import make_message
from tests.unit.test_message_store import make_mailbox


def _store(mailbox, raw: bytes, uid: str) -> Message:
    outcome = store.save_fetched(mailbox, FetchedMessage(MessageRef("inbox", uid), raw))
    return Message.get(outcome.message.message_id)


def test_every_corpus_file_stores_renders_and_serves_its_attachments(aws):
    """0 crashes over the corpora; raw bytes exact; the detail view validates; downloads equal a full parse."""
    files = corpus_files()
    assert any(p.parent == CPYTHON_DATA for p in files) or not CPYTHON_DATA.is_dir()
    problems = []
    for n, path in enumerate(files):
        raw = path.read_bytes()
        mailbox = make_mailbox(mailbox_id=f"mbx_{n}")     # one mailbox per file: equal Message-IDs stay apart
        try:
            message = _store(mailbox, raw, str(n))
            assert store.load_raw(message) == raw
            MessageDetail.model_validate(views.detail(message, show_snippet=True))
            for item in message.attachments[:10]:
                served = attachment_reads.read_attachment(message, item["index"])
                assert served is not None and served.data == attachment_content(raw, item["index"]).data
        except Exception as exc:  # noqa: BLE001 — collect every failing file, then report them together
            problems.append(f"{label(path)}: {type(exc).__name__}: {str(exc)[:200]}")
    assert problems == []
    assert len(files) >= 8


def test_public_corpora_are_read_from_beside_the_project():
    """The corpora are referenced in place (`../shared/corpora`), never copied into the repository."""
    present = [root for root in PUBLIC if root.is_dir()]
    for root in present:
        assert (root / "LICENSE").is_file() or (root / "LICENSE.txt").is_file()


def test_hostile_headers_store_within_dynamodb_item_limits(aws):
    """Items over 400 KB made `save_fetched` raise after the S3 put, blocking the mailbox on every retry."""
    mailbox = make_mailbox()
    recipients = ", ".join(f'"{"N" * 190}" <{"u" * 300}{i}@example.com>' for i in range(200))
    raw = (f"From: a@example.com\r\nTo: {recipients}\r\nCc: {recipients}\r\nBcc: {recipients}\r\n"
           f"Reply-To: {recipients}\r\nReferences: {' '.join(f'<{i}{chr(120) * 400}@x>' for i in range(300))}\r\n"
           f"Subject: {'s' * 5000}\r\n\r\nbody").encode()
    message = _store(mailbox, raw, "1")
    assert message.to and message.cc and any(e.startswith("limit: ") for e in message.parse_errors)

    parts = b"".join(b"--x\r\nContent-Type: application/" + b"y" * 2000 + b"\r\nContent-Disposition: attachment"
                     + b"z" * 2000 + b"; filename=f%d.bin\r\n\r\ndata\r\n" % i for i in range(200))
    raw = b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n" + parts + b"--x--\r\n"
    message = _store(mailbox, raw, "2")
    assert message.has_attachments and message.attachments
    assert attachment_reads.read_attachment(message, 0).data == b"data"


def test_a_stranger_using_the_mailbox_address_as_a_malformed_from_is_not_outbound(aws):
    """`From: alice@example.com)<mallory@evil.example>` was stored as outbound mail of alice's mailbox."""
    mailbox = make_mailbox(email="alice@example.com")
    message = _store(mailbox, b"From: alice@example.com)<mallory@evil.example>\r\nSubject: hi\r\n\r\nx", "1")
    assert message.direction == "inbound" and message.from_addr is None
    assert "header: From malformed" in message.parse_errors


def test_attachment_downloads_read_only_their_byte_range(aws, monkeypatch):
    """Every download re-parsed the whole message; it reads and decodes just the attachment's span."""
    mailbox = make_mailbox()
    pdf, png = b"%PDF-1.4 " + bytes(range(256)) * 100, b"\x89PNG" * 1000
    raw = make_message(attachments=[("a.pdf", "application/pdf", pdf), ("b.png", "image/png", png)])
    message = _store(mailbox, raw, "1")
    calls = []
    s3 = boto3.client("s3")
    real_get = s3.get_object

    def spy(**kwargs):
        calls.append(kwargs.get("Range"))
        return real_get(**kwargs)

    monkeypatch.setattr(s3, "get_object", spy)
    monkeypatch.setattr(attachment_reads.aws, "s3", lambda: s3)
    monkeypatch.setattr(attachment_reads, "attachment_content", lambda *a: pytest.fail("full re-parse"))
    assert attachment_reads.read_attachment(message, 0).data == pdf
    assert attachment_reads.read_attachment(message, 1).data == png
    assert len(calls) == 2 and all(c and c.startswith("bytes=") for c in calls)
    span = message.attachments[1]["raw"]
    assert int(calls[1].split("-")[1]) - int(calls[1].split("=")[1].split("-")[0]) + 1 == span["end"] - span["start"]
    assert attachment_reads.read_attachment(message, 2) is None


def test_a_span_that_does_not_match_falls_back_to_a_full_parse(aws):
    """An item whose span is stale (or absent, stored before spans) still serves the right bytes."""
    mailbox = make_mailbox()
    raw = make_message(attachments=[("a.txt", "text/plain", b"hello attachment")])
    message = _store(mailbox, raw, "1")
    message.attachments[0]["raw"] = {"start": 0, "end": 10, "encoding": "base64"}
    assert attachment_reads.read_attachment(message, 0).data == b"hello attachment"
    del message.attachments[0]["raw"]
    assert attachment_reads.read_attachment(message, 0).data == b"hello attachment"
    boto3.client("s3").delete_object(Bucket=get_settings().raw_bucket, Key=message.raw_s3_key)
