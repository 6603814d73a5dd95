"""Guards against secrets readable outside their tenant/owner or stored in plaintext, and against the KMS calls
the tenant secrets key exists to save (security/crypto.py, security/tenant_keys.py)."""
import base64
import contextlib
import json
import os
import threading
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chalicelib import aws as aws_clients
from chalicelib.models.tenant import RootKey, Tenant
from chalicelib import ttlcache
from chalicelib.security import crypto, tenant_keys
from chalicelib.security.crypto import (SecretDecryptionError, SecretEncryptionError, clear_data_key_cache,
                                        decrypt_secrets, encrypt_secrets, is_legacy)
from chalicelib.tenancy.service import create_tenant
from chalicelib.timeutil import isoformat, utcnow
from tests.sync_helpers import aws_calls


@pytest.fixture
def tenants(aws):
    for tenant_id in ("tnt_a", "tnt_b"):
        create_tenant(tenant_id, "standard", tenant_id=tenant_id)


def legacy_blob(tenant_id: str, owner_id: str, secrets: dict) -> str:
    """A `v1` blob as `encrypt_secrets` wrote it until 2026-12-02: a data key of its own per blob."""
    context = {"tenant_id": tenant_id, "owner_id": owner_id}
    data_key = aws_clients.kms().generate_data_key(KeyId=crypto.get_settings().kms_key_id, KeySpec="AES_256",
                                                   EncryptionContext=context)
    nonce = os.urandom(12)
    sealed = AESGCM(data_key["Plaintext"]).encrypt(nonce, json.dumps(secrets).encode(),
                                                    json.dumps(context, sort_keys=True).encode())
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    return ".".join(["v1", b64(data_key["CiphertextBlob"]), b64(nonce), b64(sealed)])


def assert_opens_only_for(tenant_id: str, owner_id: str, blob: str, secrets: dict) -> None:
    """`blob` opens to `secrets` for its tenant and owner, and for no other tenant or owner."""
    assert decrypt_secrets(tenant_id, owner_id, blob) == secrets
    with pytest.raises(SecretDecryptionError):
        decrypt_secrets("tnt_b" if tenant_id != "tnt_b" else "tnt_a", owner_id, blob)
    with pytest.raises(SecretDecryptionError):
        decrypt_secrets(tenant_id, owner_id + "_other", blob)


def test_round_trip_and_context_binding(tenants):
    blob = encrypt_secrets("tnt_a", "mbx_1", {"password": "hunter2-very-secret"})
    assert "hunter2" not in blob and blob.startswith("v2.") and not is_legacy(blob)
    # another tenant has no such key; another owner of the same tenant fails the associated data
    assert_opens_only_for("tnt_a", "mbx_1", blob, {"password": "hunter2-very-secret"})


def test_a_blob_naming_another_tenants_key_id_is_refused(tenants):
    """Guards against tenant B's blob opening under tenant A's key when A's key id is pasted into it."""
    a = encrypt_secrets("tnt_a", "mbx_1", {"password": "a"})
    b = encrypt_secrets("tnt_b", "mbx_1", {"password": "b"})
    forged = ".".join(["v2", a.split(".")[1], *b.split(".")[2:]])
    with pytest.raises(SecretDecryptionError):
        decrypt_secrets("tnt_a", "mbx_1", forged)


