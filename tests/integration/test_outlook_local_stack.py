"""Outlook through the local stack (`make run`) over HTTP, against the fake Microsoft over TLS (its CA trusted
through REQUESTS_CA_BUNDLE): consent refused for want of an administrator → admin consent → the owner connects
(form_post callback) → mail appears; a change notification the fake POSTs to the stack brings a new message in
on the next worker pass; an idle sync costs one Graph request per folder."""
from __future__ import annotations

import time

import pytest
import requests

from devservers.dovecot import free_port
from devservers.fake_microsoft import FakeMicrosoft
from tests.graph_helpers import ADDRESS, CLIENT_ID, CLIENT_SECRET, raw_mail
from tests.local_stack_helpers import clear_of_the_half_hour_tick, start_stack, stop_stack, wait_for

pytestmark = pytest.mark.slow


def browser(fake: FakeMicrosoft, url: str) -> requests.Response:
    """The browser at Microsoft, then at the stack's redirect URI (form_post → POST, admin consent → GET)."""
    method, target, params = fake.sign_in(url)
    if method == "POST":
        return requests.post(target, data=params, allow_redirects=False, timeout=30)
    return requests.get(target, params=params, allow_redirects=False, timeout=30)



@pytest.fixture
def fake(loopback_tls):
    with FakeMicrosoft(tls=loopback_tls) as fake:
        fake.identity.register_app(CLIENT_ID, CLIENT_SECRET)
        organisation = fake.add_user(ADDRESS).tenant_id
        fake.identity.admin_approval_required.add(organisation)
        for n in range(2):
            fake.mail.add_message(ADDRESS, "inbox", raw_mail(n))
        fake.mail.add_message(ADDRESS, "sentitems", raw_mail(9, sender=ADDRESS))
        yield fake


def test_outlook_connects_through_admin_consent_and_syncs_by_push_in_the_local_stack(tmp_path, fake):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process, key = start_stack(tmp_path / "state", port, tmp_path / "stack.log", env={
        "REQUESTS_CA_BUNDLE": fake.ca_path, "MAILBRIDGE_MICROSOFT_AUTHORITY_HOST": fake.base_url,
        "MAILBRIDGE_GRAPH_API_ROOT": fake.graph_root})
    auth = {"Authorization": f"Bearer {key}"}
    try:
        server = requests.post(f"{base}/v1/mail-servers", headers=auth, timeout=10, json={
            "name": "Contoso", "type": "outlook",
            "oauth": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "ms_tenant": "organizations"}})
        assert server.status_code == 201 and server.json()["redirect_uri"] == f"{base}/v1/oauth/callback"
        created = requests.post(f"{base}/v1/mailboxes", headers={**auth, "X-User-Id": "u-ann"}, timeout=30, json={
            "name": "Outlook", "type": "outlook", "email": ADDRESS, "mail_server_id": server.json()["id"]})
        assert created.status_code == 201, created.text
        mailbox = f"{base}/v1/mailboxes/{created.json()['id']}"

        refused = browser(fake, created.json()["authorize_url"])
        assert refused.status_code == 400 and "needs_admin_consent" in refused.text
        links = requests.post(f"{mailbox}/authorize", headers=auth, json={}, timeout=30).json()
        approved = browser(fake, links["admin_consent_url"])
        assert approved.status_code == 200 and "admin_consented" in approved.text
        fresh = requests.post(f"{mailbox}/authorize", headers=auth, json={}, timeout=30).json()
        connected = browser(fake, fresh["authorize_url"])
        assert connected.status_code == 200 and "connected" in connected.text
        assert len(fake.subscriptions) == 2 and len(fake.validations) == 4    # handshakes over HTTP, per URL

        def messages():
            return requests.get(f"{mailbox}/messages", headers=auth, timeout=10).json()["items"]
        assert len(wait_for(lambda: len(messages()) == 3 and messages(), "the first import")) == 3

        message_id = fake.mail.add_message(ADDRESS, "inbox", raw_mail(20, subject="Pushed"))
        assert [status for status, _, _ in fake.notify(ADDRESS, "inbox", message_id)] == [202]
        pushed = wait_for(lambda: [m for m in messages() if m["subject"] == "Pushed 20"], "the pushed message")
        assert len(pushed) == 1

        def sync_status():
            return requests.get(f"{mailbox}/sync", headers=auth, timeout=10).json()
        clear_of_the_half_hour_tick()
        status = wait_for(lambda: (lambda s: not s["lease_held"] and s)(sync_status()), "the push's sync to end")
        time.sleep(1.1)                 # last_sync_started_at has a resolution of one second
        before = len(fake.requests_for(ADDRESS))
        assert requests.post(f"{mailbox}/refresh", headers=auth, timeout=10).status_code == 202
        wait_for(lambda: (lambda s: s["last_sync_started_at"] != status["last_sync_started_at"]
                          and not s["lease_held"] and s["stage"] == "idle")(sync_status()), "the refresh's sync")
        assert fake.requests_for(ADDRESS)[before:] == [("GET", "/me/mailFolders/inbox/messages/delta"),
                                                       ("GET", "/me/mailFolders/sentitems/messages/delta")]
        assert fake.missing_immutable_id == 0
    finally:
        stop_stack(process)
