"""Guards against secrets readable outside their tenant/owner or stored in plaintext."""
import pytest

from chalicelib.security.crypto import SecretDecryptionError, decrypt_secrets, encrypt_secrets


def test_round_trip_and_context_binding(aws):
    blob = encrypt_secrets("tnt_a", "mbx_1", {"password": "hunter2-very-secret"})
    assert "hunter2" not in blob
    assert decrypt_secrets("tnt_a", "mbx_1", blob) == {"password": "hunter2-very-secret"}
    with pytest.raises(SecretDecryptionError):
        decrypt_secrets("tnt_b", "mbx_1", blob)
    with pytest.raises(SecretDecryptionError):
        decrypt_secrets("tnt_a", "mbx_2", blob)


def test_tampered_blob_is_refused(aws):
    blob = encrypt_secrets("tnt_a", "mbx_1", {"password": "x"})
    head, tail = blob.rsplit(".", 1)
    tampered = head + "." + ("A" if tail[0] != "A" else "B") + tail[1:]
    with pytest.raises(SecretDecryptionError):
        decrypt_secrets("tnt_a", "mbx_1", tampered)


class _CountingKms:
    def __init__(self, kms):
        self.kms, self.calls = kms, 0

    def decrypt(self, **kwargs):
        self.calls += 1
        return self.kms.decrypt(**kwargs)

    def __getattr__(self, name):
        return getattr(self.kms, name)


@pytest.fixture
def counted_kms(aws, monkeypatch):
    from chalicelib import aws as aws_clients
    counting = _CountingKms(aws_clients.kms())
    monkeypatch.setattr(aws_clients, "kms", lambda: counting)
    return counting


def test_data_key_cache_serves_repeats_without_kms(counted_kms):
    """Guards against every idle sync paying a KMS Decrypt for the same mailbox's password."""
    blob = encrypt_secrets("tnt_a", "mbx_1", {"password": "p"})
    for _ in range(5):
        assert decrypt_secrets("tnt_a", "mbx_1", blob) == {"password": "p"}
    assert counted_kms.calls == 1


def test_data_key_cache_never_serves_another_tenant_or_mailbox(counted_kms):
    """Guards against a cached data key opening a blob copied to another tenant's or mailbox's item."""
    blob = encrypt_secrets("tnt_a", "mbx_1", {"password": "p"})
    assert decrypt_secrets("tnt_a", "mbx_1", blob) == {"password": "p"}      # now cached for (tnt_a, mbx_1)
    with pytest.raises(SecretDecryptionError):
        decrypt_secrets("tnt_b", "mbx_1", blob)
    with pytest.raises(SecretDecryptionError):
        decrypt_secrets("tnt_a", "mbx_2", blob)
    assert counted_kms.calls == 3                  # each other context went to KMS, which refused it


def test_data_key_cache_expires(counted_kms, monkeypatch):
    """Guards against a decrypted data key living in the process without bound."""
    from chalicelib.security import crypto
    now = {"t": 1000.0}
    monkeypatch.setattr(crypto.time, "monotonic", lambda: now["t"])
    blob = encrypt_secrets("tnt_a", "mbx_1", {"password": "p"})
    decrypt_secrets("tnt_a", "mbx_1", blob)
    now["t"] += crypto.get_settings().data_key_cache_seconds - 1
    decrypt_secrets("tnt_a", "mbx_1", blob)
    assert counted_kms.calls == 1
    now["t"] += 2
    decrypt_secrets("tnt_a", "mbx_1", blob)
    assert counted_kms.calls == 2
