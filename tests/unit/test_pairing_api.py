"""Guards the pairing API: manual pair/unpair and create-record leave an audit trail, signals are listed only
to users who can read their mailbox, undo works once, and message listings show links and filter on them."""
from __future__ import annotations

from chalicelib.models.message import Message
from chalicelib.notify.events import list_events
from chalicelib.pairing import directory, engine
from tests.unit.pairing_fixtures import make_mailbox, make_message


def test_manual_pair_unpair_and_message_views(api, tenant):
    directory.put_record(tenant["id"], "project", "pr-7", {"number": "1234"})
    mailbox = make_mailbox(tenant["id"], owner="u-alice")
    message = make_message(mailbox, sender="c@x.example")
    path = f"/v1/messages/{message.message_id}/links"
    created = api("POST", path, key=tenant["key"], user="u-alice", json_body={"type": "project", "id": "pr-7"})
    assert created.status == 201 and created.json == {"type": "project", "id": "pr-7", "source": "manual",
                                                      "reason": "paired by hand"}
    assert api("POST", path, key=tenant["key"], json_body={"type": "project", "id": "pr-7"}).status == 409
    assert api("POST", path, key=tenant["key"], json_body={"type": "project", "id": "nope"}).status == 404
    assert api("POST", path, key=tenant["key"], user="u-mallory",
               json_body={"type": "project", "id": "pr-7"}).status == 404          # cannot see the message
    listing = api("GET", f"/v1/mailboxes/{mailbox.mailbox_id}/messages?paired=true", key=tenant["key"]).json
    assert listing["items"][0]["links"] == [created.json]
    detail = api("GET", f"/v1/messages/{message.message_id}", key=tenant["key"]).json
    assert detail["links"] == [created.json]
    assert api("DELETE", f"{path}/project/pr-7", key=tenant["key"], user="u-alice").status == 204
    assert api("DELETE", f"{path}/project/pr-7", key=tenant["key"]).status == 404
    assert Message.get(message.message_id).link_count == 0
    assert api("GET", f"/v1/mailboxes/{mailbox.mailbox_id}/messages?paired=true", key=tenant["key"]).json["items"] == []
    trail = api("GET", f"/v1/audit?message_id={message.message_id}", key=tenant["key"]).json["items"]
    assert [(e["action"], e["actor"]) for e in trail] == [("link.removed", "user:u-alice"),
                                                          ("link.created", "user:u-alice")]


def test_reader_through_a_record_cannot_re_pair_the_message(api, tenant):
    """A user who saw a message only via a record's readers could pair it to a "*" record, showing it to all."""
    directory.put_record(tenant["id"], "project", "pr-1", {"name": "Secret", "readers": ["u-dave"]})
    directory.put_record(tenant["id"], "project", "pr-all", {"name": "Public", "readers": ["*"]})
    mailbox = make_mailbox(tenant["id"], owner="u-alice")
    message = make_message(mailbox, sender="c@x.example")
    links = f"/v1/messages/{message.message_id}/links"
    paired = api("POST", links, key=tenant["key"], user="u-alice", json_body={"type": "project", "id": "pr-1"})
    assert paired.status == 201
    assert api("GET", f"/v1/messages/{message.message_id}", key=tenant["key"], user="u-dave").status == 200
    attempts = [("POST", links, {"type": "project", "id": "pr-all"}), ("DELETE", f"{links}/project/pr-1", None),
                ("POST", f"/v1/messages/{message.message_id}/create-record", {"type": "project", "readers": ["*"]})]
    for method, path, body in attempts:
        assert api(method, path, key=tenant["key"], user="u-dave", json_body=body).status == 403, (method, path)
        assert api(method, path, key=tenant["key"], user="u-erin", json_body=body).status == 404, (method, path)
    assert api("GET", f"/v1/messages/{message.message_id}", key=tenant["key"], user="u-erin").status == 404
    assert [link["id"] for link in api("GET", f"/v1/messages/{message.message_id}", key=tenant["key"]).json["links"]] \
        == ["pr-1"]


def test_create_record_from_message(api, tenant):
    mailbox = make_mailbox(tenant["id"])
    message = make_message(mailbox, sender="eva@newco.example", subject="Need a quote")
    path = f"/v1/messages/{message.message_id}/create-record"
    company = api("POST", path, key=tenant["key"], json_body={"type": "company"})
    assert company.status == 201, company
    assert company.json["record"]["name"] == "Jan Novák" and company.json["record"]["emails"] == ["eva@newco.example"]
    project = api("POST", path, key=tenant["key"], json_body={"type": "project", "readers": ["*"]}).json
    assert project["record"]["name"] == "Need a quote" and project["record"]["number"].startswith("M")
    again = api("POST", path, key=tenant["key"], json_body={"type": "project"}).json
    assert again["created"] is False and again["record"]["id"] == project["record"]["id"]
    links = api("GET", f"/v1/messages/{message.message_id}", key=tenant["key"]).json["links"]
    assert {(link["type"], link["source"]) for link in links} == {("company", "created"), ("project", "created")}
    assert len(list_events(tenant["id"], "record.created")) == 2
    assert api("POST", path, key=tenant["key"], json_body={"type": "galaxy"}).status == 422


