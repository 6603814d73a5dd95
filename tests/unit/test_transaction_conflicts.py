"""Guards the inserts and the tenant's privacy item against DynamoDB transaction conflicts: every insert of a
tenant's mail checks the tenant's privacy item in its transaction, so inserts of many mailboxes — and an erasure
being counted — overlap on it, and DynamoDB cancels one of them with `TransactionConflict` (or refuses a plain
update with `TransactionConflictException`). botocore does not retry either; `models.conflicts.retry_conflicts`
does. moto never conflicts: `tests/dynamo_conflicts.py` injects them under the real PynamoDB code."""
from __future__ import annotations

import collections

import pytest
from botocore.exceptions import ClientError
from pynamodb.exceptions import CancellationReason, TransactWriteError, UpdateError, VerboseClientError

from chalicelib.models import conflicts
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.models.privacy import TENANT_SCOPE, PrivacyList
from chalicelib.privacy import lists
from chalicelib.providers.base import FetchedMessage, MessageRef
from chalicelib.sync import store, store_page
from tests.mailfactory import make_message
from tests.unit.test_sharing_matrix import make_world  # noqa: F401 - the fixture that builds a tenant's world


def _mailbox(world) -> Mailbox:
    return Mailbox.get(world["tenant"]["id"], world["mailbox"].mailbox_id)


def _subjects(mailbox: Mailbox) -> collections.Counter:
    return collections.Counter(m.subject for m in Message.by_mailbox.query(mailbox.mailbox_id))


def test_one_message_is_stored_once_through_conflicts(api, make_world, aws, conflicts_ahead):  # noqa: F811
    mailbox = _mailbox(make_world("personal"))
    before = _subjects(mailbox)
    conflicts_ahead("TransactWriteItems", 3)

    outcome = store.save_fetched(mailbox, FetchedMessage(MessageRef("inbox", "81"), make_message(subject="Busy")))

    assert outcome.created and outcome.message.skipped_reason is None
    assert _subjects(mailbox) - before == collections.Counter(["Busy"])


def test_a_page_is_stored_once_with_exact_counts_through_conflicts(api, make_world, aws, conflicts_ahead):  # noqa: F811
    mailbox = _mailbox(make_world("personal"))
    before, subjects = int(mailbox.imported_count or 0), _subjects(mailbox)
    page = [FetchedMessage(MessageRef("inbox", str(uid)), make_message(subject=f"Page {uid}")) for uid in (91, 92)]
    conflicts_ahead("TransactWriteItems", 2)

    outcomes = store_page.save_page(mailbox, page)

    assert [o.message.skipped_reason for o in outcomes] == [None, None]
    assert _subjects(mailbox) - subjects == collections.Counter(["Page 91", "Page 92"])
    assert int(Mailbox.get(mailbox.tenant_id, mailbox.mailbox_id).imported_count or 0) == before + 2


def test_an_erasure_is_counted_exactly_once_through_a_conflict(api, make_world, aws, conflicts_ahead):  # noqa: F811
    """An uncounted erasure would leave the store with its cached erased people: the person's mail stored again."""
    tenant_id = make_world("personal")["tenant"]["id"]
    conflicts_ahead("UpdateItem", 2)

    lists.count_erasure(tenant_id)

    assert int(PrivacyList.get(tenant_id, TENANT_SCOPE).erasures) == 1


def test_a_privacy_list_change_goes_through_a_conflict(api, make_world, aws, conflicts_ahead):  # noqa: F811
    tenant_id = make_world("personal")["tenant"]["id"]
    conflicts_ahead("UpdateItem", 1)

    saved = lists.put_list(tenant_id, TENANT_SCOPE, ["@spam.example"], [])

    assert list(saved.never_import) == ["@spam.example"]


def test_conflicts_are_sent_again_a_bounded_number_of_times_and_nothing_else_is():
    calls: list[str] = []
    slept: list[float] = []

    def conflict():
        calls.append("conflict")
        raise UpdateError("refused", ClientError({"Error": {"Code": "TransactionConflictException"}}, "UpdateItem"))

    with pytest.raises(UpdateError):
        conflicts.retry_conflicts(conflict, sleep=slept.append)
    assert len(calls) == len(conflicts.CONFLICT_DELAYS) + 1
    assert [round(s, 3) >= d for s, d in zip(slept, conflicts.CONFLICT_DELAYS)] == [True] * len(slept)

    def condition_failed():
        calls.append("condition")
        raise TransactWriteError("cancelled", VerboseClientError(
            {"Error": {"Code": "TransactionCanceledException"}}, "TransactWriteItems",
            cancellation_reasons=[CancellationReason(code="ConditionalCheckFailed")]))

    calls.clear()
    with pytest.raises(TransactWriteError):
        conflicts.retry_conflicts(condition_failed, sleep=slept.append)
    assert calls == ["condition"]                   # a failed condition is an answer, not a conflict
