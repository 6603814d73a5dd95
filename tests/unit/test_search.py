"""Guards against search missing mail it should find (accents, addresses, attachment names, AND of words),
ignoring its filters, repeating or skipping results across pages, and — above all — returning a message the
caller could not open with GET /v1/messages/{id}."""
from __future__ import annotations

import datetime as dt

import pytest

from chalicelib.models.mailbox import MailboxShare
from chalicelib.models.message import Message
from chalicelib.models.pairing import MessageLink
from chalicelib.pairing import directory, manual
from chalicelib.providers.base import FetchedMessage, MessageRef
from chalicelib.search.tokens import QueryTooLong, message_tokens, query_tokens
from chalicelib.sync import store
from chalicelib.threads import derived
from chalicelib.timeutil import now_iso
from tests.mailfactory import make_message
from tests.unit.test_message_store import make_mailbox

DAY = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.timezone.utc)
_uid = iter(range(1, 10_000))


def save(mailbox, *, folder="inbox", days=0, **kwargs) -> Message:
    raw = make_message(date=DAY + dt.timedelta(days=days), **kwargs)
    message = store.save_fetched(mailbox, FetchedMessage(MessageRef(folder, f"1:{next(_uid)}"), raw)).message
    derived.remember(message.tenant_id, [message.message_id])
    return Message.get(message.message_id)


def found(api, tenant, query: str, user: str | None = None) -> list[str]:
    answer = api("GET", f"/v1/messages/search?{query}", key=tenant["key"], user=user)
    assert answer.status == 200, answer
    return [m["id"] for m in answer.json["items"]]


def test_tokens_fold_case_accents_and_split_addresses():
    assert query_tokens("Poptávka ČÍSLO 5") == ["poptavka", "cislo"]
    assert query_tokens("Jan.Novak@Acme.example") == ["jan.novak@acme.example"]
    assert query_tokens("@acme.example") == ["acme.example"]
    with pytest.raises(QueryTooLong):
        query_tokens("a1 b2 c3 d4 e5 f6 g7 h8 i9")

    class Stub:
        subject, snippet, to, cc, bcc = "Nabídka", "Cena ﬁnální", [], [], []
        from_addr = {"name": "Jan Novák", "email": "jan.novak@acme.example"}
        attachments = [{"filename": "cenník-2026.pdf"}]
    tokens = message_tokens(Stub())
    for token in ("nabidka", "cena", "finalni", "jan.novak@acme.example", "acme.example", "jan",
                  "novak", "acme", "example", "cennik", "2026", "pdf"):
        assert token in tokens, token
    # every token is one some query asks for (a posting no query reads would be a write for nothing): the
    # local part "jan.novak" is not one — a query "jan.novak" asks for its words, which are tokens
    assert "jan.novak" not in tokens and set(query_tokens("jan.novak")) <= set(tokens)
    for token in tokens:
        assert token in (query_tokens(token) + query_tokens("@" + token)), token


@pytest.fixture
def world(tenant):
    alice = make_mailbox(tenant["id"], "mbx_alice", email="alice@acme-crm.example", owner_user_id="u-alice",
                         owner_key=f"{tenant['id']}#u-alice", show_snippet=True)
    bob = make_mailbox(tenant["id"], "mbx_bob", email="bob@acme-crm.example", owner_user_id="u-bob",
                       owner_key=f"{tenant['id']}#u-bob")
    shared = make_mailbox(tenant["id"], "mbx_team", email="team@acme-crm.example", kind="shared",
                          owner_user_id=None)
    MailboxShare("mbx_team", "u-alice", tenant_id=tenant["id"], user_key=f"{tenant['id']}#u-alice",
                 access="read", created_at=now_iso()).save()
    messages = {
        "offer": save(alice, subject="Poptávka č. 5", from_="Jan Novák <jan@customer.example>",
                      to="alice@acme-crm.example", body="Please send the price list.\n"),
        "reply": save(alice, folder="sent", days=1, subject="Re: Poptávka č. 5", from_="alice@acme-crm.example",
                      to="jan@customer.example", body="Price list attached.\n",
                      attachments=[("cenník.pdf", "application/pdf", b"%PDF")]),
        "bob": save(bob, days=2, subject="Poptávka Bob", from_="jan@customer.example", to="bob@acme-crm.example"),
        "team": save(shared, days=3, subject="Poptávka team", from_="eva@other.example",
                     to="team@acme-crm.example"),
    }
    return messages


def test_finds_by_subject_participants_snippet_and_attachment_names(api, tenant, world):
    offer, reply = world["offer"].message_id, world["reply"].message_id
    assert found(api, tenant, "q=poptavka") == [world[k].message_id for k in ("team", "bob", "reply", "offer")]
    assert found(api, tenant, "q=novak") == [offer]
    assert found(api, tenant, "q=jan@customer.example") == [world["bob"].message_id, reply, offer]
    assert found(api, tenant, "q=@other.example") == [world["team"].message_id]
    assert found(api, tenant, "q=price+list") == [reply, offer]               # the snippet
    assert found(api, tenant, "q=cennik") == [reply]                          # the attachment's name
    assert found(api, tenant, "q=poptavka+attached") == [reply]               # AND of the words
    assert found(api, tenant, "q=poptavka+nowhere") == []


