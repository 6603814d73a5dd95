"""Legacy (`v1`) mailbox credentials are resealed under the tenant key the first time a provider is built from
them (credentials/store.py `upgrade`, providers/kinds.py `build_provider`), through a real Dovecot login."""
import pytest

from chalicelib.credentials.store import CredentialStore
from chalicelib.models.mailbox import Mailbox
from chalicelib.providers.kinds import build_provider
from chalicelib.security.crypto import clear_data_key_cache, decrypt_secrets, is_legacy
from tests.integration.test_imap_sync import imap_mailbox
from tests.sync_helpers import reload
from tests.unit.test_crypto import legacy_blob


@pytest.fixture
def legacy_mailbox(aws, dovecot):
    user, password = dovecot.new_user()
    mailbox = imap_mailbox(dovecot, user, password)
    mailbox.update(actions=[Mailbox.secret_ciphertext.set(
        legacy_blob(mailbox.tenant_id, mailbox.mailbox_id, {"password": password})), Mailbox.secret_version.set(3)])
    return reload(mailbox), password


def test_building_a_provider_reseals_legacy_credentials_once(legacy_mailbox):
    mailbox, password = legacy_mailbox
    with build_provider(mailbox) as provider:
        provider.folders()                            # the login used the (resealed) password
    stored = reload(mailbox)
    assert not is_legacy(stored.secret_ciphertext) and stored.secret_ciphertext.startswith("v2.")
    assert stored.secret_version == 4 and stored.updated_at == mailbox.updated_at
    clear_data_key_cache()
    assert decrypt_secrets(mailbox.tenant_id, mailbox.mailbox_id, stored.secret_ciphertext) == {"password": password}
    with build_provider(stored) as provider:            # already current: nothing written again
        provider.folders()
    assert reload(mailbox).secret_version == 4


def test_a_concurrent_write_wins_over_the_reseal(legacy_mailbox):
    """The reseal is conditional on the version read: a refresh written meanwhile is never overwritten."""
    mailbox, password = legacy_mailbox
    store = CredentialStore(mailbox.tenant_id, mailbox.mailbox_id)
    opened = store.decode(mailbox)
    store.save({"password": "rotated"}, expected_version=3)        # someone else, after our read
    kept = store.upgrade(mailbox, opened)
    assert kept == opened
    assert store.load().secrets == {"password": "rotated"} and store.load().version == 4
