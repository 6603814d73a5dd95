"""Runs the provider contract (tests/contract/provider_contract.py) against the Gmail provider on the fake
Google, through the real googleapiclient and google-auth."""
from __future__ import annotations

import contextlib
import datetime as dt
from typing import Iterator

import pytest

from chalicelib.providers.base import MailProvider
from tests.contract.provider_contract import CONTRACT, World
from tests.gmail_fixtures import EMAIL, days_ago, gmail_provider, make_gmail_mailbox
from tests.sync_helpers import reload

LABELS = {"inbox": ("INBOX",), "sent": ("SENT",)}


class GmailWorld(World):
    since = days_ago(7).date()

    def __init__(self, fake):
        self.fake = fake
        self.mailbox = make_gmail_mailbox(fake, import_since=self.since.isoformat())
        self.ids: dict[str, str] = {}

    def provider(self) -> MailProvider:
        return gmail_provider(reload(self.mailbox))

    def deliver(self, folder: str, subject: str) -> None:
        raw = (f"From: Jan <jan@acme.example>\r\nTo: {EMAIL}\r\nSubject: {subject}\r\n"
               f"Date: Mon, 30 Nov 2026 09:00:00 +0000\r\nMessage-ID: <{subject}@acme.example>\r\n\r\nHi\r\n")
        self.ids[subject] = self.fake.deliver(EMAIL, raw.encode(), labels=LABELS[folder],
                                              received=dt.datetime.now(dt.timezone.utc))

    def remove(self, folder: str, subject: str) -> None:
        self.fake.delete(EMAIL, self.ids.pop(subject))

    def invalidate_cursors(self, folder: str) -> None:
        self.fake.forget_history(EMAIL)

    @contextlib.contextmanager
    def throttled(self) -> Iterator[None]:
        for endpoint in ("messages.list", "history.list"):
            self.fake.fail(endpoint, 429, retry_after=120, times=100)
        yield

    def revoked_provider(self) -> MailProvider:
        self.fake.revoke(EMAIL)
        return self.provider()


@pytest.mark.parametrize("behaviour", list(CONTRACT))
def test_gmail_provider_contract(behaviour, aws, google):
    CONTRACT[behaviour](GmailWorld(google))