def test_filters(api, tenant, world):
    ids = {k: m.message_id for k, m in world.items()}
    assert found(api, tenant, "q=poptavka&folder=sent") == [ids["reply"]]
    assert found(api, tenant, "q=poptavka&direction=outbound") == [ids["reply"]]
    assert found(api, tenant, "q=poptavka&has_attachments=true") == [ids["reply"]]
    assert found(api, tenant, "q=poptavka&mailbox_id=mbx_bob") == [ids["bob"]]
    assert found(api, tenant, "q=poptavka&after=2026-11-21&before=2026-11-23") == [ids["bob"], ids["reply"]]
    assert found(api, tenant, "q=poptavka&before=2026-11-21") == [ids["offer"]]
    directory.put_record(tenant["id"], "project", "pr-5", {"name": "Five", "number": "5"})
    manual.link_manually(world["offer"], "project", "pr-5", None)
    assert found(api, tenant, "q=poptavka&paired=true") == [ids["offer"]]
    assert ids["offer"] not in found(api, tenant, "q=poptavka&paired=false")
    for bad in ("q=", "q=%21%21", "q=poptavka&folder=" + "x" * 256, "q=poptavka&after=yesterday"):
        assert api("GET", f"/v1/messages/search?{bad}", key=tenant["key"]).status == 422, bad


def test_pages_follow_the_cursor_without_repeats(api, tenant):
    mailbox = make_mailbox(tenant["id"], "mbx_many", email="many@acme-crm.example")
    expected = [save(mailbox, days=n, subject=f"Pallet order {n}").message_id for n in range(7)][::-1]
    seen, cursor = [], None
    for _ in range(10):
        query = "q=pallet+order&limit=3" + (f"&cursor={cursor}" if cursor else "")
        body = api("GET", f"/v1/messages/search?{query}", key=tenant["key"]).json
        seen += [m["id"] for m in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == expected
    other = api("GET", "/v1/messages/search?q=pallet&cursor=" + cursor if cursor else
                "/v1/messages/search?q=pallet&limit=1", key=tenant["key"]).json["next_cursor"]
    assert api("GET", f"/v1/messages/search?q=order&cursor={other}", key=tenant["key"]).status == 400


def test_hidden_messages_are_not_found(api, tenant, world):
    assert api("DELETE", f"/v1/messages/{world['offer'].message_id}", key=tenant["key"]).status == 204
    assert world["offer"].message_id not in found(api, tenant, "q=poptavka")


@pytest.mark.parametrize("user", [None, "u-alice", "u-bob", "u-carol"])
def test_visibility_sweep_every_result_can_be_opened(api, tenant, world, user):
    """No result the caller could not open; and nothing of a mailbox they cannot read."""
    directory.put_record(tenant["id"], "project", "pr-9", {"name": "Nine", "readers": ["u-carol"]})
    manual.link_manually(world["bob"], "project", "pr-9", None)
    readable = {None: {"offer", "reply", "bob", "team"}, "u-alice": {"offer", "reply", "team"},
                "u-bob": {"bob"}, "u-carol": set()}[user]
    results = found(api, tenant, "q=poptavka&limit=200", user=user)
    assert set(results) == {world[k].message_id for k in readable}
    for message_id in results:
        assert api("GET", f"/v1/messages/{message_id}", key=tenant["key"], user=user).status == 200
    for message in Message.batch_get([m.message_id for m in world.values()]):
        if message.message_id not in results and user == "u-carol":
            assert MessageLink.get(world["bob"].message_id, "project#pr-9")   # readable via the record only
    if user in ("u-bob", "u-carol"):
        answer = api("GET", "/v1/messages/search?q=poptavka&mailbox_id=mbx_alice", key=tenant["key"], user=user)
        assert answer.status == 404


def test_another_tenant_finds_nothing(api, tenant, other_tenant, world):
    assert found(api, other_tenant, "q=poptavka") == []
    answer = api("GET", "/v1/messages/search?q=poptavka&mailbox_id=mbx_alice", key=other_tenant["key"])
    assert answer.status == 404


def test_a_revoked_share_a_removal_at_the_source_and_bad_queries(api, tenant, world):
    """Guards against search still answering from a mailbox whose share was revoked, returning a message removed
    at the source, and refusing a bad query without naming the field (`query.q`, as every query parameter)."""
    team = world["team"].message_id
    assert team in found(api, tenant, "q=poptavka", user="u-alice")
    MailboxShare.get("mbx_team", "u-alice").delete()
    assert team not in found(api, tenant, "q=poptavka", user="u-alice")
    assert api("GET", f"/v1/messages/{team}", key=tenant["key"], user="u-alice").status == 404
    mailbox = Message.get(world["bob"].message_id)
    store.mark_removed(make_mailbox(tenant["id"], "mbx_bob", email="bob@acme-crm.example", owner_user_id="u-bob",
                                    owner_key=f"{tenant['id']}#u-bob"), "inbox", [mailbox.provider_id])
    assert world["bob"].message_id not in found(api, tenant, "q=poptavka")
    assert found(api, tenant, "q=POPTA%CC%81VKA+%EF%BC%B4EAM") == [team]        # NFD accent, full-width letters
    for bad in ("q=", "q=%20%20", "q=%21%21+a", "q=" + "w" * 501, "q=" + "+".join(f"w{n}" for n in range(9))):
        answer = api("GET", f"/v1/messages/search?{bad}", key=tenant["key"])
        assert answer.status == 422 and answer.json["errors"][0]["field"] == "query.q", (bad, answer.json)
