"""Guards the IMAP provider against a real Dovecot: wrong/duplicate/missed mail, costly idle syncs, server writes."""
from __future__ import annotations

import datetime as dt
import socket

import pytest

from chalicelib.providers.base import ConnectionSettings, ErrorCode, ProviderError
from chalicelib.providers.imap.context import ImapContext
from chalicelib.providers.imap.adapter import ImapProvider
from devservers.smtp import SmtpServer
from tests.dovecot import free_port
from tests.mailfactory import make_message

UTC = dt.timezone.utc
SINCE = dt.date(2026, 11, 20)
OLD = dt.datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
RECENT = dt.datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def provider_for(dovecot, user, password=None, *, security="none", host="127.0.0.1", port=None, **kw):
    settings = ConnectionSettings(host=host, port=port or dovecot.port, security=security, username=user,
                                  address="127.0.0.1")
    context = ImapContext(tenant_id="t1", mailbox_id="m1", email=f"{user}@example.com", imap=settings,
                              secrets={"password": password or dovecot.passwords[user]}, timeout=5, **kw)
    return ImapProvider(context, ssl_context=dovecot.client_ssl_context())


def sync_all(provider, folder, cursor=None, page_size=100):
    """Drain changes() like the engine does: (all refs, last cursor, pages)."""
    refs, pages = [], 0
    while True:
        change_set = provider.changes(folder, cursor, since=SINCE, page_size=page_size)
        refs.extend(change_set.new)
        cursor, pages = change_set.next_cursor, pages + 1
        if not change_set.has_more:
            return refs, cursor, pages


def subjects(provider, refs):
    return [raw.split(b"Subject: ")[1].split(b"\r\n")[0].decode()
            for raw in (f.raw for f in provider.fetch(refs, max_bytes=10_000_000))]


def test_initial_import_honours_the_date_and_later_calls_return_only_new_mail(dovecot):
    user, _ = dovecot.new_user()
    dovecot.append(user, "INBOX", make_message(subject="old"), date=OLD)
    dovecot.append(user, "INBOX", make_message(subject="recent"), date=RECENT)
    with provider_for(dovecot, user) as provider:
        refs, cursor, _ = sync_all(provider, "inbox")
        assert subjects(provider, refs) == ["recent"]
    dovecot.append(user, "INBOX", make_message(subject="newer"), date=RECENT)
    with provider_for(dovecot, user) as provider:
        refs, cursor2, _ = sync_all(provider, "inbox", cursor)
        assert subjects(provider, refs) == ["newer"]
        # An old-dated message moved in later is new mail for the folder and is listed.
        dovecot.append(user, "INBOX", make_message(subject="moved-in"), date=OLD)
        refs, _, _ = sync_all(provider, "inbox", cursor2)
        assert subjects(provider, refs) == ["moved-in"]


def test_idle_sync_is_one_status_per_folder_and_fetches_nothing(dovecot):
    user, _ = dovecot.new_user()
    dovecot.append(user, "INBOX", make_message(subject="in"), date=RECENT)
    dovecot.append(user, "Sent", make_message(subject="out"), date=RECENT)
    with provider_for(dovecot, user) as provider:
        cursors = {folder: sync_all(provider, folder)[1] for folder in provider.folders()}
    with provider_for(dovecot, user) as provider:
        for folder in provider.folders():
            change_set = provider.changes(folder, cursors[folder], since=SINCE, page_size=100)
            assert (change_set.new, change_set.removed, change_set.has_more) == ((), (), False)
            assert change_set.next_cursor == cursors[folder]
            assert change_set.round_trips == 1
        assert provider.client.commands == ["STATUS", "STATUS"]


