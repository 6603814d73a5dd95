"""Guards connecting a Gmail mailbox through the API: the consent link's parameters (PKCE S256, offline access,
prompt=consent, login_hint, only two scopes), the callback storing secrets only for the right account, denied
consent, forged/replayed/expired state, tenant isolation of the authorize call, and a connected mailbox's first
import."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import requests

from chalicelib.credentials.store import CredentialStore
from chalicelib.credentials.tokens import forget_warm_tokens
from chalicelib.models.consent import ConsentState
from chalicelib.models.mailbox import Mailbox
from chalicelib.models.message import Message
from chalicelib.notify import events
from chalicelib.sync import worker
from tests.gmail_fixtures import EMAIL, TOPIC, days_ago, mail
from tests.sync_helpers import FakeContext, drain, receive_event

RETURN = "https://crm.example/connected"


def gmail_server(api, tenant, google) -> str:
    result = api("POST", "/v1/mail-servers", key=tenant["key"], json_body={
        "name": "Google", "type": "gmail",
        "oauth": {"client_id": google.client_id, "client_secret": google.client_secret},
        "push": {"topic": TOPIC, "audience": "https://mailbridge.example/v1/push/gmail",
                 "service_account": "push@mb-test.iam.gserviceaccount.com"}})
    assert result.status == 201, result
    assert result.json["redirect_uri"].endswith("/v1/oauth/callback") and google.client_secret not in result.body
    return result.json["id"]


def create_gmail(api, tenant, google, **extra):
    body = {"name": "Gmail", "type": "gmail", "email": EMAIL, "mail_server_id": gmail_server(api, tenant, google),
            **extra}
    result = api("POST", "/v1/mailboxes", key=tenant["key"], user="u-ann", json_body=body)
    assert result.status == 201, result
    return result.json


def consent(api, url: str):
    """The browser: open the authorize URL at the fake Google, follow its redirect to our callback."""
    answer = requests.get(url, allow_redirects=False, timeout=10)
    assert answer.status_code == 302
    location = urlsplit(answer.headers["Location"])
    assert location.path == "/v1/oauth/callback"
    return api("GET", f"{location.path}?{location.query}")


def test_connect_end_to_end(api, tenant, google, aws):
    google.deliver(EMAIL, mail(1), received=days_ago(1))
    created = create_gmail(api, tenant, google, return_url=RETURN)
    assert created["status"] == "pending_auth" and created["has_password"] is False
    query = parse_qs(urlsplit(created["authorize_url"]).query)
    assert created["authorize_url"].startswith(google.auth_uri)
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["access_type"] == ["offline"] and query["prompt"] == ["consent"]
    assert query["login_hint"] == [EMAIL] and query["response_type"] == ["code"]
    assert sorted(query["scope"][0].split()) == ["https://www.googleapis.com/auth/gmail.readonly",
                                                 "https://www.googleapis.com/auth/gmail.send"]
    assert "verifier" not in created["authorize_url"]

    result = consent(api, created["authorize_url"])
    assert result.status == 302, result
    assert result.headers["location"] == f"{RETURN}?mailbox_id={created['id']}&outcome=connected"
    mailbox = Mailbox.get(tenant["id"], created["id"])
    assert mailbox.status == "active" and mailbox.push_key == f"gmail#{EMAIL}"
    assert CredentialStore(tenant["id"], created["id"]).load().secrets["refresh_token"].startswith("1//")
    assert mailbox.push_state["topic"] == TOPIC and mailbox.push_expires_at and not mailbox.push_error
    assert google.accounts[EMAIL].watch["labelIds"] == ["INBOX", "SENT"]
    assert [e for e in events.list_events(tenant["id"], "mailbox.status_changed")]
    assert api("GET", f"/v1/mailboxes/{created['id']}", key=tenant["key"]).json["status"] == "active"

    event = receive_event(aws["sync_queue_url"], 10)
    assert len(event["Records"]) == 1
    worker.handle_batch(event, FakeContext())
    assert len(list(Message.by_mailbox.query(created["id"]))) == 1


def test_connecting_asks_google_for_one_token_and_one_profile_per_process(api, tenant, google, aws):
    """Guards against: connecting costing 3 token requests and 3 getProfile reads from the consent callback to
    the first completed sync (the exchange's access token thrown away and refreshed for the watch; the
    profile read again for each folder's initial listing) — while the scope and address checks stay."""
    google.deliver(EMAIL, mail(1), received=days_ago(1))
    google.deliver(EMAIL, mail(2, sender=EMAIL), labels=("SENT",), received=days_ago(1))
    created = create_gmail(api, tenant, google)
    forget_warm_tokens()
    google.calls.clear()
    assert consent(api, created["authorize_url"]).status == 200
    callback = dict(google.calls)
    assert callback == {"authorize": 1, "token": 1, "profile": 1, "watch": 1}      # the exchange's token serves
    forget_warm_tokens()                       # the worker is another (cold) process: one refresh, no more
    google.calls.clear()
    worker.handle_batch(receive_event(aws["sync_queue_url"], 10), FakeContext())
    assert len(list(Message.by_mailbox.query(created["id"]))) == 2
    assert (google.calls["token"], google.calls["profile"]) == (1, 1)          # one historyId for both folders


def test_a_partial_grant_is_denied_and_stores_nothing(api, tenant, google, aws):
    """Guards the scope check the warm-token seeding must not skip: a user who unticks `gmail.send` (Google's
    granular consent; the token answer's `scope` lacks it) is told so, and nothing is stored, watched or queued."""
    google.withhold_scopes = {"https://www.googleapis.com/auth/gmail.send"}
    created = create_gmail(api, tenant, google, return_url=RETURN)
    google.calls.clear()
    assert consent(api, created["authorize_url"]).headers["location"].endswith("outcome=denied")
    assert dict(google.calls) == {"authorize": 1, "token": 1}
    mailbox = Mailbox.get(tenant["id"], created["id"])
    assert mailbox.status == "pending_auth" and not mailbox.secret_ciphertext
    assert drain(aws["sync_queue_url"]) == []


def test_replayed_and_forged_state_are_refused(api, tenant, google, aws):
    created = create_gmail(api, tenant, google)
    answer = requests.get(created["authorize_url"], allow_redirects=False, timeout=10)
    callback = urlsplit(answer.headers["Location"])
    first = api("GET", f"{callback.path}?{callback.query}")
    assert first.status == 200 and "Mailbox connected" in first.body
    again = api("GET", f"{callback.path}?{callback.query}")
    assert again.status == 400 and "invalid_state" in again.body               # single use
    state = parse_qs(callback.query)["state"][0]
    forged = state[:-4] + ("AAAA" if not state.endswith("AAAA") else "BBBB")
    assert "invalid_state" in api("GET", f"/v1/oauth/callback?state={forged}&code=x").body
    assert "invalid_state" in api("GET", "/v1/oauth/callback?code=x").body
    assert "<script>" not in api("GET", "/v1/oauth/callback?state=%3Cscript%3E&error=%3Cscript%3E").body


def test_expired_state_is_refused_and_stores_nothing(api, tenant, google, aws):
    created = create_gmail(api, tenant, google)
    for item in ConsentState.scan():
        item.update(actions=[ConsentState.expires_at.set(1)])
    result = consent(api, created["authorize_url"])
    assert result.status == 400 and "invalid_state" in result.body
    assert Mailbox.get(tenant["id"], created["id"]).status == "pending_auth"


def test_wrong_account_stores_nothing(api, tenant, google, aws):
    google.consent_as = "someone.else@gmail.example"
    created = create_gmail(api, tenant, google, return_url=RETURN)
    result = consent(api, created["authorize_url"])
    assert result.headers["location"].endswith("outcome=wrong_account")
    mailbox = Mailbox.get(tenant["id"], created["id"])
    assert mailbox.status == "pending_auth" and not mailbox.secret_ciphertext
    assert drain(aws["sync_queue_url"]) == []


def test_denied_consent_is_a_clear_outcome(api, tenant, google, aws):
    google.deny = True
    created = create_gmail(api, tenant, google)
    result = consent(api, created["authorize_url"])
    assert result.status == 400 and "Access was not granted" in result.body
    assert Mailbox.get(tenant["id"], created["id"]).status == "pending_auth"


def test_failed_exchange_is_a_clear_outcome(api, tenant, google, aws):
    created = create_gmail(api, tenant, google, return_url=RETURN)
    google.fail("token", 500)
    result = consent(api, created["authorize_url"])
    assert result.headers["location"].endswith("outcome=exchange_failed")
    assert not Mailbox.get(tenant["id"], created["id"]).secret_ciphertext


def test_reauthorize_link_and_tenant_isolation(api, tenant, other_tenant, google, aws):
    created = create_gmail(api, tenant, google)
    path = f"/v1/mailboxes/{created['id']}/authorize"
    fresh = api("POST", path, key=tenant["key"], json_body={"return_url": RETURN})
    assert fresh.status == 200 and fresh.json["expires_in"] == 600
    assert fresh.json["authorize_url"] != created["authorize_url"]
    assert api("POST", path, key=other_tenant["key"], json_body={}).status == 404
    assert api("POST", path, key=tenant["key"], json_body={"return_url": "javascript:alert(1)"}).status == 422
    assert consent(api, fresh.json["authorize_url"]).headers["location"].endswith("outcome=connected")


def test_the_tenants_return_url_applies_when_the_call_names_none(api, tenant, google, aws, operator_key):
    """Guards the per-tenant return URL (issue 9: "a setting per tenant or per call") being unsettable."""
    path = f"/v1/admin/tenants/{tenant['id']}"
    bad = api("PATCH", path, key=operator_key, json_body={"settings": {"oauth_return_url": "javascript:alert(1)"}})
    assert bad.status == 422
    set_url = api("PATCH", path, key=operator_key, json_body={"settings": {"oauth_return_url": RETURN}})
    assert set_url.status == 200 and set_url.json["settings"]["oauth_return_url"] == RETURN, set_url
    created = create_gmail(api, tenant, google)
    assert consent(api, created["authorize_url"]).headers["location"] == \
        f"{RETURN}?mailbox_id={created['id']}&outcome=connected"
    other = create_gmail(api, tenant, google, return_url="https://crm.example/elsewhere")   # the call's own wins
    assert consent(api, other["authorize_url"]).headers["location"].startswith("https://crm.example/elsewhere?")


def test_connecting_without_push_configured_records_no_push_error(api, tenant, google, aws):
    """Guards optional push: a mail server without `push` connects cleanly (no watch, no push_error)."""
    server = api("POST", "/v1/mail-servers", key=tenant["key"], json_body={
        "name": "Google", "type": "gmail",
        "oauth": {"client_id": google.client_id, "client_secret": google.client_secret}})
    assert server.status == 201, server
    created = api("POST", "/v1/mailboxes", key=tenant["key"], user="u-ann", json_body={
        "name": "Gmail", "type": "gmail", "email": EMAIL, "mail_server_id": server.json["id"]}).json
    assert consent(api, created["authorize_url"]).status == 200
    mailbox = Mailbox.get(tenant["id"], created["id"])
    assert mailbox.status == "active" and mailbox.push_error is None and mailbox.push_state is None
    assert google.calls["watch"] == 0


def test_gmail_mailbox_needs_a_gmail_oauth_app(api, tenant, google, aws):
    base = {"name": "Gmail", "type": "gmail", "email": EMAIL}
    assert api("POST", "/v1/mailboxes", key=tenant["key"], user="u-ann", json_body=base).status == 422
    imap = api("POST", "/v1/mail-servers", key=tenant["key"], json_body={
        "name": "IMAP", "type": "imap", "imap": {"host": "imap.example.com"}}).json["id"]
    refused = api("POST", "/v1/mailboxes", key=tenant["key"], user="u-ann", json_body={**base, "mail_server_id": imap})
    assert refused.status == 422 and refused.json["errors"][0]["field"] == "mail_server_id"
    with_password = {**base, "mail_server_id": gmail_server(api, tenant, google), "password": "x"}
    assert api("POST", "/v1/mailboxes", key=tenant["key"], user="u-ann", json_body=with_password).status == 422


def test_connection_test_uses_the_stored_grant(api, tenant, google, aws):
    """Guards POST /test on a gmail mailbox running an IMAP check, and a revoked grant staying 'active'."""
    created = create_gmail(api, tenant, google)
    path = f"/v1/mailboxes/{created['id']}/test"
    pending = api("POST", path, key=tenant["key"])
    assert pending.status == 200 and pending.json["ok"] is False and pending.json["status"] == "pending_auth"
    consent(api, created["authorize_url"])
    ok = api("POST", path, key=tenant["key"])
    assert ok.json["ok"] is True and ok.json["status"] == "active"
    google.revoke(EMAIL)
    revoked = api("POST", path, key=tenant["key"])
    assert revoked.json["ok"] is False and revoked.json["status"] == "auth_error"


def test_another_address_needs_new_consent_and_delete_stops_the_watch(api, tenant, google, aws):
    """Guards against a changed address keeping the old account's grant, cursors and watch, and a deleted
    mailbox leaving its Gmail watch running."""
    created = create_gmail(api, tenant, google)
    consent(api, created["authorize_url"])
    path = f"/v1/mailboxes/{created['id']}"
    before = Mailbox.get(tenant["id"], created["id"])
    changed = api("PATCH", path, key=tenant["key"], json_body={"email": "other@gmail.example"})
    assert changed.status == 200 and changed.json["status"] == "pending_auth", changed
    after = Mailbox.get(tenant["id"], created["id"])
    assert after.secret_ciphertext is None and after.push_state is None and after.push_key is None
    assert int(after.cursor_epoch or 0) == int(before.cursor_epoch or 0) + 1
    assert google.calls["stop"] == 1
    assert api("PATCH", path, key=tenant["key"], json_body={"password": "x"}).status == 422
    recreated = create_gmail(api, tenant, google)
    consent(api, recreated["authorize_url"])
    assert api("DELETE", f"/v1/mailboxes/{recreated['id']}", key=tenant["key"]).status == 204
    assert google.calls["stop"] == 2


def test_a_revoked_grant_shows_in_the_sync_status_and_re_consent_resumes_without_duplicates(api, tenant, google,
                                                                                            aws):
    """Guards against: `invalid_grant` (RFC 6749 §5.2) hidden from `GET /v1/mailboxes/{id}/sync`, or the
    re-consented mailbox re-importing (duplicating) what it had stored or losing what arrived meanwhile."""
    google.deliver(EMAIL, mail(1), received=days_ago(1))
    created = create_gmail(api, tenant, google)
    consent(api, created["authorize_url"])
    sync_path = f"/v1/mailboxes/{created['id']}/sync"

    def run_worker():
        for _ in range(5):
            event = receive_event(aws["sync_queue_url"], 1)
            if not event or not event.get("Records"):
                return
            worker.handle_batch(event, FakeContext())

    run_worker()
    google.deliver(EMAIL, mail(2), received=days_ago(0))
    google.revoke(EMAIL)
    assert api("POST", f"/v1/mailboxes/{created['id']}/refresh", key=tenant["key"]).status == 202
    run_worker()
    status = api("GET", sync_path, key=tenant["key"]).json
    assert status["status"] == "auth_error" and status["last_error"]["code"] == "auth_revoked"
    assert status["counts"]["imported"] == 1

    fresh = api("POST", f"/v1/mailboxes/{created['id']}/authorize", key=tenant["key"], json_body={})
    answer = consent(api, fresh.json["authorize_url"])
    assert answer.status == 200 and "outcome: <code>connected</code>" in answer.body
    google.deliver(EMAIL, mail(3), received=days_ago(0))
    run_worker()
    status = api("GET", sync_path, key=tenant["key"]).json
    assert (status["status"], status["last_error"], status["counts"]["imported"]) == ("active", None, 3)
    stored = sorted(m.rfc_message_id for m in Message.by_mailbox.query(created["id"]))
    assert stored == [f"gmail-{n}@acme.example" for n in (1, 2, 3)]
    created_events = events.list_events(tenant["id"], "message.created", limit=50)
    assert len(created_events) == 3
