"""MSAL token source against the fake identity platform: the serialized cache is written back only when it
changed and the stored refresh token is 12 h old, rotated refresh tokens survive, and token failures map to the
right mailbox state."""
from __future__ import annotations

import json
import time

import pytest

from chalicelib.credentials.store import CredentialStore
from chalicelib.credentials.tokens import forget_warm_tokens
from chalicelib.providers.base import ErrorCode, ProviderError
from chalicelib.providers.graph.tokens import PERSIST_AFTER_SECONDS
from chalicelib.providers.kinds import provider_for
from tests.graph_helpers import ADDRESS, consent_cache, outlook_mailbox
from tests.sync_helpers import reload

pytestmark = pytest.mark.usefixtures("aws")


def provider(mailbox):
    mailbox = reload(mailbox)
    return provider_for(mailbox, CredentialStore(mailbox.tenant_id, mailbox.mailbox_id).decode(mailbox))


def version(mailbox) -> int:
    return CredentialStore(mailbox.tenant_id, mailbox.mailbox_id).load().version


def test_a_warm_process_reuses_its_access_token_without_writing_credentials(fake_ms):
    """Guards against: a token request on every sync of a warm Lambda (each job builds a new provider), or a
    credential write (KMS + DynamoDB) although nothing that is stored changed."""
    mailbox = outlook_mailbox(fake_ms)
    for _ in range(3):                     # three jobs in one process, each with a provider of its own
        provider(mailbox).test_connection()
    assert fake_ms.identity.token_requests == ["authorization_code", "refresh_token"]
    assert version(mailbox) == 1
    forget_warm_tokens()                   # a cold process: refreshes from the stored cache alone
    provider(mailbox).test_connection()
    assert fake_ms.identity.token_requests == ["authorization_code", "refresh_token", "refresh_token"]


def test_a_new_grant_never_reuses_the_previous_grants_access_token(fake_ms):
    """Guards against: a warm process answering with the access token of a grant the user replaced (consent
    again, e.g. as another user) — the warm token is keyed by the stored secrets."""
    mailbox = outlook_mailbox(fake_ms)
    provider(mailbox).test_connection()
    store = CredentialStore(mailbox.tenant_id, mailbox.mailbox_id)
    credentials = store.load()
    store.save({**credentials.secrets, "msal_cache": credentials.secrets["msal_cache"] + " "}, credentials.version)
    provider(mailbox).test_connection()
    assert fake_ms.identity.token_requests == ["authorization_code", "refresh_token", "refresh_token"]


def test_a_cache_stored_with_its_access_token_is_still_answered_from_it(fake_ms):
    """Guards against: caches stored before access tokens were left out (MSAL's whole serialization) no longer
    working, or costing a refresh while their access token is valid."""
    mailbox = outlook_mailbox(fake_ms)
    store = CredentialStore(mailbox.tenant_id, mailbox.mailbox_id)
    credentials = store.load()
    store.save({**credentials.secrets, "msal_cache": consent_cache(fake_ms, whole=True)}, credentials.version)
    provider(mailbox).test_connection()
    assert fake_ms.identity.token_requests == ["authorization_code", "authorization_code"]
    assert version(mailbox) == 2


def stored_refresh_token(mailbox) -> tuple[str, int]:
    """(secret, last_modification_time) of the refresh token in the mailbox's stored MSAL cache."""
    cache = json.loads(CredentialStore(mailbox.tenant_id, mailbox.mailbox_id).load().secrets["msal_cache"])
    (entry,) = cache["RefreshToken"].values()
    return entry["secret"], int(entry["last_modification_time"])


def age_stored_refresh_token(mailbox, seconds: int) -> None:
    store = CredentialStore(mailbox.tenant_id, mailbox.mailbox_id)
    credentials = store.load()
    cache = json.loads(credentials.secrets["msal_cache"])
    for entry in cache["RefreshToken"].values():
        entry["last_modification_time"] = str(int(entry["last_modification_time"]) - seconds)
    store.save({**credentials.secrets, "msal_cache": json.dumps(cache)}, credentials.version)


