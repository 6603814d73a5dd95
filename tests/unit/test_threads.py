"""Guards against conversations that split one thread (across folders, mailboxes, broken References, provider
thread ids), join unrelated mail (identical subjects between strangers), count a message twice on redelivery,
keep removed messages, or show a caller messages of a thread they could not open."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from chalicelib.erasure.delete import delete_messages
from chalicelib.models.conversation import ThreadEntry, ThreadKey
from chalicelib.models.mailbox import MailboxShare
from chalicelib.models.message import Message
from chalicelib.models.search import SearchPosting
from chalicelib.notify import events, notifier
from chalicelib.pairing import directory, manual
from chalicelib.providers.base import FetchedMessage, MessageRef
from chalicelib.sync import store
from chalicelib.sync.effects import created_event
from chalicelib.threads import derived
from chalicelib.timeutil import now_iso
from tests.mailfactory import make_message
from tests.unit.test_message_store import make_mailbox

DAY = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.timezone.utc)
_uid = iter(range(1, 10_000))


def save(mailbox, *, folder="inbox", days=0, thread_id=None, **kwargs) -> Message:
    raw = make_message(date=DAY + dt.timedelta(days=days), **kwargs)
    ref = MessageRef(folder, f"1:{next(_uid)}", thread_id=thread_id)
    return store.save_fetched(mailbox, FetchedMessage(ref, raw)).message


def settle(*messages: Message) -> list[Message]:
    derived.remember(messages[0].tenant_id, [m.message_id for m in messages])
    return [Message.get(m.message_id) for m in messages]


def entry(mailbox_id: str, conversation_id: str) -> ThreadEntry:
    return ThreadEntry.get(mailbox_id, conversation_id)


@pytest.fixture
def alice(tenant):
    return make_mailbox(tenant["id"], "mbx_alice", email="alice@acme-crm.example", owner_user_id="u-alice",
                        show_snippet=True)


def test_a_reply_chain_across_inbox_and_sent_is_one_conversation(api, tenant, alice):
    root = save(alice, message_id="<root@customer.example>", subject="Offer", from_="jan@customer.example",
                to="alice@acme-crm.example")
    reply = save(alice, folder="sent", days=1, message_id="<r1@acme-crm.example>", subject="Re: Offer",
                 from_="alice@acme-crm.example", to="jan@customer.example", in_reply_to="<root@customer.example>",
                 references=["<root@customer.example>"])
    answer = save(alice, days=2, message_id="<r2@customer.example>", subject="Re: Offer",
                  from_="Jan <jan@customer.example>", to="alice@acme-crm.example", body="Deal.\n",
                  in_reply_to="<r1@acme-crm.example>",
                  references=["<root@customer.example>", "<r1@acme-crm.example>"])
    root, reply, answer = settle(root, reply, answer)
    assert root.conversation_id == reply.conversation_id == answer.conversation_id
    listed = api("GET", "/v1/threads?mailbox_id=mbx_alice", key=tenant["key"])
    assert listed.status == 200, listed
    [thread] = listed.json["items"]
    assert thread["id"] == root.conversation_id and thread["message_count"] == 3
    assert thread["latest"]["id"] == answer.message_id and thread["latest"]["snippet"] == "Deal."
    assert {p["email"] for p in thread["participants"]} == {"jan@customer.example", "alice@acme-crm.example"}
    assert thread["unread"] is None and thread["last_activity"] == answer.date
    detail = api("GET", f"/v1/threads/{root.conversation_id}", key=tenant["key"])
    assert [m["id"] for m in detail.json["items"]] == [root.message_id, reply.message_id, answer.message_id]


def test_broken_references_still_join_through_in_reply_to(tenant, alice):
    root = save(alice, message_id="<a@customer.example>", subject="Quote", from_="jan@customer.example")
    child = save(alice, days=1, message_id="<b@customer.example>", subject="Re: Quote", from_="jan@customer.example",
                 in_reply_to="<a@customer.example>", references=["<a@customer.example>"])
    # a client that dropped References and kept only In-Reply-To, pointing at the middle of the thread
    grandchild = save(alice, days=2, message_id="<c@customer.example>", subject="Re: Quote",
                      from_="jan@customer.example", in_reply_to="<b@customer.example>")
    root, child = settle(root, child)
    [grandchild] = settle(grandchild)
    assert grandchild.conversation_id == root.conversation_id == child.conversation_id
    assert entry("mbx_alice", root.conversation_id).message_count == 3


def test_a_child_processed_before_its_parent_joins_it(tenant, alice):
    """Intact References give the same id without lookups, in either order."""
    child = save(alice, days=1, message_id="<y@customer.example>", subject="Re: Plan",
                 in_reply_to="<x@customer.example>", references=["<x@customer.example>"])
    [child] = settle(child)
    parent = save(alice, message_id="<x@customer.example>", subject="Plan")
    [parent] = settle(parent)
    assert parent.conversation_id == child.conversation_id


def test_identical_subjects_between_strangers_never_join(tenant, alice):
    first = save(alice, subject="Invoice", from_="anna@one.example", to="alice@acme-crm.example")
    second = save(alice, days=1, subject="Invoice", from_="boris@two.example", to="alice@acme-crm.example")
    stranger_reply = save(alice, days=2, subject="Re: Invoice", from_="cyril@three.example",
                          to="alice@acme-crm.example")
    first, second, stranger_reply = settle(first, second, stranger_reply)
    assert len({first.conversation_id, second.conversation_id, stranger_reply.conversation_id}) == 3


def test_a_reply_without_references_joins_by_subject_and_participant_within_the_window(tenant, alice):
    sent = save(alice, folder="sent", subject="Contract draft", from_="alice@acme-crm.example",
                to="anna@one.example")
    [sent] = settle(sent)
    reply = save(alice, days=3, subject="RE: Contract  draft", from_="Anna <anna@one.example>",
                 to="alice@acme-crm.example")
    late = save(alice, days=45, subject="Re: Contract draft", from_="anna@one.example", to="alice@acme-crm.example")
    no_prefix = save(alice, days=4, subject="Contract draft", from_="anna@one.example", to="alice@acme-crm.example")
    reply, late, no_prefix = settle(reply, late, no_prefix)
    assert reply.conversation_id == sent.conversation_id
    assert late.conversation_id != sent.conversation_id           # outside the 30-day window
    assert no_prefix.conversation_id != sent.conversation_id      # not a reply: a new conversation


@pytest.mark.parametrize("kind", ["gmail threadId", "graph conversationId"])
def test_provider_thread_ids_join_messages_without_references(tenant, alice, kind):
    one = save(alice, subject="Lunch?", from_="anna@one.example", thread_id="T-1")
    two = save(alice, days=1, subject="Completely different", from_="boris@two.example", thread_id="T-1")
    other = save(alice, days=1, subject="Lunch?", from_="anna@one.example", thread_id="T-2")
    one, two, other = settle(one, two, other)
    assert one.conversation_id == two.conversation_id != other.conversation_id
    assert entry("mbx_alice", one.conversation_id).message_count == 2


def test_the_same_message_in_two_mailboxes_is_one_conversation_each_copy_per_access(api, tenant, alice):
    bob = make_mailbox(tenant["id"], "mbx_bob", email="bob@acme-crm.example", owner_user_id="u-bob")
    raw_kwargs = dict(message_id="<shared@customer.example>", subject="Tender", from_="jan@customer.example",
                      to=["alice@acme-crm.example", "bob@acme-crm.example"])
    copy_a = save(alice, **raw_kwargs)
    copy_b = save(bob, **raw_kwargs)
    reply_b = save(bob, folder="sent", days=1, message_id="<bob-reply@acme-crm.example>", subject="Re: Tender",
                   from_="bob@acme-crm.example", to="jan@customer.example",
                   in_reply_to="<shared@customer.example>", references=["<shared@customer.example>"])
    [copy_a] = settle(copy_a)
    copy_b, reply_b = settle(copy_b, reply_b)
    conversation = copy_a.conversation_id
    assert copy_b.conversation_id == reply_b.conversation_id == conversation
    assert entry("mbx_alice", conversation).message_count == 1
    assert entry("mbx_bob", conversation).message_count == 2

    def ids(user):
        answer = api("GET", f"/v1/threads/{conversation}", key=tenant["key"], user=user)
        return answer.status, sorted(m["id"] for m in (answer.json.get("items") or []))
    assert ids(None) == (200, sorted([copy_a.message_id, copy_b.message_id, reply_b.message_id]))
    assert ids("u-alice") == (200, [copy_a.message_id])
    assert ids("u-bob") == (200, sorted([copy_b.message_id, reply_b.message_id]))
    assert ids("u-carol")[0] == 404
    MailboxShare(alice.mailbox_id, "u-carol", tenant_id=tenant["id"], user_key=f"{tenant['id']}#u-carol",
                 access="read", created_at=now_iso()).save()
    assert ids("u-carol") == (200, [copy_a.message_id])
    # every message listed can be opened by the same caller
    for user in ("u-alice", "u-bob", "u-carol"):
        for message_id in ids(user)[1]:
            assert api("GET", f"/v1/messages/{message_id}", key=tenant["key"], user=user).status == 200
    listed = api("GET", "/v1/threads?mailbox_id=mbx_bob", key=tenant["key"], user="u-alice")
    assert listed.status == 404


def test_redelivery_counts_each_message_once(tenant, alice):
    one = save(alice, message_id="<p@customer.example>", subject="Once")
    two = save(alice, days=1, message_id="<q@customer.example>", subject="Re: Once",
               in_reply_to="<p@customer.example>", references=["<p@customer.example>"])
    for _ in range(3):
        derived.remember(tenant["id"], [one.message_id, two.message_id])
    one = Message.get(one.message_id)
    assert entry("mbx_alice", one.conversation_id).message_count == 2


def test_the_notifier_threads_and_indexes_a_pages_events_and_a_redelivery_changes_nothing(tenant, alice):
    one = save(alice, message_id="<n1@customer.example>", subject="Pallets", from_="jan@customer.example")
    two = save(alice, days=1, message_id="<n2@customer.example>", subject="Re: Pallets",
               in_reply_to="<n1@customer.example>", references=["<n1@customer.example>"])
    body = {"kind": events.EVENTS_KIND, "tenant_id": tenant["id"],
            "events": [events.event_body(created_event(m)) for m in (one, two)]}

    class Record:
        message_id = "sqs-1"
        def __init__(self):
            self.body = json.dumps(body)
    assert notifier.consume(Record()) == "consumed"
    assert notifier.consume(Record()) == "consumed"
    one = Message.get(one.message_id)
    assert one.thread_counted and entry("mbx_alice", one.conversation_id).message_count == 2
    assert SearchPosting.get(f"{tenant['id']}#pallets", f"{one.date}#{one.message_id}")


def test_removal_at_the_source_leaves_the_thread_and_the_index(api, tenant, alice):
    one = save(alice, message_id="<k1@customer.example>", subject="Samples")
    two = save(alice, days=1, message_id="<k2@customer.example>", subject="Re: Samples",
               in_reply_to="<k1@customer.example>", references=["<k1@customer.example>"])
    one, two = settle(one, two)
    conversation = one.conversation_id
    assert store.mark_removed(alice, "inbox", [two.provider_id]) == 1
    after = Message.get(two.message_id)
    assert after.conversation_id is None and not after.thread_counted
    remaining = entry("mbx_alice", conversation)
    assert remaining.message_count == 1 and remaining.latest_message_id == one.message_id
    assert not list(SearchPosting.query(f"{tenant['id']}#doc#{two.message_id}"))
    assert api("GET", "/v1/messages/search?q=samples", key=tenant["key"]).json["items"][0]["id"] == one.message_id
    detail = api("GET", f"/v1/threads/{conversation}", key=tenant["key"])
    assert [m["id"] for m in detail.json["items"]] == [one.message_id]
    store.mark_removed(alice, "inbox", [one.provider_id])
    with pytest.raises(ThreadEntry.DoesNotExist):
        entry("mbx_alice", conversation)
    assert api("GET", "/v1/threads?mailbox_id=mbx_alice", key=tenant["key"]).json["items"] == []


def test_a_message_deleted_in_the_crm_leaves_its_conversation_list_entry(api, tenant, alice):
    """Guards the mailbox's conversation list against still counting, showing as latest or naming the sender
    of a message the CRM deleted (hidden: it is gone from every other listing)."""
    one = save(alice, message_id="<d1@customer.example>", subject="Prices", from_="jan@customer.example",
               to="alice@acme-crm.example")
    two = save(alice, days=1, message_id="<d2@other.example>", subject="Re: Prices", body="Secret terms.\n",
               from_="piet@other.example", to="alice@acme-crm.example", in_reply_to="<d1@customer.example>",
               references=["<d1@customer.example>"])
    one, two = settle(one, two)
    [before] = api("GET", "/v1/threads?mailbox_id=mbx_alice", key=tenant["key"]).json["items"]
    assert before["message_count"] == 2 and before["latest"]["id"] == two.message_id

    assert api("DELETE", f"/v1/messages/{two.message_id}", key=tenant["key"]).status == 204
    [after] = api("GET", "/v1/threads?mailbox_id=mbx_alice", key=tenant["key"]).json["items"]
    assert after["message_count"] == 1 and after["latest"]["id"] == one.message_id
    assert "piet@other.example" not in {p["email"] for p in after["participants"]}
    hidden = Message.get(two.message_id)
    assert hidden.hidden and not hidden.thread_counted and hidden.conversation_id is None
    settle(hidden)                                               # a redelivered event does not count it again
    assert entry("mbx_alice", one.conversation_id).message_count == 1
    detail = api("GET", f"/v1/threads/{one.conversation_id}", key=tenant["key"])
    assert [m["id"] for m in detail.json["items"]] == [one.message_id]

    assert api("DELETE", f"/v1/messages/{one.message_id}", key=tenant["key"]).status == 204
    assert api("GET", "/v1/threads?mailbox_id=mbx_alice", key=tenant["key"]).json["items"] == []


def test_a_message_deleted_before_it_was_threaded_is_never_counted(api, tenant, alice):
    message = save(alice, message_id="<early@customer.example>", subject="Early")
    assert api("DELETE", f"/v1/messages/{message.message_id}", key=tenant["key"]).status == 204
    [stored] = settle(message)
    assert stored.hidden and not stored.thread_counted
    assert api("GET", "/v1/threads?mailbox_id=mbx_alice", key=tenant["key"]).json["items"] == []


def test_thread_list_pages_newest_activity_first(api, tenant, alice):
    for n in range(5):
        settle(save(alice, days=n, subject=f"Topic {n}", from_=f"p{n}@customer.example"))
    first = api("GET", "/v1/threads?mailbox_id=mbx_alice&limit=2", key=tenant["key"]).json
    assert [t["subject"] for t in first["items"]] == ["Topic 4", "Topic 3"] and first["next_cursor"]
    second = api("GET", f"/v1/threads?mailbox_id=mbx_alice&limit=2&cursor={first['next_cursor']}",
                 key=tenant["key"]).json
    assert [t["subject"] for t in second["items"]] == ["Topic 2", "Topic 1"]
    assert api("GET", "/v1/threads", key=tenant["key"]).status == 422
    assert api("GET", "/v1/threads?mailbox_id=mbx_alice&record_type=project&record_id=x",
               key=tenant["key"]).status == 422


def test_a_records_threads_list_each_conversation_once_with_what_the_caller_may_read(api, tenant, alice):
    """The record's e-mails tab as threads: one entry per conversation (on the page of its newest linked
    message), counting only the messages of it the caller may read."""
    directory.put_record(tenant["id"], "project", "pr-3", {"name": "Three", "readers": ["u-reader"]})
    root = save(alice, message_id="<t1@customer.example>", subject="Kickoff", from_="jan@customer.example")
    reply = save(alice, days=1, message_id="<t2@customer.example>", subject="Re: Kickoff",
                 from_="jan@customer.example", in_reply_to="<t1@customer.example>",
                 references=["<t1@customer.example>"])
    unlinked = save(alice, days=2, message_id="<t3@customer.example>", subject="Re: Kickoff",
                    from_="jan@customer.example", in_reply_to="<t2@customer.example>",
                    references=["<t1@customer.example>", "<t2@customer.example>"])
    lone = save(alice, days=3, subject="Separate", from_="eva@other.example")
    root, reply, unlinked, lone = settle(root, reply, unlinked, lone)
    for message in (root, reply, lone):
        manual.link_manually(message, "project", "pr-3", None)

    def threads(user, limit=50):
        answer = api("GET", f"/v1/threads?record_type=project&record_id=pr-3&limit={limit}", key=tenant["key"],
                     user=user)
        assert answer.status == 200, answer
        return answer.json
    as_tenant = threads(None)["items"]
    assert [(t["id"], t["message_count"]) for t in as_tenant] == [(lone.conversation_id, 1),
                                                                   (root.conversation_id, 3)]
    as_reader = threads("u-reader")["items"]          # reads the linked ones through the record only
    assert [(t["id"], t["message_count"]) for t in as_reader] == [(lone.conversation_id, 1),
                                                                   (root.conversation_id, 2)]
    seen, cursor = [], None
    for _ in range(5):                                # one link per page: each conversation still once
        path = "/v1/threads?record_type=project&record_id=pr-3&limit=1" + (f"&cursor={cursor}" if cursor else "")
        body = api("GET", path, key=tenant["key"]).json
        seen += [t["id"] for t in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == [lone.conversation_id, root.conversation_id]
    assert api("GET", "/v1/threads?record_type=project&record_id=nope", key=tenant["key"]).status == 404


def test_a_whole_conversation_is_marked_private_where_the_caller_may_write(api, tenant, alice):
    """A conversation-wide private mark must reach every message of it in the caller's read_write mailboxes —
    hiding them from the record's tab and its readers — leave the rest alone, and be refused to read users."""
    bob = make_mailbox(tenant["id"], "mbx_bob", email="bob@acme-crm.example", owner_user_id="u-bob")
    directory.put_record(tenant["id"], "project", "pr-9", {"name": "Nine", "readers": ["u-reader"]})
    root = save(alice, message_id="<p1@customer.example>", subject="Salary", from_="jan@customer.example",
                to=["alice@acme-crm.example", "bob@acme-crm.example"])
    reply = save(alice, folder="sent", days=1, message_id="<p2@acme-crm.example>", subject="Re: Salary",
                 from_="alice@acme-crm.example", to="jan@customer.example", in_reply_to="<p1@customer.example>",
                 references=["<p1@customer.example>"])
    bobs_copy = save(bob, message_id="<p1@customer.example>", subject="Salary", from_="jan@customer.example",
                     to=["alice@acme-crm.example", "bob@acme-crm.example"])
    root, reply = settle(root, reply)
    [bobs_copy] = settle(bobs_copy)
    conversation = root.conversation_id
    for message in (root, reply, bobs_copy):
        manual.link_manually(message, "project", "pr-9", None)
    MailboxShare(alice.mailbox_id, "u-carol", tenant_id=tenant["id"], user_key=f"{tenant['id']}#u-carol",
                 access="read", created_at=now_iso()).save()
    path = f"/v1/threads/{conversation}/privacy"
    refused = api("PUT", path, key=tenant["key"], user="u-carol", json_body={"private": True})
    assert refused.status == 403 and refused.json["required"] == "read_write"
    assert api("PUT", path, key=tenant["key"], user="u-stranger", json_body={"private": True}).status == 404
    marked = api("PUT", path, key=tenant["key"], user="u-alice", json_body={"private": True})
    assert marked.status == 200, marked
    assert marked.json == {"id": conversation, "private": True, "changed": 2, "left_alone": 0}
    assert [Message.get(m.message_id).private for m in (root, reply, bobs_copy)] == [True, True, None]
    tab = api("GET", "/v1/directory/project/pr-9/messages", key=tenant["key"]).json["items"]
    assert [m["id"] for m in tab] == [bobs_copy.message_id]
    as_reader = api("GET", f"/v1/threads/{conversation}", key=tenant["key"], user="u-reader").json["items"]
    assert [m["id"] for m in as_reader] == [bobs_copy.message_id]
    again = api("PUT", path, key=tenant["key"], user="u-alice", json_body={"private": True}).json
    assert again["changed"] == 0
    public = api("PUT", path, key=tenant["key"], json_body={"private": False}).json    # the tenant: all three
    assert public == {"id": conversation, "private": False, "changed": 2, "left_alone": 0}


