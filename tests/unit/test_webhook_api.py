"""Guards the webhook API: secret shown once and never again, URL validation with the SSRF guard, tenant-admin
only, the delivery log (pagination, status filter) and tenant isolation (another tenant's ids are 404)."""
from __future__ import annotations

import json

import pytest

from chalicelib.config import reset_settings
from chalicelib.models.webhook import Webhook
from chalicelib.notify import deliveries, events, webhook_config
from chalicelib.notify.transport import Outcome

URL = "http://127.0.0.1:9/hook"


@pytest.fixture
def no_allowlist(monkeypatch):
    """A non-local deployment: nothing allowed past the SSRF guard."""
    monkeypatch.setenv("MAILBRIDGE_SSRF_ALLOWED_NETWORKS", "")
    reset_settings()
    yield
    monkeypatch.setenv("MAILBRIDGE_SSRF_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
    reset_settings()


def test_secret_is_shown_once_and_kept_encrypted(api, tenant):
    """The signing secret must be returned only when generated and stored only KMS-encrypted."""
    created = api("PUT", "/v1/webhook", key=tenant["key"], json_body={"url": URL})
    assert created.status == 200, created
    secret = created.json["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert created.json["event_types"] == list(webhook_config.EVENT_TYPES)
    got = api("GET", "/v1/webhook", key=tenant["key"])
    assert got.status == 200 and got.json["has_secret"] is True and "secret" not in got.json
    assert secret not in got.body
    stored = Webhook.get(tenant["id"])
    assert secret not in json.dumps(stored.attribute_values) and stored.secret_ciphertext.startswith("v2.")
    assert webhook_config.signing_secret(stored) == secret

    updated = api("PUT", "/v1/webhook", key=tenant["key"],
                  json_body={"url": URL + "2", "event_types": ["outbox.failed", "message.created"]})
    assert updated.status == 200 and updated.json["secret"] is None
    assert updated.json["event_types"] == ["message.created", "outbox.failed"]
    assert updated.json["secret_created_at"] == created.json["secret_created_at"]
    assert webhook_config.signing_secret(Webhook.get(tenant["id"])) == secret

    rotated = api("PUT", "/v1/webhook", key=tenant["key"], json_body={"url": URL, "rotate_secret": True})
    assert rotated.json["secret"].startswith("whsec_") and rotated.json["secret"] != secret


def test_event_types_are_validated(api, tenant):
    """Unknown or internal event types must be refused with a 422 naming the field."""
    for bad in (["directory.changed"], ["nope"], "message.created"):
        result = api("PUT", "/v1/webhook", key=tenant["key"], json_body={"url": URL, "event_types": bad})
        assert result.status == 422 and result.json["errors"][0]["field"].startswith("event_types"), result


@pytest.mark.parametrize("url", ["ftp://example.com/x", "https://user:pw@example.com/x", "https://example.com/#x",
                                 "https:///nohost", "not a url", "https://exa mple.com/"])
def test_malformed_urls_are_refused(api, tenant, url):
    """Non-https, credential-bearing or malformed URLs must be refused on `url`."""
    result = api("PUT", "/v1/webhook", key=tenant["key"], json_body={"url": url})
    assert result.status == 422 and result.json["errors"][0]["field"] == "url", result


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "https://localhost/hook", "https://10.1.2.3/",
                                 "https://169.254.169.254/latest/meta-data", "https://[::1]/x",
                                 "https://[::ffff:192.168.0.1]/x", "https://100.64.0.1/"])
def test_ssrf_guard_refuses_internal_hosts(api, tenant, no_allowlist, url):
    """Internal, loopback and metadata addresses must be refused when the allowlist is empty."""
    result = api("PUT", "/v1/webhook", key=tenant["key"], json_body={"url": url})
    assert result.status == 422 and result.json["errors"][0]["field"] == "url", result
    assert result.json["errors"][0]["message"] == "The URL's host is not reachable from this service."
    assert api("GET", "/v1/webhook", key=tenant["key"]).status == 404


def test_https_is_required_outside_local_stages(api, tenant, no_allowlist, monkeypatch):
    """Plain http must be refused outside the local/test stages."""
    monkeypatch.setenv("MAILBRIDGE_STAGE", "prod")
    monkeypatch.setenv("MAILBRIDGE_PUBLIC_BASE_URL", "https://api.example.test/api")    # required in prod
    reset_settings()
    try:
        result = api("PUT", "/v1/webhook", key=tenant["key"], json_body={"url": "http://93.184.215.14/hook"})
    finally:
        monkeypatch.setenv("MAILBRIDGE_STAGE", "test")
        monkeypatch.delenv("MAILBRIDGE_PUBLIC_BASE_URL")
        reset_settings()
    assert result.status == 422 and result.json["errors"][0]["message"] == "The URL must use https."