def test_a_refresh_is_not_written_back_while_the_stored_refresh_token_is_young(fake_ms):
    """Guards against: rewriting the sealed MSAL cache at every hourly refresh (write units on every other
    tick) — Microsoft leaves a used refresh token valid, so the stored one keeps working."""
    mailbox = outlook_mailbox(fake_ms)
    stored = stored_refresh_token(mailbox)
    for _ in range(2):                     # two later runs, each from the stored cache only
        graph = provider(mailbox)
        graph.client.tokens.invalidate()
        graph.test_connection()
    assert fake_ms.identity.token_requests == ["authorization_code", "refresh_token", "refresh_token"]
    assert version(mailbox) == 1 and stored_refresh_token(mailbox) == stored


def test_a_refresh_is_written_back_once_the_stored_token_is_12_hours_old_and_used_next_time(fake_ms):
    """Guards against: the stored refresh token ageing without bound, or the rotated one being lost when it is
    written back (the next run must work with it alone)."""
    mailbox = outlook_mailbox(fake_ms)
    age_stored_refresh_token(mailbox, PERSIST_AFTER_SECONDS + 60)
    old_secret, _ = stored_refresh_token(mailbox)
    graph = provider(mailbox)
    graph.client.tokens.invalidate()
    graph.test_connection()
    new_secret, written_at = stored_refresh_token(mailbox)
    assert new_secret != old_secret and abs(written_at - time.time()) < 60 and version(mailbox) == 3
    del fake_ms.identity.refresh_tokens[old_secret]          # the old one's lifetime is over
    again = provider(mailbox)
    again.client.tokens.invalidate()
    again.test_connection()
    assert fake_ms.identity.token_requests[-1] == "refresh_token" and version(mailbox) == 3


def test_the_stored_cache_keeps_only_what_the_silent_flow_reads(fake_ms):
    """Guards against: the sealed MSAL cache growing back to MSAL's indented whole (access and ID tokens, app
    metadata), which every write of the mailbox item pays for in write units — and against a stripped cache
    MSAL cannot use."""
    mailbox = outlook_mailbox(fake_ms)
    for _ in range(2):                     # consent's cache, then the one written back after a refresh
        stored = CredentialStore(mailbox.tenant_id, mailbox.mailbox_id).load().secrets["msal_cache"]
        assert set(json.loads(stored)) == {"RefreshToken", "Account"}
        assert "\n" not in stored and ": " not in stored
        graph = provider(mailbox)
        graph.client.tokens.invalidate()   # MSAL redeems the stored refresh token for the stored account
        graph.test_connection()
    assert fake_ms.identity.token_requests == ["authorization_code", "refresh_token", "refresh_token"]


def test_a_401_refreshes_once_then_reports_revoked(fake_ms):
    """Guards against: an expired token failing the sync, or endless refresh loops on a dead grant."""
    mailbox = outlook_mailbox(fake_ms)
    fake_ms.inject(401, {"error": {"code": "InvalidAuthenticationToken", "message": "expired"}}, path="/me")
    provider(mailbox).test_connection()
    assert fake_ms.identity.token_requests[-1] == "refresh_token"
    fake_ms.inject(401, {"error": {"code": "InvalidAuthenticationToken", "message": "expired"}}, path="/me",
                   times=2)
    with pytest.raises(ProviderError) as caught:
        provider(mailbox).test_connection()
    assert caught.value.code == ErrorCode.AUTH_REVOKED


def test_revoked_grant_is_auth_revoked(fake_ms):
    """Guards against: retrying forever with a refresh token the user revoked."""
    mailbox = outlook_mailbox(fake_ms)
    fake_ms.identity.revoke(ADDRESS)
    with pytest.raises(ProviderError) as caught:
        provider(mailbox).test_connection()
    assert caught.value.code == ErrorCode.AUTH_REVOKED


def test_admin_approval_required_on_refresh_is_needs_admin_consent(fake_ms):
    """Guards against: an organisation's admin-consent requirement shown as a revoked grant."""
    mailbox = outlook_mailbox(fake_ms)
    fake_ms.identity.admin_approval_required.add(fake_ms.mail.user(ADDRESS).tenant_id)
    graph = provider(mailbox)
    graph.client.tokens.invalidate()
    with pytest.raises(ProviderError) as caught:
        graph.test_connection()
    assert caught.value.code == ErrorCode.NEEDS_ADMIN_CONSENT
