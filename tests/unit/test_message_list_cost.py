"""Guards against message lists reading each listed message's links on its own (N+1 DynamoDB queries)."""
from __future__ import annotations

import datetime as dt

import pytest

from chalicelib.messages import views
from chalicelib.models.message import Message
from chalicelib.pairing import store as link_store
from chalicelib.pairing.links import links_for_message, links_for_messages
from chalicelib.providers.base import FetchedMessage, MessageRef
from chalicelib.sync import store
from tests.mailfactory import make_message
from tests.sync_helpers import by_operation_and_table, dynamodb_calls
from tests.unit.test_message_store import make_mailbox

DAY = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def page_of_linked_messages(tenant):
    mailbox = make_mailbox(tenant["id"], "mbx_cost", owner_user_id="u-alice")
    other = make_mailbox(tenant["id"], "mbx_other", owner_user_id="u-alice")
    messages = []
    for i in range(100):
        raw = make_message(date=DAY + dt.timedelta(minutes=i), subject=f"m{i}", message_id=f"<cost-{i}@x.example>")
        message = store.save_fetched(mailbox, FetchedMessage(MessageRef("inbox", str(i)), raw)).message
        link_store.write_link(message, link_store.LinkSpec("company", f"c-{i % 7}", "auto", "sender domain",
                                                           "matcher:company"))
        if i % 3 == 0:
            link_store.write_link(message, link_store.LinkSpec("contact", f"p-{i}", "auto", "sender address",
                                                               "matcher:contact"))
        messages.append(message)
    # a message of another mailbox linked to the same record (the record's e-mails tab spans mailboxes)
    raw = make_message(date=DAY, subject="elsewhere", message_id="<elsewhere@x.example>")
    elsewhere = store.save_fetched(other, FetchedMessage(MessageRef("inbox", "1"), raw)).message
    link_store.write_link(elsewhere, link_store.LinkSpec("company", "c-0", "auto", "sender domain", "matcher:company"))
    return mailbox, messages


def test_a_page_of_100_linked_messages_costs_at_most_3_dynamodb_calls(api, tenant, page_of_linked_messages):
    mailbox, messages = page_of_linked_messages
    assert api("GET", "/v1/mailboxes", key=tenant["key"]).status == 200    # a warm API process (auth_cache)
    with dynamodb_calls(by_operation_and_table) as calls:
        result = api("GET", "/v1/mailboxes/mbx_cost/messages?limit=100", key=tenant["key"])
    assert result.status == 200, result
    assert sum(calls.values()) <= 3, dict(calls)        # the mailbox, the page, the page's links
    items = result.json["items"]
    assert len(items) == 100
    assert all(item["links"] for item in items)
    for item in items[:10]:
        assert item["links"] == links_for_message(Message.get(item["id"]))      # same as one by one
    first = next(i for i in items if i["subject"] == "m99")
    assert first["links"] == [{"type": "company", "id": "c-1", "source": "auto", "reason": "sender domain"},
                              {"type": "contact", "id": "p-99", "source": "auto", "reason": "sender address"}]


def test_page_links_match_per_message_links_after_unpairing_and_hiding(tenant, page_of_linked_messages):
    _, messages = page_of_linked_messages
    fresh = [Message.get(m.message_id) for m in messages]
    link_store.remove_link(fresh[3], "contact", "p-3", "user:u-alice", "wrong person")
    fresh[4].update(actions=[Message.hidden.set(True)])
    page = [Message.get(m.message_id) for m in messages[:50]]
    batched = links_for_messages(page)
    assert batched == {m.message_id: links_for_message(m) for m in page}
    assert [link["id"] for link in batched[messages[3].message_id]] == ["c-3"]


def test_the_record_emails_tab_reads_links_once_per_mailbox(api, tenant, page_of_linked_messages):
    created = api("POST", "/v1/directory/batch", key=tenant["key"], json_body={"records": [
        {"type": "company", "id": "c-0", "name": "Zero", "emails": ["zero@zero.example"], "readers": ["*"]}]})
    assert created.status == 200, created
    with dynamodb_calls(by_operation_and_table) as calls:
        result = api("GET", "/v1/directory/company/c-0/messages", key=tenant["key"])
    assert result.status == 200, result
    items = result.json["items"]
    assert {i["mailbox_id"] for i in items} == {"mbx_cost", "mbx_other"} and len(items) == 16
    link_queries = {name: n for name, n in calls.items() if name.startswith("Query:") and "message_links" in name}
    assert sum(link_queries.values()) <= 3, link_queries    # the record's page + one per mailbox, not per message
    assert all({"type": "company", "id": "c-0", "source": "auto", "reason": "sender domain"} in i["links"]
               for i in items)


def test_a_listed_message_is_the_summary_of_the_whole_item(api, tenant, page_of_linked_messages):
    """Guards the listing's projection: a summary field missing from SUMMARY_ATTRIBUTES would list as empty."""
    mailbox, messages = page_of_linked_messages
    fresh = Message.get(messages[5].message_id)
    fresh.update(actions=[Message.unread.set(True), Message.cc.set([{"name": "C", "email": "c@x.example"}]),
                          Message.removed_at_source.set("2026-11-30T00:00:00Z")])
    listed = api("GET", "/v1/mailboxes/mbx_cost/messages?limit=100", key=tenant["key"]).json["items"]
    for item in listed:
        whole = Message.get(item["id"])
        assert item == views.summary(whole, show_snippet=True, links=item["links"])
    assert next(i for i in listed if i["id"] == fresh.message_id)["unread"] is True
