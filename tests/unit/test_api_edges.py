"""Guards the edges a careful client hits outside the happy path: every error the framework itself answers
(method not allowed, content type, Accept) is problem+json like the routes' own, a stray Content-Type on a
request without a body changes nothing, and ids in the path are read percent-decoded (RFC 3986 §2.1)."""
from __future__ import annotations

import pytest

from tests.unit.test_message_store import make_mailbox
from tests.unit.test_messages_api import save

PROBLEM = "application/problem+json"


def assert_problem(result, status: int, slug: str) -> dict:
    assert result.status == status, result
    assert result.headers["content-type"] == PROBLEM, result.headers
    assert result.json["type"] == f"https://mailbridge.dev/problems/{slug}"
    assert result.json["status"] == status and result.json["title"] and result.json["detail"]
    return result.json


@pytest.mark.parametrize("method, path", [("PUT", "/v1/mailboxes"), ("DELETE", "/v1/health"),
                                          ("HEAD", "/v1/health"), ("OPTIONS", "/v1/mailboxes"),
                                          ("PATCH", "/v1/messages/msg_1/raw")])
def test_a_method_the_path_does_not_serve_is_a_405_problem_with_allow(api, tenant, method, path):
    """Chalice's own `{"Code": "MethodNotAllowedError"}` body (no content type) reached clients."""
    result = api(method, path, key=tenant["key"], body="{}")
    problem = assert_problem(result, 405, "method-not-allowed")
    allowed = {m.strip() for m in result.headers["allow"].split(",")}
    assert allowed and method not in allowed
    assert method in problem["detail"] and problem["instance"] == path


def test_a_body_in_another_media_type_is_a_415_problem(api, tenant):
    """Chalice's own `{"Code": "UnsupportedMediaType"}` body answered a form-encoded POST."""
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/merge-patch+json"):
        result = api("POST", "/v1/keys", key=tenant["key"], body='{"name": "x"}',
                     headers={"content-type": content_type})
        assert_problem(result, 415, "unsupported-media-type")
    charset = api("POST", "/v1/keys", key=tenant["key"], body='{"name": "x"}',
                  headers={"content-type": "Application/JSON; charset=utf-8"})
    assert charset.status == 201, charset


def test_a_stray_content_type_without_a_body_is_ignored(api, tenant):
    """A GET, DELETE or body-less POST sent with a client's default Content-Type answered 415."""
    make_mailbox(tenant["id"], "mbx_edge")
    plain = {"content-type": "text/plain"}
    assert api("GET", "/v1/keys", key=tenant["key"], headers=plain).status == 200
    assert api("GET", "/v1/mailboxes/mbx_edge", key=tenant["key"], headers=plain).status == 200
    assert api("POST", "/v1/mailboxes/mbx_edge/refresh", key=tenant["key"], headers=plain).status == 202
    assert api("DELETE", "/v1/mailboxes/mbx_edge/shares/u-nobody", key=tenant["key"], headers=plain).status == 404


def test_raw_mime_without_an_acceptable_media_type_is_a_406_problem(api, tenant):
    """Chalice's own `{"Code": "BadRequest"}` body answered a download without a matching Accept header."""
    message = save(make_mailbox(tenant["id"], "mbx_edge"), "1")
    path = f"/v1/messages/{message.message_id}/raw"
    for accept in (None, "application/json"):
        result = api("GET", path, key=tenant["key"], headers={"accept": accept} if accept else None)
        problem = assert_problem(result, 406, "not-acceptable")
        assert "message/rfc822" in problem["detail"]
    assert api("GET", path, key=tenant["key"], headers={"accept": "*/*"}).status == 200


