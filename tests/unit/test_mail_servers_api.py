"""Guards against mail-server secrets leaking (responses, storage) and presets escaping admin/tenant scope."""
import boto3

from chalicelib.models.mailbox import MailServer
from chalicelib.security.crypto import decrypt_secrets

IMAP_PRESET = {"name": "Company IMAP", "type": "imap",
               "imap": {"host": "IMAP.Example.com.", "security": "tls"},
               "smtp": {"host": "smtp.example.com", "security": "starttls", "login_method": "login"}}
SECRET = "gmail-client-secret-VALUE-123"


def _create(api, tenant, body, **kw):
    return api("POST", "/v1/mail-servers", key=tenant["key"], json_body=body, **kw)


def test_imap_preset_gets_defaults_and_normalized_host(api, tenant):
    result = _create(api, tenant, IMAP_PRESET)
    assert result.status == 201, result
    body = result.json
    assert body["id"].startswith("srv_") and body["type"] == "imap"
    assert body["imap"] == {"host": "imap.example.com", "port": 993, "security": "tls", "login_method": "plain"}
    assert body["smtp"] == {"host": "smtp.example.com", "port": 587, "security": "starttls", "login_method": "login"}
    assert body["oauth"] is None and body["redirect_uri"] is None
    fetched = api("GET", f"/v1/mail-servers/{body['id']}", key=tenant["key"])
    assert fetched.status == 200 and fetched.json == body


def test_port_follows_security_when_omitted(api, tenant):
    result = _create(api, tenant, {"name": "p", "type": "imap", "imap": {"host": "mail.example.com",
                                                                        "security": "starttls"},
                                   "smtp": {"host": "mail.example.com", "security": "tls"}})
    assert result.status == 201, result
    assert result.json["imap"]["port"] == 143 and result.json["smtp"]["port"] == 465


def test_oauth_server_secret_is_write_only_and_sealed(api, tenant):
    result = _create(api, tenant, {"name": "Microsoft", "type": "outlook",
                                   "oauth": {"client_id": "app-123", "client_secret": SECRET,
                                             "ms_tenant": "contoso.onmicrosoft.com"}})
    assert result.status == 201, result
    body = result.json
    assert SECRET not in result.body
    assert body["oauth"] == {"client_id": "app-123", "ms_tenant": "contoso.onmicrosoft.com",
                             "client_secret_expires_at": None, "has_client_secret": True}
    assert body["redirect_uri"] == "http://127.0.0.1:8000/v1/oauth/callback"
    stored = MailServer.get(tenant["id"], body["id"])
    assert SECRET not in stored.secret_ciphertext and SECRET not in str(stored.oauth)
    assert decrypt_secrets(tenant["id"], body["id"], stored.secret_ciphertext) == {"client_secret": SECRET}
    listed = api("GET", "/v1/mail-servers", key=tenant["key"])
    assert listed.status == 200 and SECRET not in listed.body
    assert [s["id"] for s in listed.json["items"]] == [body["id"]]


def test_patch_replaces_secret_and_keeps_other_fields(api, tenant):
    created = _create(api, tenant, {"name": "G", "type": "gmail", "oauth": {"client_id": "cid"}}).json
    assert created["oauth"]["has_client_secret"] is False
    result = api("PATCH", f"/v1/mail-servers/{created['id']}", key=tenant["key"],
                 json_body={"name": "Google", "oauth": {"client_secret": "  spaced secret  "}})
    assert result.status == 200, result
    assert result.json["name"] == "Google" and result.json["oauth"]["client_id"] == "cid"
    assert result.json["oauth"]["has_client_secret"] is True
    stored = MailServer.get(tenant["id"], created["id"])
    assert decrypt_secrets(tenant["id"], created["id"], stored.secret_ciphertext) == {
        "client_secret": "  spaced secret  "}
    wrong = api("PATCH", f"/v1/mail-servers/{created['id']}", key=tenant["key"],
                json_body={"imap": {"host": "imap.example.com"}})
    assert wrong.status == 422 and wrong.json["errors"][0]["field"] == "imap"


def test_patch_imap_preset_merges_fields(api, tenant):
    created = _create(api, tenant, IMAP_PRESET).json
    result = api("PATCH", f"/v1/mail-servers/{created['id']}", key=tenant["key"],
                 json_body={"imap": {"host": "imap2.example.com", "port": 1993}})
    assert result.status == 200, result
    assert result.json["imap"] == {"host": "imap2.example.com", "port": 1993, "security": "tls",
                                   "login_method": "plain"}
    assert result.json["smtp"] == created["smtp"]


