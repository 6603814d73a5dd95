"""Guards against user-supplied mail hosts reaching internal addresses (metadata, VPC, loopback) via the API."""
import ipaddress
import socket

import pytest

from chalicelib.security import ssrf
from chalicelib.security.ssrf import GENERIC_MESSAGE, UnreachableHost, refusal_reason, resolve_and_vet

BLOCKED_V4 = ["127.0.0.1", "127.255.255.254", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
              "169.254.169.254", "169.254.0.1", "100.64.0.1", "100.127.255.254", "0.0.0.0", "0.1.2.3",
              "224.0.0.251", "239.255.255.250", "240.0.0.1", "255.255.255.255", "192.0.2.10",
              "198.51.100.7", "203.0.113.9", "198.18.0.1", "192.0.0.8", "192.88.99.1"]
BLOCKED_V6 = ["::1", "::", "fc00::1", "fd12:3456::1", "fe80::1", "febf::1", "fec0::1", "ff02::1", "ff05::2",
              "2001:db8::1", "3fff::1", "100::1", "2001::1", "64:ff9b:1::1", "::127.0.0.1"]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.215.14", "100.128.0.1", "172.32.0.1", "2606:4700:4700::1111",
          "2a00:1450:4001:80b::200e", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"]
MAPPED_INTERNAL = ["::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:192.168.0.1",
                   "::ffff:100.64.0.1", "64:ff9b::a9fe:a9fe", "2002:a00:1::1", "2002:7f00:1::"]


def _ip(text):
    return ipaddress.ip_address(text)


@pytest.mark.parametrize("address", BLOCKED_V4 + BLOCKED_V6)
def test_special_purpose_addresses_are_refused(address):
    assert refusal_reason(_ip(address)) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_unicast_addresses_pass(address):
    assert refusal_reason(_ip(address)) is None


@pytest.mark.parametrize("address", MAPPED_INTERNAL)
def test_ipv6_embedding_an_internal_ipv4_is_judged_by_the_ipv4(address):
    reason = refusal_reason(_ip(address))
    assert reason is not None
    assert ssrf.embedded_ipv4(_ip(address)) is not None
    assert str(ssrf.embedded_ipv4(_ip(address))) in reason


def test_allowlist_admits_exactly_its_networks():
    allowed = ssrf.parse_networks(["127.0.0.0/8", "fd00:1::/64"])
    assert refusal_reason(_ip("127.0.0.1"), allowed) is None
    assert refusal_reason(_ip("::ffff:127.0.0.1"), allowed) is None
    assert refusal_reason(_ip("fd00:1::5"), allowed) is None
    assert refusal_reason(_ip("fd00:2::5"), allowed) is not None
    assert refusal_reason(_ip("10.0.0.1"), allowed) is not None
    assert refusal_reason(_ip("169.254.169.254"), allowed) is not None
    assert refusal_reason(_ip("::1"), allowed) is not None


def _fake_resolver(answers, calls):
    def getaddrinfo(host, port, *args, **kwargs):
        calls.append((host, port))
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        result = []
        for address in answers[host]:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
            result.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return result
    return getaddrinfo


@pytest.fixture
def resolver(monkeypatch):
    answers: dict[str, list[str]] = {}
    calls: list[tuple[str, int]] = []
    monkeypatch.setattr(ssrf.socket, "getaddrinfo", _fake_resolver(answers, calls))
    return answers, calls


def test_public_name_resolves_once_and_returns_the_address_to_dial(resolver):
    answers, calls = resolver
    answers["imap.example.com"] = ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]
    assert resolve_and_vet("imap.example.com", 993, allowed=()) == "93.184.215.14"
    assert calls == [("imap.example.com", 993)]


@pytest.mark.parametrize("internal", ["10.0.0.5", "169.254.169.254", "fd00::5", "::ffff:127.0.0.1", "fe80::1"])
def test_name_resolving_to_an_internal_address_is_refused(resolver, internal):
    answers, _ = resolver
    answers["rebind.attacker.example"] = [internal]
    with pytest.raises(UnreachableHost) as caught:
        resolve_and_vet("rebind.attacker.example", 993, allowed=())
    assert str(caught.value) == GENERIC_MESSAGE
    assert internal.split("::ffff:")[-1] in caught.value.reason


def test_name_mixing_public_and_internal_answers_is_refused(resolver):
    answers, _ = resolver
    answers["mixed.example.com"] = ["93.184.215.14", "192.168.0.10"]
    with pytest.raises(UnreachableHost):
        resolve_and_vet("mixed.example.com", 993, allowed=())


def test_unresolvable_name_and_refused_address_read_the_same(resolver):
    answers, _ = resolver
    answers["internal.example.com"] = ["10.0.0.1"]
    with pytest.raises(UnreachableHost) as unresolvable:
        resolve_and_vet("nxdomain.example.com", 993, allowed=())
    with pytest.raises(UnreachableHost) as refused:
        resolve_and_vet("internal.example.com", 993, allowed=())
    assert str(unresolvable.value) == str(refused.value) == GENERIC_MESSAGE
    assert unresolvable.value.reason != refused.value.reason


def test_allowlist_comes_from_settings(resolver):
    """conftest sets MAILBRIDGE_SSRF_ALLOWED_NETWORKS=127.0.0.0/8,::1/128 (tests reach local servers)."""
    answers, _ = resolver
    answers["localhost"] = ["127.0.0.1"]
    answers["private.example.com"] = ["10.0.0.1"]
    assert resolve_and_vet("localhost", 143) == "127.0.0.1"
    with pytest.raises(UnreachableHost):
        resolve_and_vet("private.example.com", 143)
    with pytest.raises(UnreachableHost):
        resolve_and_vet("localhost", 143, allowed=())


@pytest.mark.parametrize("literal", ["127.0.0.1", "::1", "169.254.169.254", "10.0.0.1", "[::1]", ""])
def test_ip_literals_are_vetted_like_names(literal):
    if literal in ("127.0.0.1", "::1"):
        assert resolve_and_vet(literal, 993) == literal
        with pytest.raises(UnreachableHost):
            resolve_and_vet(literal, 993, allowed=())
    else:
        with pytest.raises(UnreachableHost):
            resolve_and_vet(literal, 993)