def test_fetch_leaves_the_server_byte_for_byte_and_flag_for_flag_unchanged(dovecot):
    user, _ = dovecot.new_user()
    raw = make_message(subject="Poptávka #1234#", html="<p>ahoj</p>", date=RECENT,
                       attachments=[("a.pdf", "application/pdf", b"%PDF-1.4" * 100)])
    dovecot.append(user, "INBOX", raw, date=RECENT)
    dovecot.append(user, "Sent", make_message(subject="sent", date=RECENT), flags=["\\Seen"], date=RECENT)
    before = dovecot.snapshot(user)
    with provider_for(dovecot, user) as provider:
        fetched = []
        for folder in provider.folders():
            refs, _, _ = sync_all(provider, folder)
            fetched += list(provider.fetch(refs, max_bytes=10_000_000))
    assert [f.raw for f in fetched if f.ref.folder == "inbox"] == [raw]
    assert fetched[0].ref.size == len(raw)
    assert dovecot.snapshot(user) == before
    assert "\\Seen" not in next(iter(dovecot.flags(user, "INBOX").values()))


def test_uidvalidity_change_raises_cursor_invalid_and_a_resync_lists_the_mail_again(dovecot):
    user, _ = dovecot.new_user()
    dovecot.append(user, "INBOX", make_message(subject="one"), date=RECENT)
    with provider_for(dovecot, user) as provider:
        _, cursor, _ = sync_all(provider, "inbox")
    dovecot.recreate_folder(user, "INBOX")
    with provider_for(dovecot, user) as provider:
        with pytest.raises(ProviderError) as caught:
            provider.changes("inbox", cursor, since=SINCE, page_size=100)
        assert caught.value.code is ErrorCode.CURSOR_INVALID
        refs, _, _ = sync_all(provider, "inbox", None)
        assert subjects(provider, refs) == ["one"]


def test_fetch_of_refs_from_an_old_uidvalidity_is_temporary_so_the_next_sync_resyncs(dovecot):
    user, _ = dovecot.new_user()
    dovecot.append(user, "INBOX", make_message(subject="one"), date=RECENT)
    with provider_for(dovecot, user) as provider:
        refs, _, _ = sync_all(provider, "inbox")
    dovecot.recreate_folder(user, "INBOX")
    with provider_for(dovecot, user) as provider:
        with pytest.raises(ProviderError) as caught:
            list(provider.fetch(refs, max_bytes=10_000_000))
    assert caught.value.code is ErrorCode.TEMPORARY and "UIDVALIDITY" in caught.value.detail


def test_server_deletion_shows_in_removed_once(dovecot):
    user, _ = dovecot.new_user()
    uids = [dovecot.append(user, "INBOX", make_message(subject=f"m{i}"), date=RECENT) for i in range(4)]
    with provider_for(dovecot, user) as provider:
        refs, cursor, _ = sync_all(provider, "inbox")
        validity = refs[0].provider_id.split(":")[0]
    dovecot.delete(user, "INBOX", uids[1])
    dovecot.append(user, "INBOX", make_message(subject="fresh"), date=RECENT)
    with provider_for(dovecot, user) as provider:
        change_set = provider.changes("inbox", cursor, since=SINCE, page_size=100)
        assert change_set.removed == (f"{validity}:{uids[1]}",)
        assert subjects(provider, change_set.new) == ["fresh"]
        again = provider.changes("inbox", change_set.next_cursor, since=SINCE, page_size=100)
        assert again.removed == () and again.new == ()


def test_deletion_of_the_newest_message_alone_is_detected(dovecot):
    user, _ = dovecot.new_user()
    uids = [dovecot.append(user, "INBOX", make_message(), date=RECENT) for _ in range(2)]
    with provider_for(dovecot, user) as provider:
        refs, cursor, _ = sync_all(provider, "inbox")
    dovecot.delete(user, "INBOX", uids[-1])
    with provider_for(dovecot, user) as provider:
        change_set = provider.changes("inbox", cursor, since=SINCE, page_size=100)
    assert change_set.removed == (refs[-1].provider_id,) and change_set.new == ()


def test_sent_folder_found_by_special_use(dovecot):
    user, _ = dovecot.new_user()
    dovecot.append(user, "Sent", make_message(subject="outgoing"), date=RECENT)
    with provider_for(dovecot, user) as provider:
        refs, cursor, _ = sync_all(provider, "sent")
        assert subjects(provider, refs) == ["outgoing"]
        assert provider.client.commands[0] == "LIST"
    assert '"mb":"Sent"' in cursor


