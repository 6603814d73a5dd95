"""Erased stays erased: mail of a person erased through `POST /v1/erasure` is never stored again.

The message store keys mail by its content (`sync/store.py`), so a provider that lists an erased message again
— a lost or invalid cursor (Graph 410 `syncStateNotFound`, Gmail 404 on a stale historyId, an IMAP UIDVALIDITY
change), an import window moved earlier, a mailbox connected later that received the same mail — would store it
anew. The store therefore refuses every message that names an erased person (From, Sender, To, Cc, Bcc, Reply-To; the
address normalized as `privacy.lists.normalize_address`) and is dated no later than that person's erasure
request, or has no Date header at all (its date is then the import time, which says nothing about when it was
written). Mail the person writes after the erasure is new mail and is stored.

The record is the erasure job itself (`ErasureJob`: `subject_hash` and `created_at`), so no address is kept.
The hash is an HMAC-SHA256 (RFC 2104) of tenant + normalized address, written `hkdf-hmac-sha256:<key id>:<hex>`:
its key is derived with HKDF-SHA256 (RFC 5869; `HKDF_INFO`; no salt, which §3.1 makes optional — the input is
already a uniformly random 256-bit key) from the tenant's secrets key `<key id>` (`security.tenant_keys`).

Invariant: a subject hash stays computable for as long as the tenant exists, whatever is rotated. The tenant key
it names is never removed while the tenant exists (a key older than 90 days is only replaced for NEW seals and
stays for old ones); a KMS key rotation keeps the old key material to unwrap the root key, and the root key only
wraps the tenant keys — the hash depends on a tenant key's plaintext, which re-wrapping would keep.
`MAILBRIDGE_SIGNING_KEY` plays no part, so rotating it (docs/operations.md) forgets no erasure. Jobs recorded before
2026-12-02 carry `hmac-sha256:<hex>` under the signing key (`legacy_subject_hash`); both forms are matched, the old
one only while the signing key is unchanged — a finished job no longer holds the address (dropped when done), so it
cannot be re-hashed.

The tenant's privacy item counts the erasures requested (`PrivacyList.erasures`, read with the lists once per
page); the store reads the tenant's jobs only when that count is non-zero and keeps them per (tenant, count) in
process memory, so a tenant without erasures pays nothing and a new erasure is seen by the next page. The cached
entry holds the derived hash keys of the tenant keys its jobs name (one `tenant_keys.key_by_id` each when it is
built): one-way derivations (RFC 5869) that open no secret — they only recompute subject hashes.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Iterable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from chalicelib.config import get_settings
from chalicelib.logs import logger
from chalicelib.models.privacy import ErasureJob
from chalicelib.security import tenant_keys
from chalicelib.timeutil import parse_iso
from chalicelib.ttlcache import TtlCache

NO_DATE_ERROR = "date: using import time"        # `Message.parse_errors` of mail without a usable Date header
CACHE_SECONDS = 3600.0
HASH_PREFIX = "hkdf-hmac-sha256:"                 # + <tenant key id> ":" <hex>
LEGACY_PREFIX = "hmac-sha256:"                    # + <hex>, under the signing key (jobs before 2026-12-02)
HKDF_INFO = b"mailbridge/erasure-subject-hash/v1"

_cache: TtlCache[tuple[str, int], "ErasedPeople"] = TtlCache(lambda: CACHE_SECONDS, max_entries=256)


def clear_cache() -> None:
    """Forget every tenant's erased people (what a cold process has)."""
    _cache.clear()


