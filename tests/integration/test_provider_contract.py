"""Runs the provider contract (tests/contract/provider_contract.py) against each provider kind: IMAP on a real
Dovecot here; a kind that fails one of its behaviours would break the engine's assumptions."""
from __future__ import annotations

import contextlib
import datetime as dt
from typing import Iterator

import pytest

from chalicelib.providers.base import ConnectionSettings, MailProvider
from chalicelib.providers.imap.adapter import ImapProvider
from chalicelib.providers.imap.context import ImapContext
from tests.contract.provider_contract import CONTRACT, World
from tests.imap_fault_server import ThrottlingImapServer
from tests.mailfactory import make_message

UTC = dt.timezone.utc
RECENT = dt.datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
FOLDERS = {"inbox": "INBOX", "sent": "Sent"}


class DovecotWorld(World):
    since = dt.date(2026, 11, 20)

    def __init__(self, dovecot):
        self.dovecot = dovecot
        self.user, self.password = dovecot.new_user("contract")
        self.uids: dict[str, int] = {}
        self.port = dovecot.port
        dovecot.append(self.user, "Sent", make_message(subject="placeholder", date=RECENT), date=RECENT)
        dovecot.delete(self.user, "Sent", dovecot.uids(self.user, "Sent")[0])

    def _provider(self, password: str) -> MailProvider:
        settings = ConnectionSettings(host="127.0.0.1", port=self.port, security="none", username=self.user,
                                      address="127.0.0.1")
        context = ImapContext(tenant_id="t", mailbox_id="m", email=f"{self.user}@example.com", imap=settings,
                              secrets={"password": password}, timeout=5)
        return ImapProvider(context, ssl_context=self.dovecot.client_ssl_context())

    def provider(self) -> MailProvider:
        return self._provider(self.password)

    def deliver(self, folder: str, subject: str) -> None:
        self.uids[subject] = self.dovecot.append(self.user, FOLDERS[folder], make_message(subject=subject,
                                                                                             date=RECENT), date=RECENT)

    def remove(self, folder: str, subject: str) -> None:
        self.dovecot.delete(self.user, FOLDERS[folder], self.uids.pop(subject))

    def invalidate_cursors(self, folder: str) -> None:
        self.dovecot.recreate_folder(self.user, FOLDERS[folder])

    @contextlib.contextmanager
    def throttled(self) -> Iterator[None]:
        server = ThrottlingImapServer()
        self.port = server.port
        try:
            yield
        finally:
            self.port = self.dovecot.port
            server.close()

    def revoked_provider(self) -> MailProvider:
        return self._provider("not-the-password")


@pytest.mark.parametrize("behaviour", list(CONTRACT))
def test_imap_provider_contract(behaviour, dovecot):
    CONTRACT[behaviour](DovecotWorld(dovecot))