def test_ids_in_the_path_are_percent_decoded(api, tenant):
    """An id with a space, a non-ASCII letter or an `@` reached the handler still percent-encoded: a record
    stored by the batch as `c 1` answered 404 at `/c%201`, `PUT .../%C4%8D` stored the id `%C4%8D`, and a share
    for `alice@example.com` sent as `alice%40example.com` (encodeURIComponent) was refused."""
    key = tenant["key"]
    batch = api("POST", "/v1/directory/batch", key=key, json_body={"records": [
        {"type": "company", "id": "c 1", "name": "Acme"}, {"type": "company", "id": "firma-č", "name": "Č"}]})
    assert [r["status"] for r in batch.json["results"]] == ["created", "created"]
    assert api("GET", "/v1/directory/company/c%201", key=key).json["id"] == "c 1"
    assert api("GET", "/v1/directory/company/firma-%C4%8D", key=key).json["id"] == "firma-č"
    put = api("PUT", "/v1/directory/project/%C4%8D%201", key=key, json_body={"name": "Poptávka"})
    assert put.status == 200 and put.json["id"] == "č 1"
    assert api("GET", "/v1/directory/project/%C4%8D%201", key=key).json["name"] == "Poptávka"
    assert api("DELETE", "/v1/directory/company/c%201", key=key).status == 204

    make_mailbox(tenant["id"], "mbx_edge", owner_user_id="u-owner")
    share = api("PUT", "/v1/mailboxes/mbx_edge/shares/alice%40example.com", key=key, json_body={"access": "read"})
    assert share.status == 200 and share.json["user_id"] == "alice@example.com"
    assert api("GET", "/v1/mailboxes/mbx_edge", key=key, user="alice@example.com").status == 200
    assert api("DELETE", "/v1/mailboxes/mbx_edge/shares/alice%40example.com", key=key).status == 204
    assert api("GET", "/v1/mailboxes/mbx_edge", key=key, user="alice@example.com").status == 404


@pytest.mark.parametrize("raw", ["a%2Fb", "..%2F..", "%00", "%E2%82%AC", "%ZZ", "x" * 3000])
def test_odd_ids_answer_404_problems(api, tenant, raw):
    """Guards against an encoded slash, a NUL, a broken escape or a very long id reaching a key lookup as a 500."""
    for path in (f"/v1/mailboxes/{raw}", f"/v1/messages/{raw}", f"/v1/directory/company/{raw}"):
        assert_problem(api("GET", path, key=tenant["key"]), 404, "not-found")


def test_a_decoded_path_cannot_climb_out_of_the_static_files(api):
    """Guards the percent-decoding of path ids against `..%2F` reaching the console's file lookup as `../`."""
    for asset in ("..%2F..%2Fapp.py", "..%2Fassets.py", "%2E%2E%2Fapp.py", "%2Fetc%2Fpasswd"):
        assert_problem(api("GET", f"/console/{asset}"), 404, "not-found")
        assert_problem(api("GET", f"/docs/{asset}"), 404, "not-found")


def test_a_bad_cursor_is_a_400_problem_naming_the_cursor(api, tenant, other_tenant):
    """A tampered, foreign or other-listing cursor answered 400 without naming the parameter at fault."""
    mailbox = make_mailbox(tenant["id"], "mbx_edge")
    for uid in ("1", "2"):
        save(mailbox, uid)
    cursor = api("GET", "/v1/mailboxes/mbx_edge/messages?limit=1", key=tenant["key"]).json["next_cursor"]
    other = make_mailbox(other_tenant["id"], "mbx_other")
    for uid in ("1", "2"):
        save(other, uid)
    foreign = api("GET", "/v1/mailboxes/mbx_other/messages?limit=1", key=other_tenant["key"]).json["next_cursor"]
    for path in (f"/v1/mailboxes/mbx_edge/messages?cursor={cursor[:-3]}abc", f"/v1/mailboxes?cursor={cursor}",
                 f"/v1/mailboxes/mbx_edge/messages?cursor={foreign}", "/v1/keys?cursor=%E2%82%AC.x",
                 "/v1/mailboxes/mbx_edge/messages?cursor=not-a-cursor"):
        problem = assert_problem(api("GET", path, key=tenant["key"]), 400, "bad-request")
        assert problem["errors"] == [{"field": "query.cursor", "message": "invalid pagination cursor: start "
                                      "again without it, or pass next_cursor of this same listing unchanged"}]


