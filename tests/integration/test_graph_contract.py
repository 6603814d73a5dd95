"""Runs the provider contract (tests/contract/provider_contract.py) against the Graph provider on the fake
Microsoft, through real MSAL and requests."""
from __future__ import annotations

import contextlib
import datetime as dt
from typing import Iterator

import pytest

from chalicelib.credentials.store import CredentialStore
from chalicelib.providers.base import MailProvider
from chalicelib.providers.kinds import provider_for
from tests.contract.provider_contract import CONTRACT, World
from tests.graph_helpers import ADDRESS, outlook_mailbox
from tests.sync_helpers import reload

FOLDERS = {"inbox": "inbox", "sent": "sentitems"}


class GraphWorld(World):
    since = dt.date(2026, 11, 20)

    def __init__(self, fake):
        self.fake = fake
        self.mailbox = outlook_mailbox(fake, import_since=self.since.isoformat())
        self.ids: dict[str, str] = {}

    def provider(self) -> MailProvider:
        mailbox = reload(self.mailbox)
        return provider_for(mailbox, CredentialStore(mailbox.tenant_id, mailbox.mailbox_id).decode(mailbox))

    def deliver(self, folder: str, subject: str) -> None:
        raw = (f"From: Jan <jan@acme.example>\r\nTo: {ADDRESS}\r\nSubject: {subject}\r\n"
               f"Date: Sat, 21 Nov 2026 09:00:00 +0000\r\nMessage-ID: <{subject}@acme.example>\r\n\r\nHi\r\n")
        self.ids[subject] = self.fake.mail.add_message(ADDRESS, FOLDERS[folder], raw.encode())

    def remove(self, folder: str, subject: str) -> None:
        self.fake.mail.remove_message(ADDRESS, self.ids.pop(subject))

    def invalidate_cursors(self, folder: str) -> None:
        self.fake.mail.drop_sync_state(ADDRESS, FOLDERS[folder])

    @contextlib.contextmanager
    def throttled(self) -> Iterator[None]:
        self.fake.throttle(status=429, retry_after=120, times=100)
        try:
            yield
        finally:
            self.fake.clear_injected()

    def revoked_provider(self) -> MailProvider:
        self.fake.identity.revoke(ADDRESS)
        return self.provider()


@pytest.mark.parametrize("behaviour", list(CONTRACT))
def test_graph_provider_contract(behaviour, aws, fake_ms):
    CONTRACT[behaviour](GraphWorld(fake_ms))