def test_large_secrets_are_sealed_compressed_small_ones_as_they_are(tenants):
    """Guards against an MSAL cache sealed at full size (rewritten on the mailbox item at every refresh) and
    against a compressed form that does not open."""
    cache = json.dumps({"AccessToken": {f"{'x' * 60}-login.example-accesstoken-{n}": {
        "home_account_id": "x" * 60, "secret": os.urandom(30).hex()} for n in range(10)}})
    big = encrypt_secrets("tnt_a", "mbx_1", {"msal_cache": cache})
    small = encrypt_secrets("tnt_a", "mbx_1", {"password": "p"})
    assert len(big) < len(json.dumps({"msal_cache": cache})) / 2
    _, plaintext_key = tenant_keys.current_key("tnt_a")
    opened = [AESGCM(plaintext_key).decrypt(base64.b64decode(blob.split(".")[2]), base64.b64decode(blob.split(".")[3]),
                                            json.dumps({"tenant_id": "tnt_a", "owner_id": "mbx_1"}, sort_keys=True)
                                            .encode()) for blob in (big, small)]
    assert opened[0][:1] == b"\x78" and opened[1] == b'{"password":"p"}'
    assert decrypt_secrets("tnt_a", "mbx_1", big) == {"msal_cache": cache}
    assert decrypt_secrets("tnt_a", "mbx_1", small) == {"password": "p"}


def test_tampered_blob_is_refused(tenants):
    blob = encrypt_secrets("tnt_a", "mbx_1", {"password": "x"})
    head, tail = blob.rsplit(".", 1)
    tampered = head + "." + ("A" if tail[0] != "A" else "B") + tail[1:]
    with pytest.raises(SecretDecryptionError):
        decrypt_secrets("tnt_a", "mbx_1", tampered)


def test_sealing_for_a_tenant_without_an_item_fails_clearly(aws):
    with pytest.raises(SecretEncryptionError, match="tnt_gone"):
        encrypt_secrets("tnt_gone", "mbx_1", {"password": "x"})


def test_legacy_v1_blobs_still_open_and_are_flagged(tenants):
    blob = legacy_blob("tnt_a", "mbx_1", {"password": "old"})
    assert is_legacy(blob)
    assert_opens_only_for("tnt_a", "mbx_1", blob, {"password": "old"})


def test_the_tenant_item_holds_only_the_sealed_key(tenants):
    encrypt_secrets("tnt_a", "mbx_1", {"password": "p"})
    _, plaintext = tenant_keys.current_key("tnt_a")
    stored = Tenant.get("tnt_a")
    entry = stored.secrets_keys[stored.secrets_key_id]
    assert set(entry) == {"sealed", "root", "created_at"} and entry["root"] == tenant_keys.ROOT_KEY_ID
    assert base64.b64encode(plaintext).decode() not in json.dumps(stored.attribute_values)
    root = RootKey.get(tenant_keys.ROOT_KEY_ID)
    assert base64.b64encode(tenant_keys.root_key()).decode() not in json.dumps(root.attribute_values)


def test_a_tenant_key_copied_to_another_tenant_does_not_open(tenants):
    """Guards against tenant B's item holding tenant A's sealed key (and so opening A's blobs)."""
    blob = encrypt_secrets("tnt_a", "mbx_1", {"password": "a"})
    key_id = blob.split(".")[1]
    stolen = Tenant.get("tnt_a").secrets_keys[key_id]
    Tenant("tnt_b").update(actions=[Tenant.secrets_keys.set({key_id: stolen}), Tenant.secrets_key_id.set(key_id)])
    clear_data_key_cache()
    with pytest.raises(SecretDecryptionError):
        decrypt_secrets("tnt_b", "mbx_1", blob)


class _CountingKms:
    def __init__(self, kms):
        self.kms, self.calls = kms, 0

    def decrypt(self, **kwargs):
        self.calls += 1
        return self.kms.decrypt(**kwargs)

    def __getattr__(self, name):
        return getattr(self.kms, name)


@pytest.fixture
def counted_kms(tenants, monkeypatch):
    counting = _CountingKms(aws_clients.kms())
    monkeypatch.setattr(aws_clients, "kms", lambda: counting)
    return counting


def test_one_kms_decrypt_opens_every_tenants_secrets(counted_kms):
    """Guards against every mailbox's scheduled check paying its own KMS Decrypt (the cost the key hierarchy
    removes): a cold process opens 20 mailboxes of two tenants with one Decrypt (the root key's)."""
    blobs = {(tenant, f"mbx_{n}"): encrypt_secrets(tenant, f"mbx_{n}", {"password": str(n)})
             for tenant in ("tnt_a", "tnt_b") for n in range(10)}
    clear_data_key_cache()
    for (tenant, owner), blob in blobs.items():
        assert decrypt_secrets(tenant, owner, blob) == {"password": owner[4:]}
    assert counted_kms.calls == 1


