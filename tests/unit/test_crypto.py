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
