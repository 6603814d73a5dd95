"""The provider contract: behaviours every mail provider kind must show, whatever its protocol.

A kind takes part by giving a `World` (a real or fake server it can change) and running `CONTRACT` against
it (tests/integration/test_provider_contract.py runs IMAP on a real Dovecot; Gmail and Graph add their
fakes). Each check uses only the `MailProvider` interface, so what the engine relies on is what is tested:
- initial import pages through the mail received since the import date (bounded pages, `has_more`);
- an idle call returns nothing new and a cursor that means the same;
- new mail and removed mail show up after the cursor;
- an invalidated cursor raises CURSOR_INVALID (the engine's bounded resync);
- a message that vanished between listing and fetching is reported per item (`vanished`) or by NOT_FOUND
  (the engine then fetches one by one);
- a rate limit raises THROTTLED (never TEMPORARY: it must not dead-letter a mailbox);
- refused credentials raise AUTH_REVOKED.
"""
from __future__ import annotations

import abc
import contextlib
from datetime import date
from typing import Callable

import pytest

from chalicelib.providers.base import ErrorCode, MailProvider, MessageRef, ProviderError

PAGE = 2


class World(abc.ABC):
    """A mailbox on a server the test controls."""
    since: date

    @abc.abstractmethod
    def provider(self) -> MailProvider: ...

    @abc.abstractmethod
    def deliver(self, folder: str, subject: str) -> None:
        """Put a message dated inside the import window into `folder` ("inbox" | "sent")."""

    @abc.abstractmethod
    def remove(self, folder: str, subject: str) -> None: ...

    @abc.abstractmethod
    def invalidate_cursors(self, folder: str) -> None:
        """Make the server forget what existing cursors refer to (new UIDVALIDITY, expired history, 410)."""

    @abc.abstractmethod
    def throttled(self) -> contextlib.AbstractContextManager[None]:
        """Inside the block, the server rate-limits this mailbox."""

    @abc.abstractmethod
    def revoked_provider(self) -> MailProvider:
        """A provider for this mailbox whose credentials the server refuses."""


def drain(provider: MailProvider, folder: str, cursor: str | None, since: date,
          page_size: int = 100) -> tuple[list[MessageRef], list[str], str]:
    refs, removed = [], []
    while True:
        change_set = provider.changes(folder, cursor, since=since, page_size=page_size)
        assert len(change_set.new) + len(change_set.changed) <= page_size
        refs.extend(change_set.new)
        refs.extend(change_set.changed)   # the engine fetches the unknown ones (Graph delta: new and changed alike)
        removed.extend(change_set.removed)
        cursor = change_set.next_cursor
        if not change_set.has_more:
            return refs, removed, cursor


def subjects(provider: MailProvider, refs: list[MessageRef]) -> set[str]:
    found = set()
    for fetched in provider.fetch(refs, max_bytes=10_000_000):
        assert fetched.raw is not None, fetched
        header = fetched.raw.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ")
        for line in header.split(b"\r\n"):
            if line.lower().startswith(b"subject:"):
                found.add(line.split(b":", 1)[1].strip().decode())
    return found


def check_initial_import_pages(world: World) -> None:
    for n in range(3):
        world.deliver("inbox", f"initial-{n}")
    world.deliver("sent", "initial-sent")
    with world.provider() as provider:
        assert {"inbox", "sent"} <= set(provider.folders())
        first = provider.changes("inbox", None, since=world.since, page_size=PAGE)
        assert len(first.new) == PAGE and first.has_more
        rest, _, _ = drain(provider, "inbox", first.next_cursor, world.since)
        refs = list(first.new) + rest
        assert len({ref.provider_id for ref in refs}) == 3
        assert subjects(provider, refs) == {"initial-0", "initial-1", "initial-2"}
        sent, _, _ = drain(provider, "sent", None, world.since)
        assert subjects(provider, sent) == {"initial-sent"}


