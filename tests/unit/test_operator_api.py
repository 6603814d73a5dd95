"""Guards the operator API and CLI: tenants, plans, first keys; only the operator key may use them."""
import json

from chalicelib import admin
from chalicelib.models.tenant import ApiKey, Tenant


def test_create_list_and_update_tenants(api, operator_key):
    created = api("POST", "/v1/admin/tenants", key=operator_key,
                  json_body={"name": "Beta", "plan": "free", "settings": {"import_window_days": 30}})
    assert created.status == 201, created
    assert created.json["plan"] == "free" and created.json["api_key"].startswith("mbk_")
    assert api("GET", "/v1/keys", key=created.json["api_key"]).status == 200

    listed = api("GET", "/v1/admin/tenants", key=operator_key)
    assert created.json["id"] in {t["id"] for t in listed.json["items"]}
    assert "api_key" not in listed.body

    patched = api("PATCH", f"/v1/admin/tenants/{created.json['id']}", key=operator_key,
                  json_body={"plan": "enterprise", "settings": {"import_window_days": 120}})
    assert patched.status == 200 and patched.json["plan"] == "enterprise"
    assert Tenant.get(created.json["id"]).settings == {"import_window_days": 120}


def test_tenant_keys_cannot_use_operator_api(api, tenant):
    assert api("GET", "/v1/admin/tenants", key=tenant["key"]).status == 401
    assert api("GET", "/v1/admin/tenants").status == 401
    assert api("GET", "/v1/admin/tenants", key="mbo_" + "x" * 43).status == 401


def test_unknown_plan_is_a_field_error(api, operator_key):
    result = api("POST", "/v1/admin/tenants", key=operator_key, json_body={"name": "X", "plan": "platinum"})
    assert result.status == 422 and result.json["errors"][0]["field"] == "plan"


def test_patch_unknown_tenant_is_404(api, operator_key):
    assert api("PATCH", "/v1/admin/tenants/tnt_nope", key=operator_key, json_body={"plan": "free"}).status == 404


def test_patch_tenant_with_explicit_nulls_leaves_those_fields_unchanged(api, operator_key, tenant):
    """`"settings": null` / `"own_domains": null` crashed the merge (AttributeError/TypeError → 500); schemathesis."""
    before = Tenant.get(tenant["id"])
    patched = api("PATCH", f"/v1/admin/tenants/{tenant['id']}", key=operator_key,
                  json_body={"name": "Renamed", "settings": None, "own_domains": None, "plan": None, "status": None})
    assert patched.status == 200, patched
    after = Tenant.get(tenant["id"])
    assert after.name == "Renamed"
    assert (after.settings, after.own_domains, after.plan, after.status) == \
        (before.settings, before.own_domains, before.plan, before.status)


def test_non_ascii_tenant_list_cursor_is_400(api, operator_key):
    """A non-ASCII cursor crashed the HMAC comparison in the operator listing (TypeError → 500); schemathesis."""
    result = api("GET", "/v1/admin/tenants?cursor=%C3%9C.%26%28%C3%B3L", key=operator_key)
    assert result.status == 400, result


def test_operator_can_suspend_a_tenant(api, operator_key, tenant):
    api("PATCH", f"/v1/admin/tenants/{tenant['id']}", key=operator_key, json_body={"status": "suspended"})
    assert Tenant.get(tenant["id"]).status == "suspended"
    refused = api("GET", "/v1/keys", key=tenant["key"])
    assert refused.status == 403 and "suspended" in refused.json["detail"]
    api("PATCH", f"/v1/admin/tenants/{tenant['id']}", key=operator_key, json_body={"status": "active"})
    assert api("GET", "/v1/keys", key=tenant["key"]).status == 200


def test_cli_creates_tenant_sets_plan_and_issues_keys(aws, capsys):
    assert admin.main(["create-tenant", "--name", "CLI Co", "--plan", "standard", "--domain", "cli.example"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert Tenant.get(out["tenant_id"]).own_domains == ["cli.example"]
    assert ApiKey.get(out["api_key"].split("_")[1]).tenant_id == out["tenant_id"]
    assert admin.main(["set-plan", out["tenant_id"], "enterprise"]) == 0
    capsys.readouterr()
    assert Tenant.get(out["tenant_id"]).plan == "enterprise"
    assert admin.main(["issue-key", out["tenant_id"], "--name", "second"]) == 0
    issued = json.loads(capsys.readouterr().out)
    assert ApiKey.get(issued["key_id"]).name == "second"
    assert admin.main(["issue-key", "tnt_missing"]) == 1


def test_cli_operator_key_prints_matching_hash(capsys):
    import hashlib
    assert admin.main(["operator-key"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert hashlib.sha256(out["operator_key"].encode()).hexdigest() == out["MAILBRIDGE_OPERATOR_KEY_SHA256"]
