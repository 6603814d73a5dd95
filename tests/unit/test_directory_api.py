"""Guards the directory API against stale lookup index entries, lost partial batches, cross-tenant leaks
and a record's e-mails tab showing messages to users who may not see them."""
from __future__ import annotations

from chalicelib.models.directory import DirectoryIndex, email_key, number_key
from chalicelib.models.mailbox import MailboxShare
from chalicelib.pairing import engine
from chalicelib.timeutil import now_iso
from tests.unit.pairing_fixtures import make_mailbox, make_message


def put(api, tenant, path, body, **kw):
    return api("PUT", f"/v1/directory/{path}", key=tenant["key"], json_body=body, **kw)


def index_keys(key: str) -> set[str]:
    try:
        return set(DirectoryIndex.get(key).record_keys or ())
    except DirectoryIndex.DoesNotExist:
        return set()


def test_put_get_delete_roundtrip_and_index_maintenance(api, tenant):
    result = put(api, tenant, "contact/p-1", {"name": "Jan", "emails": ["Jan <Jan@ACME.example>"],
                                              "company_id": "c-1"})
    assert result.status == 200, result
    assert result.json["emails"] == ["Jan@acme.example"]          # domain folded, local part kept
    assert index_keys(email_key(tenant["id"], "Jan@acme.example")) == {"contact#p-1"}
    got = api("GET", "/v1/directory/contact/p-1", key=tenant["key"])
    assert got.status == 200 and got.json["company_id"] == "c-1"

    put(api, tenant, "contact/p-1", {"name": "Jan", "emails": ["jan@new.example"]})
    assert index_keys(email_key(tenant["id"], "Jan@acme.example")) == set()
    assert index_keys(email_key(tenant["id"], "jan@new.example")) == {"contact#p-1"}

    assert api("DELETE", "/v1/directory/contact/p-1", key=tenant["key"]).status == 204
    assert index_keys(email_key(tenant["id"], "jan@new.example")) == set()
    assert api("GET", "/v1/directory/contact/p-1", key=tenant["key"]).status == 404
    assert api("DELETE", "/v1/directory/contact/p-1", key=tenant["key"]).status == 404


def test_invalid_record_is_422_naming_the_field(api, tenant):
    assert put(api, tenant, "company/c-1", {"emails": ["not an address"]}).json["errors"][0]["field"] == "emails"
    assert put(api, tenant, "planet/x", {}).status == 422
    assert put(api, tenant, "company/c-1", {"company_id": "c-2"}).status == 422
    assert put(api, tenant, "company/c-1", {"colour": "red"}).status == 422
    control = put(api, tenant, "company/c%0A1", {"name": "Acme"})               # a newline in the id
    assert control.status == 422 and control.json["errors"][0]["field"] == "id"
    batch = api("POST", "/v1/directory/batch", key=tenant["key"],
                json_body={"records": [{"type": "lead", "id": "l\u00001"}]})
    assert batch.json["results"][0]["status"] == "error" and "id" in batch.json["results"][0]["error"]


def test_directory_writes_need_the_tenant_not_a_user(api, tenant):
    assert put(api, tenant, "company/c-1", {"name": "Acme"}, user="u-bob").status == 403


def test_batch_reports_partial_failures_per_record(api, tenant):
    records = [{"type": "company", "id": "c-1", "name": "Acme", "emails": ["info@acme.example"],
                "domains": ["acme.example"]},
               {"type": "contact", "id": "p-1", "company_id": "c-1", "emails": ["jan@acme.example"]},
               {"type": "project", "id": "pr-7", "number": "1234", "readers": ["*"]},
               {"type": "contact", "id": "p-2", "emails": ["broken"]},
               {"type": "spaceship", "id": "s-1"},
               {"type": "lead", "id": "l-1", "unexpected": True}]
    result = api("POST", "/v1/directory/batch", key=tenant["key"], json_body={"records": records})
    assert result.status == 200, result
    statuses = [(r["type"], r["id"], r["status"]) for r in result.json["results"]]
    assert statuses == [("company", "c-1", "created"), ("contact", "p-1", "created"),
                        ("project", "pr-7", "created"), ("contact", "p-2", "error"),
                        ("spaceship", "s-1", "error"), ("lead", "l-1", "error")]
    assert "emails" in result.json["results"][3]["error"]
    assert index_keys(number_key(tenant["id"], "project", "1234")) == {"project#pr-7"}
    again = api("POST", "/v1/directory/batch", key=tenant["key"], json_body={"records": records[:1]})
    assert again.json["results"][0]["status"] == "updated"
    too_many = [{"type": "lead", "id": f"l-{i}"} for i in range(1001)]
    assert api("POST", "/v1/directory/batch", key=tenant["key"], json_body={"records": too_many}).status == 422


