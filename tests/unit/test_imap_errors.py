"""Guards IMAP error mapping, cursor encoding and Sent lookup: a wrong code means wrong retries or lost mail."""
from __future__ import annotations

import imaplib
import smtplib
import socket
import ssl

import pytest
from imapclient import exceptions as imapclient_errors

from chalicelib.providers.base import ErrorCode, ProviderError
from chalicelib.providers.imap import cursor as cursors
from chalicelib.providers.imap.errors import translate, translated
from chalicelib.providers.imap.folders import find_sent


def code_of(exc: BaseException, **kw) -> ErrorCode:
    return translate(exc, host="imap.example.com", **kw).code


@pytest.mark.parametrize("exc, expected", [
    (imapclient_errors.LoginError("b'[AUTHENTICATIONFAILED] Authentication failed.'"), ErrorCode.AUTH_REVOKED),
    (imapclient_errors.LoginError("b'Invalid credentials (Failure)'"), ErrorCode.AUTH_REVOKED),
    (imapclient_errors.LoginError("b'[UNAVAILABLE] Temporary authentication failure'"), ErrorCode.TEMPORARY),
    (imapclient_errors.LoginError("b'[PRIVACYREQUIRED] Plaintext authentication disallowed'"), ErrorCode.PERMANENT),
    (imaplib.IMAP4.error("select failed: [NONEXISTENT] Mailbox doesn't exist: Sent"), ErrorCode.NOT_FOUND),
    (imaplib.IMAP4.error("examine failed: Mailbox doesn't exist: Foo"), ErrorCode.NOT_FOUND),
    (imaplib.IMAP4.error("[UNAVAILABLE] Internal error occurred"), ErrorCode.TEMPORARY),
    (imaplib.IMAP4.error("[SERVERBUG] oops"), ErrorCode.TEMPORARY),
    (imaplib.IMAP4.error("[EXPIRED] password expired"), ErrorCode.AUTH_REVOKED),
    (imaplib.IMAP4.error("BAD Error in IMAP command"), ErrorCode.PERMANENT),
    (imaplib.IMAP4.abort("socket error: EOF"), ErrorCode.TEMPORARY),
    (imapclient_errors.IMAPClientAbortError("connection closed"), ErrorCode.TEMPORARY),
    (socket.timeout("timed out"), ErrorCode.TEMPORARY),
    (TimeoutError(), ErrorCode.TEMPORARY),
    (ConnectionRefusedError(111, "Connection refused"), ErrorCode.TEMPORARY),
    (ConnectionResetError(104, "Connection reset by peer"), ErrorCode.TEMPORARY),
    (socket.gaierror(-2, "Name or service not known"), ErrorCode.TEMPORARY),
    (ssl.SSLCertVerificationError(1, "certificate verify failed"), ErrorCode.PERMANENT),
    (ssl.SSLError(1, "wrong version number"), ErrorCode.PERMANENT),
    (smtplib.SMTPAuthenticationError(535, b"5.7.8 Authentication credentials invalid"), ErrorCode.AUTH_REVOKED),
    (smtplib.SMTPAuthenticationError(454, b"4.7.0 Temporary authentication failure"), ErrorCode.TEMPORARY),
    (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), ErrorCode.TEMPORARY),
    (smtplib.SMTPSenderRefused(451, b"try later", "a@example.com"), ErrorCode.TEMPORARY),
    (smtplib.SMTPSenderRefused(553, b"not yours", "a@example.com"), ErrorCode.PERMANENT),
    (smtplib.SMTPRecipientsRefused({"b@example.net": (450, b"greylisted")}), ErrorCode.TEMPORARY),
    (smtplib.SMTPRecipientsRefused({"b@example.net": (550, b"no such user")}), ErrorCode.PERMANENT),
    (smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server."), ErrorCode.PERMANENT),
    (ValueError("bug"), ErrorCode.PERMANENT),
])
def test_errors_map_to_one_code(exc, expected):
    assert code_of(exc) is expected


