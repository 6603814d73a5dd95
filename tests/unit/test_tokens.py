"""Guards the OAuth token home: tokens refreshed only when needed, rotated credentials written back sealed and
version-checked (never lost to a concurrent refresh), and token-endpoint failures mapped to the right codes —
against a fake RFC 6749 token endpoint on loopback."""
from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from chalicelib.credentials.store import CredentialConflict, CredentialStore
from chalicelib.credentials.tokens import RefreshTokenGrant
from chalicelib.models.mailbox import Mailbox
from chalicelib.providers.base import ErrorCode, ProviderError
from chalicelib.providers.oauth_errors import token_error
from tests.sync_helpers import make_mailbox, reload


class FakeTokenEndpoint:
    """POST /token, grant_type=refresh_token. `answers` is a queue of (status, body); by default it issues a
    token and, when `rotate` is set, a new refresh token each time (as Microsoft does)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.answers: list[tuple[int, dict]] = []
        self.rotate = False
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                form = dict(urllib.parse.parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode()))
                endpoint.requests.append(form)
                if endpoint.answers:
                    status, body = endpoint.answers.pop(0)
                else:
                    n = len(endpoint.requests)
                    status, body = 200, {"access_token": f"at-{n}", "expires_in": 3600, "token_type": "Bearer"}
                    if endpoint.rotate:
                        body["refresh_token"] = f"rt-{n}"
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def endpoint():
    fake = FakeTokenEndpoint()
    yield fake
    fake.server.shutdown()


def oauth_mailbox():
    mailbox = make_mailbox(mailbox_type="gmail")
    store = CredentialStore(mailbox.tenant_id, mailbox.mailbox_id)
    store.save({"refresh_token": "rt-0"}, 0)
    return mailbox, store


def source(store, endpoint, clock=lambda: 1000.0):
    return RefreshTokenGrant(store, token_uri=endpoint.url, client_id="client", client_secret="shh",
                             translate=token_error, clock=clock)


def test_token_is_cached_until_shortly_before_it_expires(aws, endpoint):
    _, store = oauth_mailbox()
    now = {"t": 1000.0}
    tokens = source(store, endpoint, clock=lambda: now["t"])
    assert tokens.access_token() == "at-1" and tokens.access_token() == "at-1"
    now["t"] += 3600 - 60                      # inside the 120 s skew before expiry
    assert tokens.access_token() == "at-2"
    assert [r["grant_type"] for r in endpoint.requests] == ["refresh_token", "refresh_token"]
    assert endpoint.requests[0]["refresh_token"] == "rt-0" and endpoint.requests[0]["client_secret"] == "shh"
    tokens.invalidate()                        # the provider got a 401 with it
    assert tokens.access_token() == "at-3"


def test_rotated_refresh_token_is_written_back_sealed_and_versioned(aws, endpoint):
    mailbox, store = oauth_mailbox()
    endpoint.rotate = True
    tokens = source(store, endpoint)
    tokens.access_token()
    fresh = reload(mailbox)
    assert fresh.secret_version == 2
    assert store.load().secrets == {"refresh_token": "rt-1"}
    item = boto3.client("dynamodb").get_item(TableName=Mailbox.Meta.table_name,
                                             Key={"tenant_id": {"S": mailbox.tenant_id},
                                                  "mailbox_id": {"S": mailbox.mailbox_id}})["Item"]
    assert "rt-1" not in json.dumps(item) and "rt-0" not in json.dumps(item)   # only the KMS envelope is stored


def test_unchanged_credentials_are_not_rewritten(aws, endpoint):
    mailbox, store = oauth_mailbox()
    source(store, endpoint).access_token()
    assert reload(mailbox).secret_version == 1


def test_a_concurrent_rotation_is_never_overwritten(aws, endpoint):
    """Guards against a stale refresh overwriting the refresh token another process just rotated."""
    mailbox, store = oauth_mailbox()
    endpoint.rotate = True
    slow = source(store, endpoint)
    _ = slow.credentials                       # loaded at version 1
    CredentialStore(mailbox.tenant_id, mailbox.mailbox_id).save({"refresh_token": "rt-other"}, 1)
    with pytest.raises(CredentialConflict):
        store.save({"refresh_token": "stale"}, 1)
    slow.access_token()                        # its write-back conflicts → it reloads the other's credentials
    assert store.load().secrets == {"refresh_token": "rt-other"}
    assert slow.credentials.secrets == {"refresh_token": "rt-other"}


@pytest.mark.parametrize(("status", "body", "code"), [
    (400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
     ErrorCode.AUTH_REVOKED),
    (401, {"error": "invalid_client"}, ErrorCode.AUTH_REVOKED),
    (400, {"error": "invalid_grant", "error_description": "AADSTS65001: The user or administrator has not "
                                                          "consented to use the application."},
     ErrorCode.NEEDS_ADMIN_CONSENT),
    (400, {"error": "interaction_required", "error_codes": [65001]}, ErrorCode.NEEDS_ADMIN_CONSENT),
    (400, {"error": "consent_required"}, ErrorCode.AUTH_REVOKED),
    (429, {"error": "too_many_requests"}, ErrorCode.THROTTLED),
    (503, {}, ErrorCode.TEMPORARY),
    (400, {"error": "invalid_request"}, ErrorCode.PERMANENT),
])
def test_token_endpoint_errors_are_translated(aws, endpoint, status, body, code):
    _, store = oauth_mailbox()
    endpoint.answers.append((status, body))
    with pytest.raises(ProviderError) as caught:
        source(store, endpoint).access_token()
    assert caught.value.code is code
    assert "rt-0" not in str(caught.value) and "shh" not in str(caught.value)


def test_unreachable_token_endpoint_is_temporary(aws, endpoint):
    _, store = oauth_mailbox()
    endpoint.server.shutdown()
    endpoint.server.server_close()
    with pytest.raises(ProviderError) as caught:
        source(store, endpoint).access_token()
    assert caught.value.code is ErrorCode.TEMPORARY


def test_missing_refresh_token_means_consent_again(aws, endpoint):
    mailbox = make_mailbox(mailbox_type="gmail")
    with pytest.raises(ProviderError) as caught:
        source(CredentialStore(mailbox.tenant_id, mailbox.mailbox_id), endpoint).access_token()
    assert caught.value.code is ErrorCode.AUTH_REVOKED and endpoint.requests == []