def test_a_put_answers_200_whether_it_created_or_replaced(api, tenant):
    """Guards the v1 contract clients check for: a PUT of a share or directory record answers 200 both when it
    creates and when it replaces (docs/api.md; a switch to 201 on create was considered and kept out)."""
    key = tenant["key"]
    make_mailbox(tenant["id"], "mbx_edge", owner_user_id="u-owner")
    first = api("PUT", "/v1/mailboxes/mbx_edge/shares/u-bob", key=key, json_body={"access": "read"})
    assert first.status == 200 and first.json["access"] == "read"
    again = api("PUT", "/v1/mailboxes/mbx_edge/shares/u-bob", key=key, json_body={"access": "read_write"})
    assert again.status == 200 and again.json["access"] == "read_write"
    record = api("PUT", "/v1/directory/company/c-1", key=key, json_body={"name": "Acme"})
    assert record.status == 200 and record.json["id"] == "c-1"
    replaced = api("PUT", "/v1/directory/company/c-1", key=key, json_body={"name": "Acme Inc."})
    assert replaced.status == 200 and replaced.json["name"] == "Acme Inc."


def test_a_query_parameter_a_route_does_not_take_is_a_422_naming_it(api, tenant):
    """`DELETE /v1/messages/{id}?purge=true` hid the message and ignored `purge` (as every route without query
    parameters ignored any): a client believed it had purged. Routes with parameters already refused strangers."""
    message = save(make_mailbox(tenant["id"], "mbx_edge"), "1")
    for method, path, name in (("DELETE", f"/v1/messages/{message.message_id}?purge=true", "purge"),
                               ("GET", "/v1/mailboxes/mbx_edge?fields=id", "fields"),
                               ("POST", "/v1/mailboxes/mbx_edge/refresh?force=1", "force")):
        problem = assert_problem(api(method, path, key=tenant["key"]), 422, "validation")
        assert [e["field"] for e in problem["errors"]] == [f"query.{name}"]
    assert api("GET", f"/v1/messages/{message.message_id}", key=tenant["key"]).status == 200   # nothing hidden
    assert api("GET", "/v1/mailboxes/mbx_edge/messages?limit=1&colour=red", key=tenant["key"]).status == 422
    assert api("GET", "/v1/health?probe=1").status == 200            # unauthenticated routes stay lenient
    responses = api("GET", "/v1/openapi.json").json["paths"]["/v1/messages/{message_id}"]["delete"]["responses"]
    assert "422" in responses


def test_the_share_list_is_paginated_like_every_list(api, tenant):
    """`GET /v1/mailboxes/{id}/shares` was the one list without `next_cursor` (and read every share at once)."""
    key = tenant["key"]
    for mailbox_id in ("mbx_edge", "mbx_two"):
        make_mailbox(tenant["id"], mailbox_id, owner_user_id="u-owner")
    for user in ("u-1", "u-2", "u-3"):
        api("PUT", f"/v1/mailboxes/mbx_edge/shares/{user}", key=key, json_body={"access": "read"})
        api("PUT", f"/v1/mailboxes/mbx_two/shares/{user}", key=key, json_body={"access": "read"})
    first = api("GET", "/v1/mailboxes/mbx_edge/shares?limit=2", key=key).json
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = api("GET", f"/v1/mailboxes/mbx_edge/shares?limit=2&cursor={first['next_cursor']}", key=key).json
    assert {s["user_id"] for s in first["items"] + second["items"]} == {"u-1", "u-2", "u-3"}
    assert second["next_cursor"] is None
    assert api("GET", "/v1/mailboxes/mbx_edge/shares", key=key).json["next_cursor"] is None
    foreign = api("GET", f"/v1/mailboxes/mbx_two/shares?limit=2&cursor={first['next_cursor']}", key=key)
    assert assert_problem(foreign, 400, "bad-request")["errors"][0]["field"] == "query.cursor"


