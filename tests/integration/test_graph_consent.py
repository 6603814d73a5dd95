"""Outlook consent through real MSAL against the fake identity platform: PKCE + form_post, the /me account
check, admin consent, refusals, driven directly (the same through the HTTP API: test_outlook_consent_api.py)."""
from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from chalicelib.credentials.store import CredentialStore
from chalicelib.providers.graph.consent import ConsentFailed, OutlookConsent
from chalicelib.providers.kinds import provider_for
from tests.graph_helpers import ADDRESS, CLIENT_SECRET, REDIRECT_URI, make_outlook_server
from tests.sync_helpers import make_mailbox, reload

pytestmark = pytest.mark.usefixtures("aws")


@pytest.fixture
def setup(fake_ms):
    server = make_outlook_server("tnt_test")
    mailbox = make_mailbox("tnt_test", mailbox_type="outlook", mail_server_id=server.server_id,
                           status="pending_auth")
    mailbox.email = ADDRESS
    mailbox.save()
    return OutlookConsent(), server, mailbox


def begin(flow, server, mailbox, state="st-1"):
    return flow.begin(mailbox=mailbox, server=server, client_secret=CLIENT_SECRET, redirect_uri=REDIRECT_URI,
                      state=state)


def complete(flow, server, mailbox, begun, params):
    pending = {k: str(v) for k, v in begun.pending.items()}     # what the generic state store seals and restores
    return flow.complete(mailbox=mailbox, server=server, client_secret=CLIENT_SECRET, redirect_uri=REDIRECT_URI,
                         pending=pending, params=params)


def test_consent_grants_a_cache_whose_refresh_token_syncs(fake_ms, setup):
    """Guards against: a consent that stores nothing usable, or leaks the PKCE verifier to the browser."""
    flow, server, mailbox = setup
    begun = begin(flow, server, mailbox)
    query = parse_qs(urlsplit(begun.authorize_url).query)
    assert query["login_hint"] == [ADDRESS] and query["response_mode"] == ["form_post"]
    assert query["code_challenge_method"] == ["S256"] and query["state"] == ["st-1"]
    assert {"Mail.Read", "Mail.Send", "User.Read"} <= set(query["scope"][0].split())
    assert all(isinstance(value, str) for value in begun.pending.values())    # the state store seals strings
    assert json.loads(begun.pending["flow"])["code_verifier"] not in begun.authorize_url
    method, target, params = fake_ms.sign_in(begun.authorize_url)
    assert (method, target) == ("POST", REDIRECT_URI)
    granted = complete(flow, server, mailbox, begun, params)
    assert granted.account_email == ADDRESS and set(granted.secrets) == {"msal_cache"}
    CredentialStore(mailbox.tenant_id, mailbox.mailbox_id).save(granted.secrets, 0)
    mailbox = reload(mailbox)
    provider_for(mailbox, CredentialStore(mailbox.tenant_id, mailbox.mailbox_id).decode(mailbox)).test_connection()
    assert fake_ms.identity.token_requests == ["authorization_code", "refresh_token"]   # no access token stored


def test_another_account_signing_in_is_wrong_account(fake_ms, setup):
    """Guards against: connecting someone else's mailbox under this mailbox's address."""
    flow, server, mailbox = setup
    fake_ms.add_user("mallory@contoso.example")
    fake_ms.identity.sign_in_as = "mallory@contoso.example"
    begun = begin(flow, server, mailbox)
    _, _, params = fake_ms.sign_in(begun.authorize_url)
    with pytest.raises(ConsentFailed) as caught:
        complete(flow, server, mailbox, begun, params)
    assert caught.value.outcome == "wrong_account"


def test_admin_consent_path(fake_ms, setup):
    """Guards against: organisations requiring admin approval ending in a generic failure."""
    flow, server, mailbox = setup
    org = fake_ms.mail.user(ADDRESS).tenant_id
    fake_ms.identity.admin_approval_required.add(org)
    begun = begin(flow, server, mailbox)
    _, _, params = fake_ms.sign_in(begun.authorize_url)
    assert params["error"] == "consent_required"
    with pytest.raises(ConsentFailed) as caught:
        complete(flow, server, mailbox, begun, params)
    assert caught.value.outcome == "needs_admin_consent"
    admin_url = flow.admin_consent_url(server=server, redirect_uri=REDIRECT_URI, state="st-1")
    parts = urlsplit(admin_url)
    assert parts.path == "/organizations/v2.0/adminconsent"
    assert parse_qs(parts.query)["scope"] == ["https://graph.microsoft.com/Mail.Read "
                                              "https://graph.microsoft.com/Mail.Send "
                                              "https://graph.microsoft.com/User.Read"]
    fake_ms.identity.sign_in_as = ADDRESS                 # an admin of the same organisation approves
    method, target, answer = fake_ms.sign_in(admin_url)
    assert (method, target, answer["admin_consent"], answer["state"]) == ("GET", REDIRECT_URI, "True", "st-1")
    assert OutlookConsent.admin_consent_result(answer) == org
    fake_ms.identity.sign_in_as = None
    again = begin(flow, server, mailbox, state="st-2")     # the user finishes with a fresh authorize URL
    _, _, params = fake_ms.sign_in(again.authorize_url)
    assert complete(flow, server, mailbox, again, params).account_email == ADDRESS


def test_refusals_are_clear_outcomes(fake_ms, setup):
    """Guards against: unknown users, tampered state or a replayed code surfacing as a 500."""
    flow, server, mailbox = setup
    begun = begin(flow, server, mailbox)
    _, _, params = fake_ms.sign_in(begun.authorize_url)
    with pytest.raises(ConsentFailed) as caught:
        complete(flow, server, mailbox, begun, {**params, "state": "forged"})
    assert caught.value.outcome == "invalid_state"
    complete(flow, server, mailbox, begun, params)
    with pytest.raises(ConsentFailed) as caught:            # the code is single-use
        complete(flow, server, mailbox, begun, params)
    assert caught.value.outcome == "exchange_failed"
    mailbox.email = "nobody@contoso.example"
    _, _, params = fake_ms.sign_in(begin(flow, server, mailbox).authorize_url)
    with pytest.raises(ConsentFailed) as caught:
        complete(flow, server, mailbox, begun, params)
    assert caught.value.outcome == "denied"
    with pytest.raises(ConsentFailed) as caught:
        OutlookConsent.admin_consent_result({"error": "access_denied", "state": "x"})
    assert caught.value.outcome == "denied"
