"""SSRF guard for user-supplied mail server hosts: resolve once, refuse non-public addresses, dial the result.

A tenant's user types an IMAP/SMTP host; the service then opens a TCP connection from inside AWS. Without a
guard that host could be `169.254.169.254` (instance metadata), `localhost`, a VPC-internal name, or a DNS
name that resolves there. The rules:

- The host is resolved exactly ONCE (`socket.getaddrinfo`) and the connection goes to the vetted address
  (`ConnectionSettings.address`), with TLS still verified against the host name (`ConnectionSettings.host`).
  Resolving again at connect time would let a short-TTL DNS answer swap in an internal address
  (DNS rebinding).
- EVERY address the name resolves to must be acceptable; a name mixing public and internal answers is refused.
- IPv6 addresses that embed an IPv4 address are judged by the embedded address: IPv4-mapped
  `::ffff:a.b.c.d` (RFC 4291 §2.5.5.2), the NAT64 well-known prefix `64:ff9b::/96` (RFC 6052) and 6to4
  `2002::/16` (RFC 3056).
- An address inside `Settings.ssrf_allowed_networks` (MAILBRIDGE_SSRF_ALLOWED_NETWORKS) is accepted even when
  it is otherwise blocked; tests and the local stack allow `127.0.0.0/8` this way. Nothing is allowed by
  default.
- Every refusal — unresolvable name, blocked address, and (in the callers) a connection that fails — carries
  the same message, `GENERIC_MESSAGE`, so the API cannot be used to map the internal network. The precise
  reason is kept on the exception for logs only.
"""
from __future__ import annotations

import ipaddress
import socket
from typing import Iterable, Sequence

from chalicelib.config import get_settings

# One message for every cause (refused by the guard, no DNS answer, timeout, connection refused, TLS failure):
# what to check is the same list for all of them, and it says nothing about the network behind the host.
GENERIC_MESSAGE = ("The mail server could not be reached: check the host name's spelling, the port, and the "
                   "security mode (tls: implicit TLS, usually IMAP 993 / SMTP 465; starttls: usually IMAP 143 / "
                   "SMTP 587).")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# IANA special-purpose address registries (RFC 6890 and its updates) plus multicast; none is a mail server
# on the public Internet.
BLOCKED_NETWORKS: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "this network (RFC 1122), incl. unspecified 0.0.0.0"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("100.64.0.0/10", "carrier-grade NAT shared space (RFC 6598)"),
    ("127.0.0.0/8", "loopback (RFC 1122)"),
    ("169.254.0.0/16", "link-local (RFC 3927), incl. cloud metadata 169.254.169.254"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
    ("192.0.2.0/24", "documentation TEST-NET-1 (RFC 5737)"),
    ("192.88.99.0/24", "6to4 relay anycast (RFC 7526)"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("198.18.0.0/15", "benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "documentation TEST-NET-2 (RFC 5737)"),
    ("203.0.113.0/24", "documentation TEST-NET-3 (RFC 5737)"),
    ("224.0.0.0/4", "multicast (RFC 5771)"),
    ("240.0.0.0/4", "reserved (RFC 1112), incl. broadcast 255.255.255.255"),
    ("::/96", "unspecified, loopback and IPv4-compatible (RFC 4291)"),
    ("64:ff9b:1::/48", "local-use NAT64 (RFC 8215)"),
    ("100::/64", "discard-only (RFC 6666)"),
    ("2001::/23", "IETF protocol assignments incl. Teredo (RFC 2928, RFC 4380)"),
    ("2001:db8::/32", "documentation (RFC 3849)"),
    ("3fff::/20", "documentation (RFC 9637)"),
    ("fc00::/7", "unique local (RFC 4193)"),
    ("fe80::/10", "link-local (RFC 4291)"),
    ("fec0::/10", "site-local, deprecated (RFC 3879)"),
    ("ff00::/8", "multicast (RFC 4291)"),
)
_BLOCKED: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), why) for net, why in BLOCKED_NETWORKS)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnreachableHost(Exception):
    """A host the service will not (or cannot) connect to. `str()` is always `GENERIC_MESSAGE`;
    `reason` is for logs only and must never reach an API response."""

    def __init__(self, reason: str, *, temporary: bool = False):
        super().__init__(GENERIC_MESSAGE)
        self.reason = reason
        self.temporary = temporary  # DNS did not answer: may work later (a refused address never will)


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address carried inside an IPv4-mapped, NAT64 (well-known prefix) or 6to4 IPv6 address."""
    if address.version != 6:
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values if value.strip())


def refusal_reason(address: IPAddress, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """None when `address` may be dialled, else why not (for logs)."""
    inner = embedded_ipv4(address)
    candidates = [address] if inner is None else [address, inner]
    if any(candidate in net for candidate in candidates for net in allowed if candidate.version == net.version):
        return None
    judged = inner if inner is not None else address
    for net, why in _BLOCKED:
        if judged.version == net.version and judged in net:
            return f"{judged} is {why}"
    # Belt and braces: whatever the standard library knows to be non-global (its table follows IANA too).
    if judged.is_multicast or judged.is_unspecified or judged.is_loopback or judged.is_link_local or \
            judged.is_reserved or not judged.is_global:
        return f"{judged} is not a public unicast address"
    return None


def _allowed_networks() -> tuple[IPNetwork, ...]:
    return parse_networks(get_settings().ssrf_allowed_networks)


def resolve_and_vet(host: str, port: int, *, allowed: Sequence[IPNetwork] | None = None) -> str:
    """Resolve `host` once and return the address to dial (getaddrinfo's preferred order, RFC 6724).

    Raises `UnreachableHost` (message `GENERIC_MESSAGE`) when the name does not resolve or when ANY of its
    addresses is refused.
    """
    allowed = _allowed_networks() if allowed is None else tuple(allowed)
    host = (host or "").strip().rstrip(".")
    if not host:
        raise UnreachableHost("empty host")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError, ValueError) as exc:
        raise UnreachableHost(f"{host!r} does not resolve ({type(exc).__name__})", temporary=True) from None
    addresses: list[IPAddress] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        try:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        except ValueError:
            raise UnreachableHost(f"{host!r} resolved to an unparsable address") from None
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnreachableHost(f"{host!r} has no IPv4/IPv6 address")
    for address in addresses:
        reason = refusal_reason(address, allowed)
        if reason is not None:
            raise UnreachableHost(f"{host!r} refused: {reason}")
    return str(addresses[0])