def test_directory_is_isolated_between_tenants(api, tenant, other_tenant):
    put(api, tenant, "company/c-1", {"name": "Acme", "emails": ["info@acme.example"]})
    assert api("GET", "/v1/directory/company/c-1", key=other_tenant["key"]).status == 404
    assert api("DELETE", "/v1/directory/company/c-1", key=other_tenant["key"]).status == 404
    put(api, other_tenant, "company/c-1", {"name": "Other", "emails": ["info@acme.example"]})
    assert api("GET", "/v1/directory/company/c-1", key=tenant["key"]).json["name"] == "Acme"
    # a message of the other tenant pairs with the other tenant's record only
    mailbox = make_mailbox(other_tenant["id"])
    message = make_message(mailbox, sender="info@acme.example")
    engine.pair_message(message)
    assert api("GET", "/v1/directory/company/c-1/messages", key=tenant["key"]).json["items"] == []
    assert len(api("GET", "/v1/directory/company/c-1/messages", key=other_tenant["key"]).json["items"]) == 1


def test_record_messages_tab_respects_visibility(api, tenant):
    put(api, tenant, "company/c-1", {"name": "Acme", "emails": ["info@acme.example"]})
    alice_box = make_mailbox(tenant["id"], owner="u-alice")
    bob_box = make_mailbox(tenant["id"], owner="u-bob", email="bob@acme-crm.example")
    older = make_message(alice_box, sender="info@acme.example", subject="older", date="2026-11-20T08:00:00Z")
    newer = make_message(bob_box, sender="info@acme.example", subject="newer", date="2026-11-21T08:00:00Z")
    for message in (older, newer):
        engine.pair_message(message)

    def subjects(user=None, query=""):
        result = api("GET", f"/v1/directory/company/c-1/messages{query}", key=tenant["key"], user=user)
        assert result.status == 200, result
        return [m["subject"] for m in result.json["items"]], result.json

    assert subjects()[0] == ["newer", "older"]                        # the tenant sees all, newest first
    assert subjects("u-alice")[0] == ["older"]                        # own mailbox only
    assert subjects("u-carol")[0] == []                               # no access at all
    MailboxShare(bob_box.mailbox_id, "u-carol", tenant_id=tenant["id"], user_key=f"{tenant['id']}#u-carol",
                 access="read", created_at=now_iso()).save()
    assert subjects("u-carol")[0] == ["newer"]                        # a share grants its mailbox
    put(api, tenant, "company/c-1", {"name": "Acme", "emails": ["info@acme.example"], "readers": ["u-dave"]})
    assert subjects("u-dave")[0] == ["newer", "older"]                # listed among the record's readers
    assert api("GET", f"/v1/messages/{older.message_id}", key=tenant["key"], user="u-dave").status == 200
    assert api("GET", f"/v1/messages/{older.message_id}", key=tenant["key"], user="u-erin").status == 404
    put(api, tenant, "company/c-1", {"name": "Acme", "emails": ["info@acme.example"], "readers": ["*"]})
    assert api("GET", f"/v1/messages/{older.message_id}", key=tenant["key"], user="u-erin").status == 200
    first_page, body = subjects(query="?limit=1")
    assert first_page == ["newer"] and body["next_cursor"]
    assert subjects(query=f"?limit=1&cursor={body['next_cursor']}")[0] == ["older"]


def test_batch_with_too_many_addresses_in_total_is_refused(api, tenant):
    """Guards against one batch call fanning out to an unbounded number of index writes."""
    records = [{"type": "contact", "id": f"p-{i}", "emails": [f"c{i}-{j}@big.example" for j in range(100)]}
               for i in range(101)]
    result = api("POST", "/v1/directory/batch", key=tenant["key"], json_body={"records": records})
    assert result.status == 422 and result.json["errors"][0]["field"] == "records"
    assert "at most 10000" in result.json["errors"][0]["message"]
    assert api("GET", "/v1/directory/contact/p-0", key=tenant["key"]).status == 404


def test_directory_records_are_visible_to_every_user_of_the_tenant(api, tenant, other_tenant):
    """Guards the documented choice (docs/api.md "Access levels"): records are tenant-wide CRM data; `readers`
    limits the mail paired to them, not the record; another tenant still gets 404 and users cannot write."""
    put(api, tenant, "project/pr-1", {"name": "Secret", "readers": ["u-dave"]})
    for user in (None, "u-dave", "u-erin"):
        got = api("GET", "/v1/directory/project/pr-1", key=tenant["key"], user=user)
        assert got.status == 200 and got.json["name"] == "Secret", user
    assert api("GET", "/v1/directory/project/pr-1", key=other_tenant["key"], user="u-dave").status == 404
    assert api("DELETE", "/v1/directory/project/pr-1", key=tenant["key"], user="u-erin").status == 403
    assert put(api, tenant, "project/pr-1", {"name": "Mine"}, user="u-dave").status == 403
    assert api("GET", "/v1/directory/project/pr-1", key=tenant["key"]).json["name"] == "Secret"
