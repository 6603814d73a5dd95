"""Guards the Dovecot test harness itself: a broken fixture would make every IMAP test meaningless."""
from __future__ import annotations

import datetime as dt

from imapclient import IMAPClient

from tests.mailfactory import make_message


def test_append_flags_delete_and_snapshot(dovecot):
    user, _ = dovecot.new_user()
    raw = make_message(subject="Harness", date=dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.timezone.utc))
    uid = dovecot.append(user, "INBOX", raw, flags=["\\Flagged"])
    dovecot.append(user, "Sent", make_message(subject="Out"), flags=["\\Seen"])
    assert dovecot.uids(user, "INBOX") == [uid]
    assert dovecot.flags(user, "INBOX") == {uid: ("\\Flagged",)}
    snap = dovecot.snapshot(user)
    assert snap["INBOX"][uid] == (("\\Flagged",), raw)
    assert dovecot.snapshot(user) == snap  # reading is side-effect free (BODY.PEEK)
    dovecot.delete(user, "INBOX", uid)
    assert dovecot.uids(user, "INBOX") == []


def test_recreate_folder_changes_uidvalidity_and_keeps_messages(dovecot):
    user, _ = dovecot.new_user()
    dovecot.append(user, "INBOX", make_message(subject="kept"), flags=["\\Seen"])
    before = dovecot.status(user, "INBOX")
    new_validity = dovecot.recreate_folder(user, "INBOX")
    after = dovecot.status(user, "INBOX")
    assert after["UIDVALIDITY"] == new_validity != before["UIDVALIDITY"]
    assert after["MESSAGES"] == 1
    assert list(dovecot.flags(user, "INBOX").values()) == [("\\Seen",)]


def test_users_are_isolated_and_tls_port_verifies_with_the_test_ca(dovecot):
    alice, alice_pw = dovecot.new_user()
    bob, _ = dovecot.new_user()
    dovecot.append(alice, "INBOX", make_message())
    assert dovecot.uids(bob, "INBOX") == []
    client = IMAPClient("localhost", port=dovecot.tls_port, ssl=True, ssl_context=dovecot.client_ssl_context(),
                        timeout=5)
    try:
        client.login(alice, alice_pw)
        names = {name: flags for flags, _sep, name in client.list_folders()}
        assert b"\\Sent" in names["Sent"]
    finally:
        client.logout()