def _hash_key(tenant_key: bytes) -> bytes:
    """The subject-hash key derived from a tenant key (HKDF-SHA256, RFC 5869, `HKDF_INFO`): a key of its own,
    so the hash reveals nothing about the key that seals the tenant's secrets."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(tenant_key)


def _mac(key: bytes, tenant_id: str, address: str) -> str:
    return hmac.new(key, f"{tenant_id}\x1f{address}".encode("utf-8"), hashlib.sha256).hexdigest()


def subject_hash(tenant_id: str, address: str) -> str:
    """The hash a new erasure job records: HMAC-SHA256 (RFC 2104) of tenant + normalized address under a key
    derived from the tenant's current secrets key, named in the hash (it outlives every rotation, see above).
    Raises `tenant_keys.TenantKeyUnavailable` when the tenant does not exist."""
    key_id, key = tenant_keys.current_key(tenant_id)
    return f"{HASH_PREFIX}{key_id}:{_mac(_hash_key(key), tenant_id, address)}"


def legacy_subject_hash(tenant_id: str, address: str) -> str:
    """The hash jobs recorded before 2026-12-02: HMAC-SHA256 under the service's signing key (matches only while
    `MAILBRIDGE_SIGNING_KEY` is the one they were recorded under)."""
    return LEGACY_PREFIX + _mac(get_settings().signing_key.encode("utf-8"), tenant_id, address)


@dataclass(frozen=True)
class ErasedPeople:
    """The tenant's erased people: subject hash → the latest erasure request's time; the derived hash keys of
    the tenant keys the hashes name (`hash_keys`), and whether any hash is a legacy one."""
    tenant_id: str = ""
    erased_at: dict[str, str] = field(default_factory=dict)
    hash_keys: dict[str, bytes] = field(default_factory=dict, repr=False)
    legacy: bool = False

    def __bool__(self) -> bool:
        return bool(self.erased_at)

    def _hashes(self, address: str) -> list[str]:
        """Every form the hash of `address` can take in this tenant's jobs (one HMAC per form)."""
        forms = [f"{HASH_PREFIX}{key_id}:{_mac(key, self.tenant_id, address)}"
                 for key_id, key in self.hash_keys.items()]
        return forms + ([legacy_subject_hash(self.tenant_id, address)] if self.legacy else [])

    def names(self, addresses: Iterable[str | None], date: str | None, parse_errors: Iterable[str] = ()) -> bool:
        """True when one of the (normalized) `addresses` is an erased person's and the message is dated no
        later than their erasure, or carries no Date of its own (`NO_DATE_ERROR`)."""
        if not self.erased_at:
            return False
        undated = NO_DATE_ERROR in (parse_errors or ())
        for address in addresses:
            if not address:
                continue
            for form in self._hashes(address):
                erased_at = self.erased_at.get(form)
                if erased_at is not None and (undated or not date or parse_iso(date) <= parse_iso(erased_at)):
                    return True
        return False


def for_tenant(tenant_id: str, erasures: int | None) -> ErasedPeople:
    """The tenant's erased people (a consistent, paginated Query of its erasure jobs — a job is saved before the
    count moves, `erasure.erase.create` — cached per erasure count). The tenant keys the hashes name are opened
    here (`tenant_keys.key_by_id`; a missing one raises `TenantKeyUnavailable`: the store fails rather than
    store mail it cannot check)."""
    if not erasures:
        return ErasedPeople(tenant_id)
    key = (tenant_id, int(erasures))
    hit = _cache.get(key)
    if hit is not None:
        return hit
    erased_at: dict[str, str] = {}
    for job in ErasureJob.query(tenant_id, consistent_read=True,
                                attributes_to_get=["subject_hash", "created_at"]):
        if job.created_at > erased_at.get(job.subject_hash, ""):
            erased_at[job.subject_hash] = job.created_at
    key_ids = {h[len(HASH_PREFIX):].partition(":")[0] for h in erased_at if h.startswith(HASH_PREFIX)}
    unknown = [h for h in erased_at if not h.startswith((HASH_PREFIX, LEGACY_PREFIX))]
    if unknown:
        logger.error("erasure jobs with a subject hash of no known form", extra={"tenant_id": tenant_id,
                                                                                  "jobs": len(unknown)})
    people = ErasedPeople(tenant_id, erased_at,
                          {key_id: _hash_key(tenant_keys.key_by_id(tenant_id, key_id)) for key_id in sorted(key_ids)},
                          any(h.startswith(LEGACY_PREFIX) for h in erased_at))
    _cache.put(key, people)
    return people