def test_paging_is_bounded_and_lists_every_message_once(dovecot):
    user, _ = dovecot.new_user()
    for i in range(3):
        dovecot.append(user, "INBOX", make_message(subject=f"old{i}"), date=OLD)
    for i in range(7):
        dovecot.append(user, "INBOX", make_message(subject=f"r{i}"), date=RECENT)
        dovecot.append(user, "INBOX", make_message(subject=f"old-late{i}"), date=OLD)
    with provider_for(dovecot, user) as provider:
        seen, cursor, has_more_flags = [], None, []
        while True:
            change_set = provider.changes("inbox", cursor, since=SINCE, page_size=3)
            assert len(change_set.new) <= 3
            seen += change_set.new
            has_more_flags.append(change_set.has_more)
            cursor = change_set.next_cursor
            if not change_set.has_more:
                break
        assert has_more_flags[:-1] == [True] * (len(has_more_flags) - 1) and len(has_more_flags) >= 3
        assert subjects(provider, seen) == [f"r{i}" for i in range(7)]
        dovecot.append(user, "INBOX", make_message(subject="after"), date=RECENT)
        refs, _, _ = sync_all(provider, "inbox", cursor)
        assert subjects(provider, refs) == ["after"]


def test_oversize_message_is_skipped_without_fetching_its_body(dovecot):
    user, _ = dovecot.new_user()
    small = make_message(subject="small", date=RECENT)
    big = make_message(subject="big", date=RECENT, attachments=[("big.bin", "application/octet-stream",
                                                                 b"x" * 20_000)])
    dovecot.append(user, "INBOX", small, date=RECENT)
    dovecot.append(user, "INBOX", big, date=RECENT)
    with provider_for(dovecot, user) as provider:
        refs, _, _ = sync_all(provider, "inbox")
        fetched = list(provider.fetch(refs, max_bytes=10_000))
        body_fetches = provider.client.commands.count("UID FETCH")
    assert fetched[0].raw == small
    assert fetched[1].raw is None
    size = len(big)
    assert fetched[1].skipped_reason == f"size {size} exceeds limit 10000"
    assert body_fetches == 2  # one size/date fetch + one body fetch for the small message only


def test_wrong_password_is_auth_revoked_without_the_password_in_the_detail(dovecot):
    user, _ = dovecot.new_user()
    with provider_for(dovecot, user, password="not-the-password") as provider:
        with pytest.raises(ProviderError) as caught:
            provider.test_connection()
    assert caught.value.code is ErrorCode.AUTH_REVOKED
    assert "not-the-password" not in str(caught.value)


def test_connection_refused_is_temporary(dovecot):
    user, _ = dovecot.new_user()
    with provider_for(dovecot, user, port=free_port()) as provider:
        with pytest.raises(ProviderError) as caught:
            provider.changes("inbox", None, since=SINCE, page_size=10)
    assert caught.value.code is ErrorCode.TEMPORARY


def test_silent_server_times_out_as_temporary(dovecot):
    user, _ = dovecot.new_user()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        settings = ConnectionSettings(host="127.0.0.1", port=listener.getsockname()[1], security="none",
                                      username=user)
        context = ImapContext(tenant_id="t", mailbox_id="m", email="a@example.com", imap=settings,
                                  secrets={"password": "x"}, timeout=0.5)
        with pytest.raises(ProviderError) as caught:
            ImapProvider(context).test_connection()
    assert caught.value.code is ErrorCode.TEMPORARY and "timed out" in caught.value.detail


def test_implicit_tls_and_starttls_verify_the_server_against_host(dovecot):
    user, _ = dovecot.new_user()
    dovecot.append(user, "INBOX", make_message(subject="tls"), date=RECENT)
    for security, port in (("tls", dovecot.tls_port), ("starttls", dovecot.port)):
        with provider_for(dovecot, user, security=security, host="localhost", port=port) as provider:
            refs, _, _ = sync_all(provider, "inbox")
            assert subjects(provider, refs) == ["tls"]