def test_tenant_admin_only_and_delete(api, tenant):
    """Webhook routes must be tenant-admin only; delete must remove the config."""
    assert api("PUT", "/v1/webhook", key=tenant["key"], user="u-1", json_body={"url": URL}).status == 403
    assert api("GET", "/v1/webhook", key=tenant["key"]).status == 404
    assert api("POST", "/v1/webhook/test", key=tenant["key"]).status == 404
    assert api("PUT", "/v1/webhook", key=tenant["key"], json_body={"url": URL}).status == 200
    assert api("GET", "/v1/webhook/deliveries", key=tenant["key"], user="u-1").status == 403
    assert api("DELETE", "/v1/webhook", key=tenant["key"]).status == 204
    assert api("GET", "/v1/webhook", key=tenant["key"]).status == 404
    assert api("DELETE", "/v1/webhook", key=tenant["key"]).status == 404


def _deliveries(tenant_id: str, n: int, now: float = 1_900_000_000.0) -> list[str]:
    ids = []
    for i in range(n):
        event = events.emit(tenant_id, "message.created", {"message_id": f"msg_{i}"})
        ids.append(deliveries.create_for_event(event, now=now).delivery_id)
    return ids


def test_delivery_log_pages_filters_and_isolates_tenants(api, tenant, other_tenant):
    """The delivery log must page, filter by status and answer 404 for another tenant's ids."""
    assert api("PUT", "/v1/webhook", key=tenant["key"], json_body={"url": URL}).status == 200
    ids = _deliveries(tenant["id"], 3)
    first = deliveries.get_delivery(tenant["id"], ids[0])
    deliveries._claim(first, 1_900_000_000.0)
    deliveries._record(first, Outcome(True, 200, "200 OK"), 1_900_000_001.0)

    page1 = api("GET", "/v1/webhook/deliveries?limit=2", key=tenant["key"])
    assert page1.status == 200 and [d["id"] for d in page1.json["items"]] == [ids[2], ids[1]]
    assert page1.json["items"][0]["status"] == "pending" and page1.json["items"][0]["next_attempt_at"]
    page2 = api("GET", f"/v1/webhook/deliveries?limit=2&cursor={page1.json['next_cursor']}", key=tenant["key"])
    assert [d["id"] for d in page2.json["items"]] == [ids[0]]
    done = page2.json["items"][0]
    assert (done["status"], done["attempts"], done["last_status_code"], done["last_error"]) == \
        ("delivered", 1, 200, "200 OK")
    delivered = api("GET", "/v1/webhook/deliveries?status=delivered", key=tenant["key"])
    assert [d["id"] for d in delivered.json["items"]] == [ids[0]]
    pending = api("GET", "/v1/webhook/deliveries?status=pending", key=tenant["key"])
    assert {d["id"] for d in pending.json["items"]} == {ids[1], ids[2]}
    assert api("GET", "/v1/webhook/deliveries?status=bogus", key=tenant["key"]).status == 422
    assert api("GET", f"/v1/webhook/deliveries/{ids[0]}", key=tenant["key"]).json["event_id"] == first.event_id

    other = other_tenant["key"]
    assert api("GET", f"/v1/webhook/deliveries/{ids[0]}", key=other).status == 404
    assert api("POST", f"/v1/webhook/deliveries/{ids[0]}/replay", key=other).status == 404
    assert api("GET", "/v1/webhook/deliveries", key=other).json["items"] == []
    assert api("POST", "/v1/webhook/deliveries/replay", key=other,
               json_body={"since": "2000-01-01T00:00:00Z"}).json["replayed"] == 0
    assert deliveries.get_delivery(tenant["id"], ids[0]).status == "delivered"
    assert api("GET", f"/v1/webhook/deliveries?limit=2&cursor={page1.json['next_cursor']}", key=other).status == 400


def test_replay_since_requires_an_aware_time(api, tenant):
    """A replay `since` without a timezone must be refused, not guessed."""
    for since in ("2026-01-01T00:00:00", "yesterday", None):
        result = api("POST", "/v1/webhook/deliveries/replay", key=tenant["key"], json_body={"since": since})
        assert result.status == 422, result


def test_a_missing_webhook_or_relay_says_it_is_not_configured_and_how_to_configure_it(api, tenant):
    """The 404 read "No webhook with id 'webhook'." (and "No notification relay with id 'notification-relay'"):
    an id the caller never sent, for a singleton that is simply not configured yet."""
    for method, path, remedy in (("GET", "/v1/webhook", "PUT /v1/webhook"),
                                 ("POST", "/v1/webhook/test", "PUT /v1/webhook"),
                                 ("DELETE", "/v1/webhook", "PUT /v1/webhook"),
                                 ("GET", "/v1/notification-relay", "PUT /v1/notification-relay"),
                                 ("DELETE", "/v1/notification-relay", "PUT /v1/notification-relay")):
        result = api(method, path, key=tenant["key"])
        assert result.status == 404 and result.json["type"].endswith("/not-found"), (path, result)
        assert "is configured" in result.json["detail"] and remedy in result.json["detail"], (path, result.json)
        assert "with id" not in result.json["detail"]
