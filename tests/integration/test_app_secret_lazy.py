"""The OAuth app's client secret is decrypted only when a token refresh needs it, and a cold process opens the
mailbox's credentials and the client secret with ONE KMS Decrypt (the root key's, which opens the tenant's key
both are sealed under)."""
from __future__ import annotations


import pytest

from chalicelib.credentials import app_secret
from chalicelib.models.mailbox import MailServer
from chalicelib.providers.base import ErrorCode, ProviderError
from chalicelib.providers.kinds import build_provider
from chalicelib.security.crypto import clear_data_key_cache
from tests.gmail_fixtures import make_gmail_mailbox
from tests.graph_helpers import outlook_mailbox
from tests.sync_helpers import aws_calls, reload

pytestmark = pytest.mark.usefixtures("aws")


def kms_calls():
    """Counts KMS operations as they leave botocore while open."""
    return aws_calls("kms")


@pytest.fixture
def secret_opens(monkeypatch):
    """How many times the OAuth app's client secret was decrypted."""
    opened = []
    real = app_secret.decrypt_secrets

    def counting(tenant_id, owner_id, blob):
        opened.append(owner_id)
        return real(tenant_id, owner_id, blob)

    monkeypatch.setattr(app_secret, "decrypt_secrets", counting)
    return opened


def a_tick(mailbox):
    """A scheduled tick in a Lambda whose data-key cache has lapsed: build the provider, use the token."""
    clear_data_key_cache()
    with build_provider(reload(mailbox)) as provider:
        provider.test_connection()
        return provider


@pytest.mark.parametrize("kind", ["gmail", "outlook"])
def test_a_sync_with_a_warm_token_decrypts_only_the_mailbox_credentials(kind, request, secret_opens):
    """Guards against: every idle tick decrypting a client secret it never sends (access tokens are not
    stored: the first tick refreshes, the process keeps the token for the next)."""
    mailbox = (make_gmail_mailbox(request.getfixturevalue("google")) if kind == "gmail"
               else outlook_mailbox(request.getfixturevalue("fake_ms")))
    with kms_calls() as first:
        a_tick(mailbox)                               # no access token yet: a refresh, which needs the secret
    assert first == {"Decrypt": 1} and len(secret_opens) == 1
    with kms_calls() as later:
        a_tick(mailbox)                               # the warm access token is still valid
    assert later == {"Decrypt": 1} and len(secret_opens) == 1
    if kind == "outlook":
        fake_ms = request.getfixturevalue("fake_ms")
        assert fake_ms.identity.token_requests == ["authorization_code", "refresh_token"]


def test_outlook_refresh_still_sends_the_client_secret(fake_ms, secret_opens):
    """Guards against: a lazy secret that is never fetched when MSAL must redeem the refresh token."""
    mailbox = outlook_mailbox(fake_ms)
    clear_data_key_cache()
    with kms_calls() as calls, build_provider(reload(mailbox)) as provider:
        provider.client.tokens.invalidate()
        provider.test_connection()
        provider.client.tokens.invalidate()
        provider.test_connection()
    assert fake_ms.identity.token_requests == ["authorization_code", "refresh_token", "refresh_token"]
    assert len(secret_opens) == 1                     # the client secret, decrypted once for both refreshes
    assert calls == {"Decrypt": 1}                    # the root key's: the tenant key it opens opens both secrets
                                                      # and seals the rotated MSAL cache written back


def test_outlook_unusable_client_secret_fails_only_at_refresh(fake_ms):
    """Guards against: a broken app secret going unnoticed at refresh, or failing syncs that never need it."""
    mailbox = outlook_mailbox(fake_ms)
    a_tick(mailbox)                                   # a refresh: the process keeps its access token
    server = MailServer.get(mailbox.tenant_id, mailbox.mail_server_id)
    server.update(actions=[MailServer.secret_ciphertext.set("v1.AAAA.AAAA.AAAA")])
    provider = a_tick(mailbox)                        # the warm token is valid: no secret needed
    provider.client.tokens.invalidate()
    with pytest.raises(ProviderError) as caught:
        provider.test_connection()
    assert caught.value.code == ErrorCode.PERMANENT
    server.update(actions=[MailServer.secret_ciphertext.remove()])
    with pytest.raises(ProviderError) as caught:      # no secret at all: refused when the provider is built
        build_provider(reload(mailbox))
    assert caught.value.code == ErrorCode.PERMANENT
