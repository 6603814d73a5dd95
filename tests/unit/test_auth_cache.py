"""Guards the API's cache of verified keys: fewer reads, never a wider door (wrong secrets, revocations,
suspensions and a key deleted elsewhere are still refused)."""
from __future__ import annotations

import datetime as dt

import pytest

from chalicelib import ttlcache
from chalicelib.api import auth
from chalicelib.config import reset_settings
from chalicelib.models.tenant import ApiKey
from tests.sync_helpers import by_operation_and_table, dynamodb_calls


def _auth_reads(calls) -> int:
    return sum(n for name, n in calls.items() if name.endswith(("api_keys", "tenants")))


def test_a_warm_process_authenticates_without_reading_the_key_or_tenant(api, tenant):
    assert api("GET", "/v1/keys", key=tenant["key"]).status == 200
    with dynamodb_calls(by_operation_and_table) as calls:
        assert api("GET", "/v1/keys", key=tenant["key"]).status == 200
    assert set(calls) == {"Query:mbtest-api_keys"}, dict(calls)    # the listing itself, no GetItem


def test_a_wrong_secret_for_a_cached_key_id_is_401(api, tenant):
    assert api("GET", "/v1/keys", key=tenant["key"]).status == 200
    forged = tenant["key"][:-4] + ("AAAA" if not tenant["key"].endswith("AAAA") else "BBBB")
    assert api("GET", "/v1/keys", key=forged).status == 401


def test_a_suspended_tenant_is_refused_at_once(api, tenant, operator_key):
    assert api("GET", "/v1/keys", key=tenant["key"]).status == 200
    api("PATCH", f"/v1/admin/tenants/{tenant['id']}", key=operator_key, json_body={"status": "suspended"})
    assert api("GET", "/v1/keys", key=tenant["key"]).status == 403


def test_a_key_revoked_through_the_api_is_refused_at_once(api, tenant):
    created = api("POST", "/v1/keys", key=tenant["key"], json_body={"name": "temp"}).json
    assert api("GET", "/v1/mailboxes", key=created["key"]).status == 200
    assert api("DELETE", f"/v1/keys/{created['id']}", key=tenant["key"]).status == 204
    assert api("GET", "/v1/mailboxes", key=created["key"]).status == 401


def test_a_key_deleted_by_another_process_is_refused_after_the_ttl(api, tenant, monkeypatch):
    created = api("POST", "/v1/keys", key=tenant["key"], json_body={"name": "temp"}).json
    assert api("GET", "/v1/mailboxes", key=created["key"]).status == 200
    ApiKey.get(created["id"]).delete()                     # another API process revoked it
    later = ttlcache.time.monotonic() + 31
    monkeypatch.setattr(ttlcache.time, "monotonic", lambda: later)
    assert api("GET", "/v1/mailboxes", key=created["key"]).status == 401


def test_using_a_cached_key_deleted_elsewhere_never_recreates_it(api, tenant, monkeypatch):
    created = api("POST", "/v1/keys", key=tenant["key"], json_body={"name": "temp"}).json
    assert api("GET", "/v1/mailboxes", key=created["key"]).status == 200
    ApiKey.get(created["id"]).delete()
    in_two_minutes = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=2)   # last use is due again
    monkeypatch.setattr(auth, "utcnow", lambda: in_two_minutes)
    assert api("GET", "/v1/mailboxes", key=created["key"]).status == 401
    assert ApiKey.count(created["id"]) == 0


def test_the_cache_can_be_turned_off(api, tenant, monkeypatch):
    monkeypatch.setenv("MAILBRIDGE_AUTH_CACHE_SECONDS", "0")
    reset_settings()
    try:
        assert api("GET", "/v1/keys", key=tenant["key"]).status == 200
        with dynamodb_calls(by_operation_and_table) as calls:
            assert api("GET", "/v1/keys", key=tenant["key"]).status == 200
        assert _auth_reads(calls) == 3           # key, tenant, and the listing's own Query
    finally:
        monkeypatch.delenv("MAILBRIDGE_AUTH_CACHE_SECONDS")
        reset_settings()


@pytest.fixture(autouse=True)
def _fresh_cache():
    auth.auth_cache.forget_all()
    yield
    auth.auth_cache.forget_all()
