"""API key material and client-address checks.

A tenant key is `mbk_<key_id>_<secret>`: `key_id` (12 base32 chars) is the visible prefix used to find the
stored record, `secret` is 256 random bits (43 base64url chars). Only SHA-256 of the whole key is stored and
it is compared with `hmac.compare_digest` (constant time). The operator key is `mbo_<secret>`; its SHA-256
comes from configuration.

Client addresses come from API Gateway's `requestContext.identity.sourceIp`, never from `X-Forwarded-For`
(which the client controls).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass

_KEY_RE = re.compile(r"^mbk_([0-9a-hjkmnp-tv-z]{12})_([A-Za-z0-9_-]{43})$")
_OPERATOR_RE = re.compile(r"^mbo_[A-Za-z0-9_-]{43}$")
_ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


@dataclass(frozen=True)
class IssuedKey:
    """A new key: `plaintext` is shown once and never stored; `sha256` (of the whole key) is what is stored."""
    key_id: str
    plaintext: str
    sha256: str


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _secret() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")


def issue_key() -> IssuedKey:
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
    plaintext = f"mbk_{key_id}_{_secret()}"
    return IssuedKey(key_id=key_id, plaintext=plaintext, sha256=sha256_hex(plaintext))


def issue_operator_key() -> tuple[str, str]:
    plaintext = f"mbo_{_secret()}"
    return plaintext, sha256_hex(plaintext)


def parse_key_id(presented: str) -> str | None:
    """The key id of a well-formed tenant key, else None."""
    match = _KEY_RE.fullmatch(presented)     # `$` alone also matches before a final "\n"
    return match.group(1) if match else None


def is_operator_key_format(presented: str) -> bool:
    return bool(_OPERATOR_RE.fullmatch(presented))


def digest_matches(presented: str, stored_sha256: str) -> bool:
    return hmac.compare_digest(sha256_hex(presented), stored_sha256 or "")


def normalize_allowed_ips(entries: list[str]) -> list[str]:
    """Canonical networks for single addresses and CIDRs (v4 and v6). Raises ValueError naming the bad entry."""
    networks = []
    for entry in entries:
        try:
            networks.append(str(ipaddress.ip_network(entry.strip(), strict=False)))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
    return networks


def address_allowed(source_ip: str | None, allowed: list[str]) -> bool:
    """Empty list = any address. IPv4-mapped IPv6 client addresses match IPv4 entries."""
    if not allowed:
        return True
    if not source_ip:
        return False
    try:
        address = ipaddress.ip_address(source_ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    for entry in allowed:
        network = ipaddress.ip_network(entry, strict=False)
        if address.version == network.version and address in network:
            return True
    return False