def test_tls_with_an_untrusted_certificate_is_permanent(dovecot):
    user, _ = dovecot.new_user()
    settings = ConnectionSettings(host="localhost", port=dovecot.tls_port, security="tls", username=user,
                                  address="127.0.0.1")
    context = ImapContext(tenant_id="t", mailbox_id="m", email="a@example.com", imap=settings,
                              secrets={"password": dovecot.passwords[user]}, timeout=5)
    with pytest.raises(ProviderError) as caught:
        ImapProvider(context).test_connection()  # system trust store: the test CA is unknown
    assert caught.value.code is ErrorCode.PERMANENT and "certificate" in caught.value.detail
    # The right CA but another name: the hostname check fails too.
    with provider_for(dovecot, user, security="tls", host="imap.example.com", port=dovecot.tls_port) as provider:
        with pytest.raises(ProviderError) as caught:
            provider.test_connection()
    assert caught.value.code is ErrorCode.PERMANENT


# ---- SMTP submission (send, test_connection) against a local aiosmtpd ---------------------------------------

def _start_smtp(dovecot, *, implicit_tls: bool) -> SmtpServer:
    """SMTP with AUTH smtp-user / smtp-pass; STARTTLS, or implicit TLS, with the Dovecot test certificate."""
    tls = dovecot.base / "tls"
    return SmtpServer(lambda login, password: (login, password) == ("smtp-user", "smtp-pass"),
                      cert=tls / "cert.pem", key=tls / "key.pem", implicit_tls=implicit_tls)


@pytest.fixture
def smtp_server(dovecot):
    with _start_smtp(dovecot, implicit_tls=False) as server:
        yield server.port, server


@pytest.fixture
def smtps_server(dovecot):
    with _start_smtp(dovecot, implicit_tls=True) as server:
        yield server.port, server


def _smtp_provider(dovecot, user, port, *, password="smtp-pass", security="none"):
    imap = ConnectionSettings(host="127.0.0.1", port=dovecot.port, security="none", username=user)
    smtp = ConnectionSettings(host="localhost", port=port, security=security, username="smtp-user",
                              address="127.0.0.1")
    context = ImapContext(tenant_id="t", mailbox_id="m", email="alice@example.com", imap=imap, smtp=smtp,
                              secrets={"password": dovecot.passwords[user], "smtp_password": password}, timeout=5)
    return ImapProvider(context, ssl_context=dovecot.client_ssl_context())


@pytest.mark.parametrize("security", ["none", "starttls"])
def test_send_submits_the_raw_message_and_returns_its_message_id(dovecot, smtp_server, security):
    port, handler = smtp_server
    user, _ = dovecot.new_user()
    raw = make_message(subject="Offer", from_="alice@example.com", to="bob@example.net",
                       message_id="<offer-1@mailbridge.test>")
    with _smtp_provider(dovecot, user, port, security=security) as provider:
        result = provider.send(raw, sender="alice@example.com", recipients=["bob@example.net"])
    assert result.provider_message_id == "<offer-1@mailbridge.test>"
    [(mail_from, rcpts, content)] = handler.envelopes
    assert (mail_from, rcpts) == ("alice@example.com", ["bob@example.net"])
    assert content.replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")


def test_test_connection_checks_smtp_login_too(dovecot, smtp_server):
    port, handler = smtp_server
    user, _ = dovecot.new_user()
    with _smtp_provider(dovecot, user, port) as provider:
        provider.test_connection()
    with _smtp_provider(dovecot, user, port, password="wrong-smtp-pass") as provider:
        with pytest.raises(ProviderError) as caught:
            provider.test_connection()
    assert caught.value.code is ErrorCode.AUTH_REVOKED and "SMTP" in caught.value.detail
    assert "wrong-smtp-pass" not in str(caught.value)
    assert handler.envelopes == []


def test_send_over_implicit_tls_verifies_the_server(dovecot, smtps_server):
    port, handler = smtps_server
    user, _ = dovecot.new_user()
    raw = make_message(subject="Over TLS", message_id="<tls-1@mailbridge.test>")
    with _smtp_provider(dovecot, user, port, security="tls") as provider:
        assert provider.send(raw, sender="alice@example.com", recipients=["bob@example.net"]).provider_message_id \
            == "<tls-1@mailbridge.test>"
    assert len(handler.envelopes) == 1
