"""Webhook signatures: HMAC-SHA256 (RFC 2104, FIPS 180-4) over `<timestamp>.<raw body>`.

Headers of every delivery:
- `Webhook-Id`: the event id — the same on every retry and replay, so receivers deduplicate on it;
- `Webhook-Timestamp`: Unix seconds when this attempt was signed (new on each attempt);
- `Webhook-Signature`: `v1=<lowercase hex HMAC-SHA256(secret, "<Webhook-Timestamp>.<raw body>")>`.

Signing the timestamp with the body lets a receiver refuse a captured request replayed later: accept only when
the timestamp is within `REPLAY_WINDOW_SECONDS` of its own clock, compare in constant time, and deduplicate by
`Webhook-Id`. `verify()` is that recipe (docs/api.md shows it standalone).
"""
from __future__ import annotations

import hashlib
import hmac
import time
from typing import Mapping

SCHEME = "v1"
REPLAY_WINDOW_SECONDS = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), f"{int(timestamp)}.".encode("ascii") + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def signed_headers(secret: str, event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", "User-Agent": "mailbridge-webhooks/1",
            "Webhook-Id": event_id, "Webhook-Timestamp": str(int(timestamp)),
            "Webhook-Signature": signature(secret, timestamp, body)}


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, now: float | None = None,
           tolerance: int = REPLAY_WINDOW_SECONDS) -> bool:
    """True when `Webhook-Signature` matches and `Webhook-Timestamp` is within `tolerance` seconds of now."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        timestamp = int(lowered["webhook-timestamp"])
    except (KeyError, ValueError):
        return False
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body).encode()
    offered = (lowered.get("webhook-signature") or "").split()
    return any(hmac.compare_digest(expected, candidate.encode()) for candidate in offered)