def test_a_body_on_a_route_that_takes_none_is_refused_like_an_unknown_field(api, tenant):
    """`POST /v1/mailboxes/{id}/refresh` with `{"folder": "inbox"}` (or malformed JSON) answered 202 and
    ignored it, while a route with a body model names every field it does not know."""
    make_mailbox(tenant["id"], "mbx_edge")
    path = "/v1/mailboxes/mbx_edge/refresh"
    problem = assert_problem(api("POST", path, key=tenant["key"], json_body={"folder": "inbox"}), 422, "validation")
    assert problem["errors"] == [{"field": "folder", "message": "Extra inputs are not permitted"}]
    assert_problem(api("POST", path, key=tenant["key"], body="{bad"), 400, "bad-request")
    assert_problem(api("POST", path, key=tenant["key"], body="folder=inbox",
                       headers={"content-type": "application/x-www-form-urlencoded"}), 415, "unsupported-media-type")
    assert api("POST", path, key=tenant["key"], body="{}").status == 202      # an empty object is no body
    assert api("DELETE", "/v1/mailboxes/mbx_edge/shares/u-x", key=tenant["key"], body=" ").status == 404


def test_a_malformed_user_id_header_is_named(api, tenant):
    """The 400 for a malformed X-User-Id did not name the header, unlike every other refused input."""
    problem = assert_problem(api("GET", "/v1/mailboxes", key=tenant["key"], user="a b"), 400, "bad-request")
    assert [e["field"] for e in problem["errors"]] == ["X-User-Id"]


def test_a_query_parameter_given_twice_is_a_422_naming_it(api, tenant):
    """`?limit=1&limit=2` answered with the last value, silently: no query parameter of this API is a list."""
    make_mailbox(tenant["id"], "mbx_edge")
    result = api("GET", "/v1/mailboxes/mbx_edge/messages?limit=1&folder=inbox&limit=2", key=tenant["key"])
    problem = assert_problem(result, 422, "validation")
    assert problem["errors"] == [{"field": "query.limit", "message": "given more than once"}]
    assert api("GET", "/v1/mailboxes/mbx_edge/messages?limit=1&folder=inbox", key=tenant["key"]).status == 200


def test_user_routes_take_the_user_id_decoded_and_refuse_what_no_user_can_be_called(api, tenant):
    """`/v1/users/alice%40example.com/...` answered 404 to alice@example.com herself (the id stayed encoded), and
    the notification routes stored settings for ids no X-User-Id can carry (`u 1`), unlike the privacy routes."""
    key = tenant["key"]
    for path in ("/v1/users/alice%40example.com/notification-settings", "/v1/users/alice%40example.com/notifications",
                 "/v1/users/alice%40example.com/privacy-lists"):
        assert api("GET", path, key=key, user="alice@example.com").status == 200, path
    for path in ("/v1/users/u%201/notification-settings", "/v1/users/%C4%8D/notifications",
                 "/v1/users/u%201/privacy-lists"):
        assert_problem(api("GET", path, key=key), 404, "not-found")
    put = api("PUT", "/v1/users/u%201/notification-settings", key=key, json_body={"channels": {"new_mail": "off"}})
    assert_problem(put, 404, "not-found")


def test_a_201_says_where_the_created_resource_is(api, tenant):
    """A 201 without `Location` left the client to build the new resource's URI itself (RFC 9110 §15.3.2)."""
    created = api("POST", "/v1/keys", key=tenant["key"], json_body={"name": "crm-backend"})
    assert created.status == 201
    assert created.headers["location"] == f"http://127.0.0.1:8000/v1/keys/{created.json['id']}"
    message = save(make_mailbox(tenant["id"], "mbx_edge"), "1")
    made = api("POST", f"/v1/messages/{message.message_id}/create-record", key=tenant["key"],
               json_body={"type": "lead", "name": "Jan & Co"})
    assert made.status == 201, made.json
    record = made.json["record"]
    location = made.headers["location"]
    assert location == f"http://127.0.0.1:8000/v1/directory/lead/{record['id']}"
    assert api("GET", location.removeprefix("http://127.0.0.1:8000"), key=tenant["key"]).json["id"] == record["id"]
    paths = api("GET", "/v1/openapi.json").json["paths"]
    for path in ("/v1/keys", "/v1/mailboxes", "/v1/rules", "/v1/mail-servers", "/v1/admin/tenants",
                 "/v1/messages/{message_id}/create-record"):
        assert "Location" in paths[path]["post"]["responses"]["201"]["headers"], path