def test_erasing_a_participants_messages_leaves_no_trace_in_threads_or_the_index(tenant, alice):
    """Guards against an erasure leaving the person in conversations: their address in a thread's participants or
    in a subject thread key, or their messages in the search index."""
    kept = save(alice, message_id="<e1@customer.example>", subject="Order", from_="jan@customer.example",
                to="alice@acme-crm.example")
    erased = save(alice, days=1, message_id="<e2@customer.example>", subject="Re: Order",
                  from_="eva@customer.example", to="alice@acme-crm.example", cc="jan@customer.example",
                  in_reply_to="<e1@customer.example>", references=["<e1@customer.example>"])
    lone = save(alice, days=2, subject="Re: Invoice", from_="eva@customer.example", to="alice@acme-crm.example")
    kept, erased, lone = settle(kept, erased, lone)
    conversation = kept.conversation_id
    assert erased.conversation_id == conversation
    assert any("eva@customer.example" in p for p in entry("mbx_alice", conversation).participants)
    assert any("eva@customer.example" in k.key for k in ThreadKey.scan())
    counts = delete_messages([erased, lone])
    assert counts["messages"] == 2 and counts["thread_keys"] >= 1
    left = entry("mbx_alice", conversation)
    assert left.message_count == 1 and left.latest_message_id == kept.message_id
    assert not any("eva@customer.example" in p for p in left.participants)
    with pytest.raises(ThreadEntry.DoesNotExist):
        entry("mbx_alice", lone.conversation_id)
    assert not any("eva@customer.example" in k.key for k in ThreadKey.scan())
    postings = list(SearchPosting.scan())
    assert postings and not any(p.message_id in (erased.message_id, lone.message_id) for p in postings)
    assert not any("eva" in p.token_key for p in postings)


def test_thread_counts_follow_removal_restore_and_redelivery_exactly(tenant, alice):
    """Guards against a conversation's message_count / unread_count drifting when a message is removed at the
    source, comes back, and its page is replayed (each step twice)."""
    def unread(uid, **kwargs):
        raw = make_message(date=DAY, to="alice@acme-crm.example", **kwargs)
        return store.save_fetched(alice, FetchedMessage(MessageRef("inbox", uid, seen=False), raw)).message

    root = unread("c1", message_id="<c1@customer.example>", subject="Crate", from_="jan@customer.example")
    child = unread("c2", message_id="<c2@customer.example>", subject="Re: Crate", from_="jan@customer.example",
                   in_reply_to="<c1@customer.example>", references=["<c1@customer.example>"])
    root, child = settle(root, child)
    conversation = root.conversation_id

    def counts():
        found = entry("mbx_alice", conversation)
        return found.message_count, found.unread_count

    assert counts() == (2, 2)
    for _ in range(2):
        store.mark_removed(alice, "inbox", ["c2"])
        assert counts() == (1, 1)
    for _ in range(2):
        store.restore_removed(alice, [child.message_id])
        assert counts() == (2, 2)
    settle(root, child)
    assert counts() == (2, 2)
