"""Guards every URL the service hands out against dropping the API Gateway stage prefix: a deployed stage serves
the API under `https://x.execute-api…/api/v1/…`, so a bare `/v1/…` path (the message detail's `download_url` and
its `cid:` images were one) 404s when followed. Each URL is built from `MAILBRIDGE_PUBLIC_BASE_URL`
(`Settings.public_url`); locally that is `http://127.0.0.1:8000` and the URLs still resolve."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from chalicelib.config import get_settings, load_settings, reset_settings
from chalicelib.providers.base import FetchedMessage, MessageRef
from chalicelib.providers.graph.context import graph_settings
from chalicelib.push.gmail import default_audience
from chalicelib.sync import store
from tests.mailfactory import make_message
from tests.unit.test_message_store import make_mailbox

BASE = "https://api.example.test/api"
LOCAL = "http://127.0.0.1:8000"


@pytest.fixture
def staged(monkeypatch):
    """A deployment whose API lives under a stage prefix."""
    monkeypatch.setenv("MAILBRIDGE_PUBLIC_BASE_URL", BASE + "/")      # a trailing slash is tolerated
    reset_settings()
    yield BASE
    monkeypatch.delenv("MAILBRIDGE_PUBLIC_BASE_URL")
    reset_settings()


def inline_image_message(tenant_id: str):
    mailbox = make_mailbox(tenant_id, "mbx_urls")
    raw = make_message(subject="Logo", html='<p>Hi</p><img src="cid:logo@acme">',
                       attachments=[("logo.png", "image/png", b"\x89PNG-logo")])
    raw = raw.replace(b'Content-Disposition: attachment; filename="logo.png"',
                      b'Content-Disposition: inline; filename="logo.png"\r\nContent-ID: <logo@acme>')
    return store.save_fetched(mailbox, FetchedMessage(MessageRef("inbox", "1"), raw)).message


def path_of(url: str, base: str) -> str:
    assert url.startswith(base + "/v1/"), url
    return url[len(base):]


@pytest.mark.parametrize("base", [BASE, LOCAL])
def test_download_urls_and_inline_images_carry_the_public_base_url_and_resolve(api, tenant, monkeypatch, base):
    monkeypatch.setenv("MAILBRIDGE_PUBLIC_BASE_URL", base)
    reset_settings()
    message = inline_image_message(tenant["id"])
    detail = api("GET", f"/v1/messages/{message.message_id}", key=tenant["key"])
    assert detail.status == 200, detail
    url = detail.json["attachments"][0]["download_url"]
    assert url == f"{base}/v1/messages/{message.message_id}/attachments/0"
    assert f'<img src="{url}">' in detail.json["html"]                   # the cid: map uses the same URL
    download = api("GET", path_of(url, base), key=tenant["key"], headers={"Accept": "image/png"})
    assert download.status == 200 and download.body == b"\x89PNG-logo"


def test_location_redirect_uris_and_authorize_links_carry_the_stage_prefix(api, tenant, staged):
    created = api("POST", "/v1/keys", key=tenant["key"], json_body={"name": "ci"})
    assert created.status == 201 and created.headers["location"] == f"{BASE}/v1/keys/{created.json['id']}"
    server = api("POST", "/v1/mail-servers", key=tenant["key"], json_body={
        "name": "Microsoft", "type": "outlook", "oauth": {"client_id": "app-1", "client_secret": "s3cret"}})
    assert server.status == 201, server
    assert server.json["redirect_uri"] == f"{BASE}/v1/oauth/callback"
    assert server.json["admin_consent_redirect_uri"] == f"{BASE}/v1/oauth/admin-consent"
    assert server.headers["location"] == f"{BASE}/v1/mail-servers/{server.json['id']}"
    google = api("POST", "/v1/mail-servers", key=tenant["key"], json_body={
        "name": "Google", "type": "gmail", "oauth": {"client_id": "app-2", "client_secret": "s3cret"}})
    assert google.status == 201 and google.json["redirect_uri"] == f"{BASE}/v1/oauth/callback"
    mailbox = api("POST", "/v1/mailboxes", key=tenant["key"], user="u-ann", json_body={
        "name": "Gmail", "type": "gmail", "email": "ann@gmail.example", "mail_server_id": google.json["id"]})
    assert mailbox.status == 201, mailbox
    assert mailbox.headers["location"] == f"{BASE}/v1/mailboxes/{mailbox.json['id']}"
    query = parse_qs(urlsplit(mailbox.json["authorize_url"]).query)
    assert query["redirect_uri"] == [f"{BASE}/v1/oauth/callback"]


def test_push_endpoints_given_to_google_and_microsoft_carry_the_stage_prefix(aws, staged):
    assert default_audience() == f"{BASE}/v1/push/gmail"
    assert graph_settings()["notification_url"] == f"{BASE}/v1/push/graph"
    assert graph_settings()["lifecycle_url"] == f"{BASE}/v1/push/graph/lifecycle"


def test_openapi_servers_and_the_reference_page_name_the_public_base_url(api, staged):
    assert api("GET", "/v1/openapi.json").json["servers"] == [{"url": BASE}]
    page = api("GET", "/docs").body
    assert f"B={BASE}</code>" in page and "127.0.0.1" not in page


def test_the_public_url_helper_joins_base_and_path_once():
    assert get_settings().public_url("/v1/health") == f"{get_settings().public_base_url}/v1/health"


@pytest.mark.parametrize("stage", ["dev", "prod"])
@pytest.mark.parametrize("value", [None, "", "/api", "http://api.example.test/api", "api.example.test/api",
                                   "https://", "https://api.example.test/api?x=1", "https://api.example.test/#x"])
def test_a_deployed_stage_refuses_a_public_base_url_that_would_break_its_urls(stage, value):
    """Unset, empty or relative in a deployed stage, every URL handed out was relative (`/v1/push/graph` as the
    Graph notificationUrl, a bare `/v1/oauth/callback` redirect URI) or pointed at the loopback default, and
    nothing said so until a provider refused it; plain http or a query/fragment gave unusable URLs. The
    settings now refuse to load (a cold start fails at once, naming the variable)."""
    env = {"MAILBRIDGE_STAGE": stage} | ({} if value is None else {"MAILBRIDGE_PUBLIC_BASE_URL": value})
    with pytest.raises(ValueError, match="MAILBRIDGE_PUBLIC_BASE_URL"):
        load_settings(env)


@pytest.mark.parametrize("value, base", [("https://api.example.test/api/", "https://api.example.test/api"),
                                         ("https://api.example.test//", "https://api.example.test"),
                                         ("https://api.example.test", "https://api.example.test")])
def test_trailing_slashes_never_make_a_double_slash(value, base):
    settings = load_settings({"MAILBRIDGE_STAGE": "prod", "MAILBRIDGE_PUBLIC_BASE_URL": value})
    assert settings.public_base_url == base and settings.public_url("/v1/health") == f"{base}/v1/health"


def test_local_stages_keep_the_loopback_default_and_plain_http():
    assert load_settings({"MAILBRIDGE_STAGE": "local"}).public_base_url == "http://127.0.0.1:8000"
    assert load_settings({"MAILBRIDGE_STAGE": "test", "MAILBRIDGE_PUBLIC_BASE_URL": "http://127.0.0.1:9000/"}) \
        .public_url("/v1/x") == "http://127.0.0.1:9000/v1/x"
    with pytest.raises(ValueError, match="MAILBRIDGE_PUBLIC_BASE_URL"):
        load_settings({"MAILBRIDGE_STAGE": "local", "MAILBRIDGE_PUBLIC_BASE_URL": ""})