def check_idle_returns_nothing(world: World) -> None:
    world.deliver("inbox", "idle-0")
    with world.provider() as provider:
        _, _, cursor = drain(provider, "inbox", None, world.since)
        again = provider.changes("inbox", cursor, since=world.since, page_size=PAGE)
        assert (again.new, again.removed, again.changed, again.has_more) == ((), (), (), False)
        assert drain(provider, "inbox", again.next_cursor, world.since)[:2] == ([], [])


def check_new_mail_after_the_cursor(world: World) -> None:
    world.deliver("inbox", "before")
    with world.provider() as provider:
        _, _, cursor = drain(provider, "inbox", None, world.since)
    world.deliver("inbox", "after")
    with world.provider() as provider:
        refs, _, _ = drain(provider, "inbox", cursor, world.since)
        assert subjects(provider, refs) == {"after"}


def check_removal_after_the_cursor(world: World) -> None:
    world.deliver("inbox", "keep")
    world.deliver("inbox", "gone")
    with world.provider() as provider:
        refs, _, cursor = drain(provider, "inbox", None, world.since)
        ids = {subject: ref.provider_id for ref in refs for subject in subjects(provider, [ref])}
    world.remove("inbox", "gone")
    with world.provider() as provider:
        new, removed, _ = drain(provider, "inbox", cursor, world.since)
        assert new == [] and removed == [ids["gone"]]


def check_invalid_cursor(world: World) -> None:
    world.deliver("inbox", "epoch")
    with world.provider() as provider:
        _, _, cursor = drain(provider, "inbox", None, world.since)
    world.invalidate_cursors("inbox")
    with world.provider() as provider, pytest.raises(ProviderError) as caught:
        drain(provider, "inbox", cursor, world.since)
    assert caught.value.code is ErrorCode.CURSOR_INVALID


def check_vanished_item(world: World) -> None:
    world.deliver("inbox", "stays")
    world.deliver("inbox", "vanishes")
    with world.provider() as provider:
        refs, _, _ = drain(provider, "inbox", None, world.since)
        by_subject = {subject: ref for ref in refs for subject in subjects(provider, [ref])}
    world.remove("inbox", "vanishes")
    with world.provider() as provider:
        try:
            results = list(provider.fetch([by_subject["vanishes"], by_subject["stays"]], max_bytes=10_000_000))
        except ProviderError as exc:       # a provider that cannot tell which: the engine fetches one by one
            assert exc.code is ErrorCode.NOT_FOUND
            with pytest.raises(ProviderError) as caught:
                list(provider.fetch([by_subject["vanishes"]], max_bytes=10_000_000))
            assert caught.value.code is ErrorCode.NOT_FOUND
        else:
            gone = [r for r in results if r.ref.provider_id == by_subject["vanishes"].provider_id]
            assert gone and gone[0].vanished and gone[0].raw is None
        assert subjects(provider, [by_subject["stays"]]) == {"stays"}


def check_throttled(world: World) -> None:
    world.deliver("inbox", "throttle")
    with world.throttled(), pytest.raises(ProviderError) as caught:
        with world.provider() as provider:
            drain(provider, "inbox", None, world.since)
    assert caught.value.code is ErrorCode.THROTTLED
    assert caught.value.retry_after is not None and caught.value.retry_after > 0


def check_auth_revoked(world: World) -> None:
    with pytest.raises(ProviderError) as caught:
        with world.revoked_provider() as provider:
            provider.test_connection()
    assert caught.value.code is ErrorCode.AUTH_REVOKED


CONTRACT: dict[str, Callable[[World], None]] = {
    "initial import pages": check_initial_import_pages,
    "idle": check_idle_returns_nothing,
    "new mail": check_new_mail_after_the_cursor,
    "removal": check_removal_after_the_cursor,
    "cursor invalid": check_invalid_cursor,
    "per-item vanished": check_vanished_item,
    "throttled": check_throttled,
    "auth revoked": check_auth_revoked,
}