def test_concurrent_cold_opens_share_one_unwrap(counted_kms):
    """Guards against the check function's ten threads, each opening a mailbox's secrets in a cold process,
    making ten KMS calls for the one root key (and ten tenant reads for one tenant key)."""
    for n in range(8):
        create_tenant(f"tnt_{n}", "standard", tenant_id=f"tnt_{n}")
    blobs = [(f"tnt_{n % 8}", f"mbx_{n}", encrypt_secrets(f"tnt_{n % 8}", f"mbx_{n}", {"password": str(n)}))
             for n in range(16)]
    clear_data_key_cache()
    counted_kms.calls = 0
    start, opened = threading.Barrier(len(blobs)), {}

    def open_one(tenant, owner, blob):
        start.wait(timeout=10)
        opened[owner] = decrypt_secrets(tenant, owner, blob)

    with aws_calls("dynamodb") as reads:
        threads = [threading.Thread(target=open_one, args=blob) for blob in blobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
    assert opened == {f"mbx_{n}": {"password": str(n)} for n in range(16)}
    assert counted_kms.calls == 1
    assert reads == {"GetItem": 1 + 8}          # the root key once, each tenant once


def test_a_tenant_key_whose_stripe_is_the_root_keys_opens(counted_kms, monkeypatch):
    """Guards against a deadlock: a thread loading a tenant key takes the root key's lock while it holds the
    tenant key's; with one stripe for everything, that nesting must still work."""
    monkeypatch.setattr(tenant_keys, "_LOADER_STRIPES", [tenant_keys.threading.Lock()])
    blob = encrypt_secrets("tnt_a", "mbx_1", {"password": "p"})
    clear_data_key_cache()
    opened = {}
    worker = threading.Thread(target=lambda: opened.update(decrypt_secrets("tnt_a", "mbx_1", blob)), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert opened == {"password": "p"}


def test_a_cold_process_seals_with_one_tenant_read_and_one_unwrap(tenants):
    """Guards against sealing paying more than it must in a cold process (a GetItem of the root key and one of
    the tenant, one KMS Decrypt), and anything at all while the keys are cached."""
    encrypt_secrets("tnt_a", "mbx_1", {"password": "p"})          # the tenant's key exists
    clear_data_key_cache()
    with aws_calls("dynamodb") as reads, aws_calls("kms") as kms:
        encrypt_secrets("tnt_a", "mbx_2", {"password": "q"})
        encrypt_secrets("tnt_a", "mbx_3", {"password": "r"})
    assert reads == {"GetItem": 2} and kms == {"Decrypt": 1}


def test_a_cached_tenant_key_never_opens_another_tenant_or_owner(counted_kms):
    """Guards against a cached key opening a blob copied to another tenant's or mailbox's item."""
    blob = encrypt_secrets("tnt_a", "mbx_1", {"password": "p"})
    assert decrypt_secrets("tnt_a", "mbx_1", blob) == {"password": "p"}     # now cached
    assert_opens_only_for("tnt_a", "mbx_1", blob, {"password": "p"})


def test_legacy_data_key_cache_serves_repeats_without_kms(counted_kms):
    blob = legacy_blob("tnt_a", "mbx_1", {"password": "p"})
    for _ in range(5):
        assert decrypt_secrets("tnt_a", "mbx_1", blob) == {"password": "p"}
    assert counted_kms.calls == 1
    with pytest.raises(SecretDecryptionError):
        decrypt_secrets("tnt_b", "mbx_1", blob)
    assert counted_kms.calls == 2                  # another context went to KMS, which refused it


def test_key_caches_expire(counted_kms, monkeypatch):
    """Guards against a decrypted key living in the process without bound."""
    now = {"t": 1000.0}
    monkeypatch.setattr(ttlcache.time, "monotonic", lambda: now["t"])
    legacy = legacy_blob("tnt_a", "mbx_1", {"password": "p"})
    blob = encrypt_secrets("tnt_a", "mbx_2", {"password": "q"})
    clear_data_key_cache()
    decrypt_secrets("tnt_a", "mbx_1", legacy)
    decrypt_secrets("tnt_a", "mbx_2", blob)
    now["t"] += crypto.get_settings().data_key_cache_seconds - 1
    decrypt_secrets("tnt_a", "mbx_1", legacy)
    decrypt_secrets("tnt_a", "mbx_2", blob)
    assert counted_kms.calls == 2
    now["t"] += 2
    decrypt_secrets("tnt_a", "mbx_1", legacy)
    decrypt_secrets("tnt_a", "mbx_2", blob)
    assert counted_kms.calls == 4


def test_an_old_key_is_replaced_for_new_seals_and_still_opens_old_blobs(tenants):
    old_blob = encrypt_secrets("tnt_a", "mbx_1", {"password": "old"})
    old_id = old_blob.split(".")[1]
    stored = Tenant.get("tnt_a")
    aged = {**stored.secrets_keys[old_id],
            "created_at": isoformat(utcnow() - timedelta(days=tenant_keys.MAX_KEY_AGE_DAYS + 1))}
    stored.update(actions=[Tenant.secrets_keys.set({old_id: aged})])
    clear_data_key_cache()
    new_blob = encrypt_secrets("tnt_a", "mbx_1", {"password": "new"})
    assert new_blob.split(".")[1] != old_id
    clear_data_key_cache()
    assert decrypt_secrets("tnt_a", "mbx_1", old_blob) == {"password": "old"}
    assert decrypt_secrets("tnt_a", "mbx_1", new_blob) == {"password": "new"}
    assert set(Tenant.get("tnt_a").secrets_keys) == {old_id, new_blob.split(".")[1]}


def _race(monkeypatch, model, method: str, action, count: int = 2):
    """Runs `action(n)` in `count` threads that all pass their reads before any of them writes through
    `model.method` (the writes themselves serialized: moto's conditional writes are not atomic across threads)."""
    all_read = threading.Barrier(count)
    moto_lock = threading.Lock()
    real = getattr(model, method)

    def racing_write(self, *args, **kwargs):
        all_read.wait(timeout=10)
        with moto_lock:
            return real(self, *args, **kwargs)

    monkeypatch.setattr(model, method, racing_write)
    threads = [threading.Thread(target=action, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)


def test_racing_first_seals_agree_on_one_tenant_key(tenants, monkeypatch):
    """Guards against two processes each making a tenant key and one overwriting the other (its blobs would
    never open again): the loser of the conditional update reads and uses the winner's key."""
    tenant_keys.root_key()
    blobs = {}
    _race(monkeypatch, Tenant, "update",
          lambda n: blobs.__setitem__(f"mbx_{n}", encrypt_secrets("tnt_a", f"mbx_{n}", {"password": str(n)})))
    assert {blob.split(".")[1] for blob in blobs.values()} == {Tenant.get("tnt_a").secrets_key_id}
    clear_data_key_cache()
    assert all(decrypt_secrets("tnt_a", owner, blob) == {"password": owner[4:]} for owner, blob in blobs.items())


def test_racing_processes_agree_on_one_root_key(tenants, monkeypatch):
    """Guards against two cold processes each making a root key and sealing tenant keys no one can open. (Two
    threads stand for the two processes, so they must not share the process's one-loader locks.)"""
    monkeypatch.setattr(tenant_keys, "_ROOT_LOADER", contextlib.nullcontext())
    roots = {}
    _race(monkeypatch, RootKey, "save", lambda n: roots.__setitem__(n, tenant_keys.root_key()))
    assert len(set(roots.values())) == 1
    clear_data_key_cache()
    assert tenant_keys.root_key() == roots[0]