def test_details_name_the_host_and_never_carry_the_secret():
    exc = imaplib.IMAP4.error("LOGIN failed for s3cret-pass: [AUTHENTICATIONFAILED]")
    error = translate(exc, host="imap.example.com", secrets=("s3cret-pass",))
    assert "s3cret-pass" not in str(error) and "imap.example.com" in error.detail
    cert = translate(ssl.SSLCertVerificationError(1, "x"), host="imap.example.com")
    assert "certificate" in cert.detail


def test_translated_context_raises_provider_error_without_chaining():
    with pytest.raises(ProviderError) as caught:
        with translated(host="h", secrets=("pw",)):
            raise ConnectionResetError("reset pw")
    assert caught.value.code is ErrorCode.TEMPORARY
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_uid_sets_round_trip_compactly():
    uids = [1, 2, 3, 7, 9, 10, 11, 40]
    assert cursors.encode_uid_set(uids) == "1:3,7,9:11,40"
    assert cursors.decode_uid_set("1:3,7,9:11,40") == tuple(uids)
    assert cursors.encode_uid_set([]) == "" and cursors.decode_uid_set("") == ()
    assert len(cursors.encode_uid_set(range(1, 100_001))) == len("1:100000")


def test_cursor_round_trips_and_knows_when_a_page_is_pending():
    done = cursors.FolderCursor(mailbox="Sent Items", uidvalidity=7, last_uid=12, uidnext=13, messages=9,
                                below=9, known=(5, 6, 12), modseq=99)
    assert cursors.decode(cursors.encode(done)) == done
    assert not done.pending
    assert done.with_(boundary=20).pending
    assert done.with_(uidnext=20).pending
    missing = cursors.FolderCursor(mailbox=None)
    assert cursors.decode(cursors.encode(missing)) == missing


@pytest.mark.parametrize("text", ["", "not json", "[]", '{"v":2}', '{"v":1,"mb":"INBOX"}',
                                  '{"v":1,"mb":"INBOX","uv":1,"last":-1,"next":1,"n":0,"below":0,"k":""}',
                                  '{"v":1,"mb":"INBOX","uv":1,"last":1,"next":1,"n":0,"below":0,"k":"5:3"}',
                                  '{"v":1,"mb":7,"uv":1,"last":1,"next":1,"n":0,"below":0,"k":""}'])
def test_corrupt_cursors_are_rejected(text):
    with pytest.raises(cursors.CursorError):
        cursors.decode(text)


def test_corrupt_cursor_makes_changes_raise_cursor_invalid(monkeypatch):
    from chalicelib.providers.base import ConnectionSettings
    from chalicelib.providers.imap.context import ImapContext
    from chalicelib.providers.imap.adapter import ImapProvider
    context = ImapContext(tenant_id="t", mailbox_id="m", email="a@example.com",
                              imap=ConnectionSettings(host="h", port=1, security="none", username="u"))
    provider = ImapProvider(context)
    monkeypatch.setattr(provider.client, "connect", lambda: provider.client)
    from datetime import date
    with pytest.raises(ProviderError) as caught:
        provider.changes("inbox", "garbage", since=date(2026, 11, 20), page_size=10)
    assert caught.value.code is ErrorCode.CURSOR_INVALID


@pytest.mark.parametrize("rows, expected", [
    ([(("\\HasNoChildren",), "INBOX"), (("\\HasNoChildren", "\\Sent"), "Odeslaná pošta"),
      ((), "Sent")], "Odeslaná pošta"),
    ([((), "INBOX"), ((), "Sent Items")], "Sent Items"),
    ([((), "INBOX"), ((), "INBOX.Sent")], "INBOX.Sent"),
    ([((), "INBOX"), (("\\Noselect",), "[Gmail]"), ((), "[Gmail]/Sent Mail")], "[Gmail]/Sent Mail"),
    ([((), "INBOX"), ((), "sent messages")], "sent messages"),
    ([((), "INBOX"), (("\\Noselect", "\\Sent"), "Sent")], None),
    ([((), "INBOX")], None),
])
def test_sent_folder_is_special_use_first_then_common_names(rows, expected):
    assert find_sent(rows) == expected
