"""Guards connecting an Outlook mailbox through the HTTP API against the fake Microsoft (real MSAL): the
form_post callback, the /me account check, and the admin-consent path — consent refused for want of an
administrator → `needs_admin_consent` with an admin-consent URL → the administrator approves at
`GET /v1/oauth/admin-consent` → `pending_auth` → a fresh authorize link connects the mailbox."""
from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

from chalicelib.config import reset_settings
from chalicelib.credentials.store import CredentialStore
from chalicelib.models.mailbox import Mailbox
from chalicelib.notify import events
from tests.graph_helpers import ADDRESS, CLIENT_ID, CLIENT_SECRET, api_deliver


def outlook_server(api, tenant, ms_tenant: str = "organizations") -> str:
    server = api("POST", "/v1/mail-servers", key=tenant["key"], json_body={
        "name": "Contoso", "type": "outlook",
        "oauth": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "ms_tenant": ms_tenant}})
    assert server.status == 201, server
    assert server.json["admin_consent_redirect_uri"].endswith("/v1/oauth/admin-consent")
    return server.json["id"]


def create_outlook(api, tenant, server_id: str):
    return api("POST", "/v1/mailboxes", key=tenant["key"], user="u-ann", json_body={
        "name": "Outlook", "type": "outlook", "email": ADDRESS, "mail_server_id": server_id})


def outlook_mailbox(api, tenant):
    created = create_outlook(api, tenant, outlook_server(api, tenant))
    assert created.status == 201 and created.json["status"] == "pending_auth", created
    return created.json


def back_to_us(api, fake_ms, url: str):
    """The browser at Microsoft, then back at our redirect URI (form_post → POST, admin consent → GET)."""
    method, target, params = fake_ms.sign_in(url)
    path = urlsplit(target).path
    if method == "POST":
        return api("POST", path, body=urlencode(params),
                   headers={"content-type": "application/x-www-form-urlencoded"})
    return api("GET", f"{path}?{urlencode(params)}")


def test_outlook_connects_through_the_form_post_callback(api, tenant, fake_ms, aws):
    fake_ms.deliver = api_deliver(api)           # subscription validation handshakes reach the in-process app
    created = outlook_mailbox(api, tenant)
    answer = back_to_us(api, fake_ms, created["authorize_url"])
    assert answer.status == 200 and "connected" in answer.body, answer.body
    stored = Mailbox.get(tenant["id"], created["id"])
    assert stored.status == "active" and stored.push_state and stored.push_error is None
    assert set(CredentialStore(tenant["id"], created["id"]).load().secrets) >= {"msal_cache"}
    assert len(fake_ms.subscriptions) == 2                     # inbox and sent items
    assert CLIENT_SECRET not in answer.body


def test_admin_consent_path_end_to_end(api, tenant, fake_ms, aws):
    """Guards against: organisations requiring admin approval ending in a generic failure or a dead end."""
    organisation = fake_ms.mail.user(ADDRESS).tenant_id
    fake_ms.identity.admin_approval_required.add(organisation)
    created = outlook_mailbox(api, tenant)
    refused = back_to_us(api, fake_ms, created["authorize_url"])
    assert "needs_admin_consent" in refused.body
    path = f"/v1/mailboxes/{created['id']}"
    assert api("GET", path, key=tenant["key"]).json["status"] == "needs_admin_consent"
    links = api("POST", f"{path}/authorize", key=tenant["key"], json_body={})
    assert links.status == 200, links
    admin_url = links.json["admin_consent_url"]
    query = parse_qs(urlsplit(admin_url).query)
    assert urlsplit(admin_url).path == "/organizations/v2.0/adminconsent"
    assert query["redirect_uri"][0].endswith("/v1/oauth/admin-consent") and query["client_id"] == [CLIENT_ID]
    fake_ms.identity.sign_in_as = ADDRESS                         # an administrator of that organisation
    approved = back_to_us(api, fake_ms, admin_url)
    assert approved.status == 200 and "admin_consented" in approved.body
    assert api("GET", path, key=tenant["key"]).json["status"] == "pending_auth"
    replayed = back_to_us(api, fake_ms, admin_url)                # the state was single-use
    assert "invalid_state" in replayed.body
    fake_ms.identity.sign_in_as = None
    fresh = api("POST", f"{path}/authorize", key=tenant["key"], json_body={}).json
    assert fresh.get("admin_consent_url") is None
    connected = back_to_us(api, fake_ms, fresh["authorize_url"])
    assert "connected" in connected.body
    assert api("GET", path, key=tenant["key"]).json["status"] == "active"
    statuses = [e.payload["status"] for e in events.list_events(tenant["id"], "mailbox.status_changed")]
    assert statuses[::-1] == ["needs_admin_consent", "pending_auth", "active"]


def test_a_callback_state_cannot_be_used_as_an_admin_consent_answer(api, tenant, fake_ms, aws):
    created = outlook_mailbox(api, tenant)
    state = parse_qs(urlsplit(created["authorize_url"]).query)["state"][0]
    query = urlencode({"state": state, "admin_consent": "True", "tenant": "x"})
    forged = api("GET", f"/v1/oauth/admin-consent?{query}")
    assert "invalid_state" in forged.body
    assert Mailbox.get(tenant["id"], created["id"]).status == "pending_auth"


def test_an_unreachable_identity_platform_is_a_502_and_leaves_no_mailbox(api, tenant, fake_ms, aws):
    """Guards against: a 500 (and a half-created mailbox the client never learns the id of) when MSAL cannot
    read the authority's OpenID metadata to build the authorize link."""
    server_id = outlook_server(api, tenant)
    fake_ms.stop()                                          # Microsoft's identity platform is unreachable
    refused = create_outlook(api, tenant, server_id)
    assert refused.status == 502 and refused.json["type"].endswith("/upstream"), refused
    assert "could not be reached" in refused.json["detail"] and CLIENT_SECRET not in refused.body
    assert api("GET", "/v1/mailboxes", key=tenant["key"]).json["items"] == []


def test_a_fresh_link_while_microsoft_is_unreachable_is_a_502(api, tenant, fake_ms, aws, monkeypatch):
    """Guards against: a 500 from POST /authorize during an identity-platform outage (the mailbox stays)."""
    created = outlook_mailbox(api, tenant)
    port = fake_ms.port
    fake_ms.stop()
    monkeypatch.setenv("MAILBRIDGE_MICROSOFT_AUTHORITY_HOST", f"https://localhost:{port}")  # nothing cached for it
    reset_settings()
    links = api("POST", f"/v1/mailboxes/{created['id']}/authorize", key=tenant["key"], json_body={})
    assert links.status == 502 and links.json["type"].endswith("/upstream"), links
    assert api("GET", f"/v1/mailboxes/{created['id']}", key=tenant["key"]).json["status"] == "pending_auth"


def test_a_tenant_microsoft_does_not_know_is_a_422_on_the_mail_server(api, tenant, fake_ms, aws):
    """Guards against: a 500 when the mail server names a Microsoft tenant that does not exist (AADSTS90002)."""
    refused = create_outlook(api, tenant, outlook_server(api, tenant, ms_tenant="no-such-tenant.example"))
    assert refused.status == 422, refused
    assert [e["field"] for e in refused.json["errors"]] == ["mail_server_id"]
    assert "ms_tenant" in refused.json["detail"]
    assert api("GET", "/v1/mailboxes", key=tenant["key"]).json["items"] == []