def test_signals_api_lists_accepts_and_hides_from_users_without_access(api, tenant, other_tenant):
    directory.put_record(tenant["id"], "company", "c-1", {"emails": ["info@acme.example"]})
    mailbox = make_mailbox(tenant["id"], "signal", owner="u-alice")
    message = make_message(mailbox, sender="info@acme.example")
    engine.pair_message(message)
    listing = api("GET", f"/v1/signals?status=open&mailbox_id={mailbox.mailbox_id}", key=tenant["key"])
    assert listing.status == 200 and len(listing.json["items"]) == 1
    signal = listing.json["items"][0]
    assert signal["record"] == {"type": "company", "id": "c-1"} and signal["confidence"] > 0.5
    assert len(api("GET", "/v1/signals", key=tenant["key"], user="u-alice").json["items"]) == 1
    assert api("GET", "/v1/signals", key=tenant["key"], user="u-bob").json["items"] == []
    assert api("GET", f"/v1/signals?mailbox_id={mailbox.mailbox_id}", key=tenant["key"], user="u-bob").status == 404
    assert api("GET", "/v1/signals", key=other_tenant["key"]).json["items"] == []
    assert api("POST", f"/v1/signals/{signal['id']}/accept", key=tenant["key"], user="u-bob").status == 404
    assert api("POST", f"/v1/signals/{signal['id']}/accept", key=other_tenant["key"]).status == 404
    accepted = api("POST", f"/v1/signals/{signal['id']}/accept", key=tenant["key"], user="u-alice")
    assert accepted.status == 200 and accepted.json["status"] == "accepted"
    assert accepted.json["resolved_by"] == "user:u-alice"
    assert api("POST", f"/v1/signals/{signal['id']}/dismiss", key=tenant["key"]).status == 409
    assert api("GET", "/v1/signals?status=open", key=tenant["key"]).json["items"] == []
    assert len(api("GET", "/v1/signals?status=accepted", key=tenant["key"]).json["items"]) == 1
    assert Message.get(message.message_id).link_count == 1


def test_undo_api_for_an_automatic_link(api, tenant):
    directory.put_record(tenant["id"], "company", "c-1", {"emails": ["info@acme.example"]})
    message = make_message(make_mailbox(tenant["id"]), sender="info@acme.example")
    engine.pair_message(message)
    trail = api("GET", f"/v1/audit?message_id={message.message_id}", key=tenant["key"]).json["items"]
    entry = next(e for e in trail if e["action"] == "link.created")
    assert entry["actor"] == "matcher:company" and entry["reason"] == "company address info@acme.example"
    assert api("POST", f"/v1/audit/{entry['id']}/undo", key=tenant["key"], user="u-alice").status == 403
    assert api("POST", f"/v1/audit/{entry['id']}/undo", key=tenant["key"]).status == 200
    assert api("POST", f"/v1/audit/{entry['id']}/undo", key=tenant["key"]).status == 409
    assert api("POST", "/v1/audit/aud_nope/undo", key=tenant["key"]).status == 404
    trail = api("GET", f"/v1/audit?message_id={message.message_id}", key=tenant["key"]).json["items"]
    assert trail[0]["action"] == "undo" and trail[0]["undo_of"] == entry["id"]
    assert next(e for e in trail if e["id"] == entry["id"])["undone_by"] == trail[0]["id"]


def test_pairing_settings_api(api, tenant):
    current = api("GET", "/v1/pairing/settings", key=tenant["key"])
    assert current.status == 200 and current.json["ticket_tag_prefix"] == "T-"
    body = {"blocklist": {"addresses": ["spam@bad.example"], "domains": ["bad.example"]},
            "ticket_tag_prefix": "TCK-", "strip_plus_tags": True}
    updated = api("PUT", "/v1/pairing/settings", key=tenant["key"], json_body=body)
    assert updated.status == 200 and updated.json["blocklist"]["domains"] == ["bad.example"]
    assert api("GET", "/v1/pairing/settings", key=tenant["key"]).json["ticket_tag_prefix"] == "TCK-"
    assert api("PUT", "/v1/pairing/settings", key=tenant["key"], json_body={"ticket_tag_prefix": "a b"}).status == 422
    directory.put_record(tenant["id"], "company", "c-1", {"emails": ["spam@bad.example"]})
    message = make_message(make_mailbox(tenant["id"]), sender="spam@bad.example")
    assert engine.pair_message(message).skipped == "blocklisted"
