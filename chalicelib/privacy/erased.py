"""Erased stays erased: mail of a person erased through `POST /v1/erasure` is never stored again.

The message store keys mail by its content (`sync/store.py`), so a provider that lists an erased message again
— a lost or invalid cursor (Graph 410 `syncStateNotFound`, Gmail 404 on a stale historyId, an IMAP UIDVALIDITY
change), an import window moved earlier, a mailbox connected later that received the same mail — would store it
anew. The store therefore refuses every message that names an erased person (From, To, Cc, Bcc, Reply-To; the
address normalized as `privacy.lists.normalize_address`) and is dated no later than that person's erasure
request, or has no Date header at all (its date is then the import time, which says nothing about when it was
written). Mail the person writes after the erasure is new mail and is stored.

The record is the erasure job itself (`ErasureJob`: `subject_hash`, an HMAC-SHA256 of tenant + normalized
address under the service's signing key, RFC 2104, and `created_at`), so no address is kept. The tenant's
privacy item counts the erasures requested (`PrivacyList.erasures`, read with the lists once per page); the
store reads the tenant's jobs only when that count is non-zero and keeps them per (tenant, count) in process
memory, so a tenant without erasures pays nothing and a new erasure is seen by the next page.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Iterable

from chalicelib.config import get_settings
from chalicelib.models.privacy import ErasureJob
from chalicelib.timeutil import parse_iso
from chalicelib.ttlcache import TtlCache

NO_DATE_ERROR = "date: using import time"        # `Message.parse_errors` of mail without a usable Date header
CACHE_SECONDS = 3600.0

_cache: TtlCache[tuple[str, int], "ErasedPeople"] = TtlCache(lambda: CACHE_SECONDS, max_entries=256)


def subject_hash(tenant_id: str, address: str) -> str:
    """HMAC-SHA256 (RFC 2104) of tenant + normalized address under the service's signing key."""
    key = get_settings().signing_key.encode("utf-8")
    return "hmac-sha256:" + hmac.new(key, f"{tenant_id}\x1f{address}".encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ErasedPeople:
    """The tenant's erased people: subject hash → the latest erasure request's time."""
    tenant_id: str = ""
    erased_at: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.erased_at)

    def names(self, addresses: Iterable[str | None], date: str | None, parse_errors: Iterable[str] = ()) -> bool:
        """True when one of the (normalized) `addresses` is an erased person's and the message is dated no
        later than their erasure, or carries no Date of its own (`NO_DATE_ERROR`)."""
        if not self.erased_at:
            return False
        undated = NO_DATE_ERROR in (parse_errors or ())
        for address in addresses:
            if not address:
                continue
            erased_at = self.erased_at.get(subject_hash(self.tenant_id, address))
            if erased_at is not None and (undated or not date or parse_iso(date) <= parse_iso(erased_at)):
                return True
        return False


def for_tenant(tenant_id: str, erasures: int | None) -> ErasedPeople:
    """The tenant's erased people (a consistent, paginated Query of its erasure jobs — a job is saved before the
    count moves, `erasure.erase.create` — cached per erasure count)."""
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
    people = ErasedPeople(tenant_id, erased_at)
    _cache.put(key, people)
    return people
