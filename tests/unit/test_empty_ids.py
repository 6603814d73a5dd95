"""An empty id — a shell variable left empty by a failed step, as in `$B/v1/mailboxes/$M/messages` or
`"mail_server_id": "'$S'"` — reached DynamoDB as an empty key and answered 500 instead of 404/422."""
from __future__ import annotations

import re

import pytest

from chalicelib.api.routing import OPERATIONS


def _routes_with_ids():
    import app  # noqa: F401 - registers the routes
    return sorted({(op.method, op.path) for op in OPERATIONS if "{" in op.path and op.auth == "tenant"})


def test_an_empty_path_id_is_not_found(api, tenant):
    """`$B/v1/mailboxes//messages` (M left empty) answered 500 on 17 routes."""
    failures = []
    for method, path in _routes_with_ids():
        empty = re.sub(r"\{[^}]+\}", "", path)
        try:
            result = api(method, empty, key=tenant["key"], json_body={} if method in {"POST", "PUT", "PATCH"} else None)
        except ValueError:      # Chalice's local gateway matches no route (API Gateway answers 403 there)
            continue
        if result.status >= 500:       # 404, or 405 where `/v1/keys/` reads as `/v1/keys`
            failures.append((method, path, result.status))
    assert failures == []


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/v1/mailboxes", {"name": "G", "type": "gmail", "email": "a@gmail.example", "mail_server_id": ""}),
    ("POST", "/v1/mailboxes", {"name": "O", "type": "outlook", "email": "a@contoso.example", "mail_server_id": ""}),
    ("POST", "/v1/mailboxes", {"name": "I", "type": "imap", "email": "a@example.com", "mail_server_id": "",
                               "password": "pw"}),
    ("GET", "/v1/threads?mailbox_id=", None),
    ("GET", "/v1/messages/search?q=offer&mailbox_id=", None),
    ("GET", "/v1/rules?mailbox_id=", None),
    ("GET", "/v1/threads?record_type=project&record_id=", None),
])
def test_an_empty_id_in_a_query_or_body_is_not_a_server_error(api, tenant, method, path, body):
    """`"mail_server_id": ""` answered 500 (an empty key sent to DynamoDB); the others guard the same."""
    result = api(method, path, key=tenant["key"], user="u-1", json_body=body)
    assert result.status < 500, result


def test_a_rule_for_an_empty_mailbox_id_is_refused(api, tenant):
    """`"mailbox_id": ""` was stored: a rule bound to no mailbox, listed as if it were one."""
    result = api("POST", "/v1/rules", key=tenant["key"],
                 json_body={"name": "r", "mailbox_id": "", "actions": [{"type": "skip"}]})
    assert result.status == 422 and result.json["errors"][0]["field"] == "mailbox_id"
