"""Shared by the Graph tests: a fake Microsoft per test (TLS CA generated once per session, trusted through
REQUESTS_CA_BUNDLE), an outlook mail server + mailbox whose MSAL cache comes from a real auth-code flow
against the fake, and a deliverer that hands the fake's HTTP POSTs (validation handshakes, notifications) to
the Chalice app in-process."""
from __future__ import annotations

import base64
from urllib.parse import urlsplit

import pytest

from chalicelib.config import reset_settings
from chalicelib.credentials.store import CredentialStore
from chalicelib.ids import new_id
from chalicelib.models.mailbox import MailServer
from chalicelib.providers.graph.tokens import SCOPES, msal_app, stored_cache
from chalicelib.security.crypto import encrypt_secrets
from chalicelib.timeutil import now_iso
from devservers.fake_microsoft import FakeMicrosoft
from devservers.tlsca import make_loopback_tls
from tests.sync_helpers import ensure_tenant, make_mailbox

CLIENT_ID, CLIENT_SECRET = "00000000-aaaa-bbbb-cccc-000000000001", "fake-client-secret"
ADDRESS = "anna@contoso.example"
REDIRECT_URI = "http://127.0.0.1:8000/v1/oauth/callback"


@pytest.fixture(scope="session")
def loopback_tls(tmp_path_factory):
    return make_loopback_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def fake_ms(loopback_tls, monkeypatch):
    fake = FakeMicrosoft(tls=loopback_tls).start()
    fake.identity.register_app(CLIENT_ID, CLIENT_SECRET)
    fake.add_user(ADDRESS)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake.ca_path)
    monkeypatch.setenv("MAILBRIDGE_MICROSOFT_AUTHORITY_HOST", fake.base_url)
    monkeypatch.setenv("MAILBRIDGE_GRAPH_API_ROOT", fake.graph_root)
    monkeypatch.setenv("MAILBRIDGE_PUBLIC_BASE_URL", "https://mailbridge.test")
    reset_settings()
    yield fake
    fake.stop()
    reset_settings()


def make_outlook_server(tenant_id: str, *, ms_tenant: str = "organizations") -> MailServer:
    ensure_tenant(tenant_id)                      # its item holds the key the client secret is sealed with
    server_id = new_id("srv")
    server = MailServer(tenant_id, server_id, name="Contoso", type="outlook",
                        oauth={"client_id": CLIENT_ID, "ms_tenant": ms_tenant},
                        secret_ciphertext=encrypt_secrets(tenant_id, server_id, {"client_secret": CLIENT_SECRET}),
                        created_at=now_iso(), updated_at=now_iso())
    server.save()
    return server


def consent_cache(fake: FakeMicrosoft, address: str = ADDRESS, ms_tenant: str = "organizations", *,
                  whole: bool = False) -> str:
    """A serialized MSAL cache from a real auth-code flow (PKCE) against the fake, as consent stores it
    (`whole`: MSAL's own serialization, access token included, as caches were stored before 2026-12-02)."""
    import msal
    cache = msal.SerializableTokenCache()
    app = msal_app(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, authority_host=fake.base_url,
                   ms_tenant=ms_tenant, cache=cache)
    flow = app.initiate_auth_code_flow(list(SCOPES), redirect_uri=REDIRECT_URI, login_hint=address,
                                       response_mode="form_post")
    _, _, params = fake.sign_in(flow["auth_uri"])
    result = app.acquire_token_by_auth_code_flow(flow, params)
    assert "access_token" in result, result
    return cache.serialize() if whole else stored_cache(cache)


def outlook_mailbox(fake: FakeMicrosoft, tenant_id: str = "tnt_test", *, address: str = ADDRESS,
                    import_since: str = "2026-11-20", **attrs):
    server = make_outlook_server(tenant_id)
    mailbox = make_mailbox(tenant_id, mailbox_type="outlook", mail_server_id=server.server_id,
                           import_since=import_since, **attrs)
    mailbox.email = address
    mailbox.save()
    CredentialStore(tenant_id, mailbox.mailbox_id).save({"msal_cache": consent_cache(fake, address)}, 0)
    return mailbox


def api_deliver(api):
    """The fake's deliverer for the in-process app: (url, body, headers) → (status, headers, body bytes)."""
    def deliver(url: str, body: bytes, headers: dict) -> tuple[int, dict, bytes]:
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        result = api("POST", path, body=body, headers=headers)
        payload = result.body if isinstance(result.body, bytes) else str(result.body).encode()
        return result.status, result.headers, payload
    return deliver


def raw_mail(n: int, *, subject: str = "Hello", sender: str = "jan@acme.example") -> bytes:
    return (f"From: Jan <{sender}>\r\nTo: {ADDRESS}\r\nSubject: {subject} {n}\r\n"
            f"Date: Mon, 23 Nov 2026 09:{n % 60:02d}:00 +0000\r\nMessage-ID: <graph-{n}-{subject.replace(' ', '')}"
            f"@acme.example>\r\n\r\nBody {n}\r\n").encode()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