def test_shape_errors_name_the_field(api, tenant):
    cases = [
        ({"name": "x", "type": "imap"}, "body"),
        ({"name": "x", "type": "gmail", "imap": {"host": "a.example"}}, "body"),
        ({"name": "x", "type": "imap", "imap": {"host": "https://imap.example.com/"}}, "imap.host"),
        ({"name": "x", "type": "imap", "imap": {"host": "imap.example.com", "port": 70000}}, "imap.port"),
        ({"name": "x", "type": "imap", "imap": {"host": "imap.example.com", "security": "ssl"}}, "imap.security"),
        ({"name": "x", "type": "gmail", "oauth": {"client_id": "c", "ms_tenant": "t"}}, "body"),
        ({"name": "x", "type": "outlook", "oauth": {"client_id": "c", "ms_tenant": "../common"}}, "oauth.ms_tenant"),
        ({"name": "x", "type": "outlook", "oauth": {"client_id": "c", "ms_tenant": "a/oauth2?x=1"}},
         "oauth.ms_tenant"),
        ({"name": "", "type": "imap", "imap": {"host": "imap.example.com"}}, "name"),
    ]
    for body, field in cases:
        result = _create(api, tenant, body)
        assert result.status == 422, (body, result)
        assert field in {e["field"] for e in result.json["errors"]}, (body, result.json)


def test_plaintext_transport_refused_unless_the_stage_allows_it(api, tenant, monkeypatch):
    from chalicelib.config import reset_settings
    body = {"name": "x", "type": "imap", "imap": {"host": "imap.example.com", "security": "none"}}
    assert _create(api, tenant, body).status == 201
    with monkeypatch.context() as patch:
        patch.setenv("MAILBRIDGE_ALLOW_INSECURE_MAIL_TRANSPORT", "false")
        reset_settings()
        result = _create(api, tenant, body)
        assert result.status == 422 and [e["field"] for e in result.json["errors"]] == ["imap.security"]
    reset_settings()


def test_tenant_admin_only(api, tenant):
    created = _create(api, tenant, IMAP_PRESET).json
    assert _create(api, tenant, IMAP_PRESET, user="u-alice").status == 403
    assert api("GET", "/v1/mail-servers", key=tenant["key"], user="u-alice").status == 403
    assert api("DELETE", f"/v1/mail-servers/{created['id']}", key=tenant["key"], user="u-alice").status == 403


def test_other_tenant_gets_404(api, tenant, other_tenant):
    created = _create(api, tenant, IMAP_PRESET).json
    path = f"/v1/mail-servers/{created['id']}"
    assert api("GET", path, key=other_tenant["key"]).status == 404
    assert api("PATCH", path, key=other_tenant["key"], json_body={"name": "mine"}).status == 404
    assert api("DELETE", path, key=other_tenant["key"]).status == 404
    assert api("GET", "/v1/mail-servers", key=other_tenant["key"]).json["items"] == []
    assert api("GET", path, key=tenant["key"]).json["name"] == "Company IMAP"


def test_delete_and_pagination(api, tenant):
    ids = [_create(api, tenant, {**IMAP_PRESET, "name": f"s{i}"}).json["id"] for i in range(3)]
    first = api("GET", "/v1/mail-servers?limit=2", key=tenant["key"]).json
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = api("GET", f"/v1/mail-servers?limit=2&cursor={first['next_cursor']}", key=tenant["key"]).json
    assert sorted(s["id"] for s in first["items"] + second["items"]) == sorted(ids)
    assert api("DELETE", f"/v1/mail-servers/{ids[0]}", key=tenant["key"]).status == 204
    assert api("GET", f"/v1/mail-servers/{ids[0]}", key=tenant["key"]).status == 404


def test_secret_is_in_no_stored_item(api, tenant):
    _create(api, tenant, {"name": "M", "type": "outlook", "oauth": {"client_id": "c", "client_secret": SECRET}})
    client = boto3.client("dynamodb")
    for table in client.list_tables()["TableNames"]:
        for item in client.scan(TableName=table)["Items"]:
            assert SECRET not in str(item), table
