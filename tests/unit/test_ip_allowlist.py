"""Guards the client-address allowlist: v4, v6, CIDR, and no trust in a spoofed X-Forwarded-For."""
import pytest

from chalicelib.security.apikeys import address_allowed


def _restricted_key(api, tenant, allowed):
    created = api("POST", "/v1/keys", key=tenant["key"], json_body={"name": "restricted", "allowed_ips": allowed})
    assert created.status == 201, created
    return created.json


def test_ipv4_single_and_cidr(api, tenant):
    key = _restricted_key(api, tenant, ["198.51.100.7", "192.0.2.0/24"])
    assert key["allowed_ips"] == ["198.51.100.7/32", "192.0.2.0/24"]
    assert api("GET", "/v1/keys", key=key["key"], source_ip="198.51.100.7").status != 403
    assert api("GET", "/v1/keys", key=key["key"], source_ip="192.0.2.200").status != 403
    refused = api("GET", "/v1/keys", key=key["key"], source_ip="198.51.100.8")
    assert refused.status == 403 and refused.json["type"].endswith("/address-not-allowed")


def test_ipv6_and_mapped_addresses(api, tenant):
    key = _restricted_key(api, tenant, ["2001:db8::/32", "203.0.113.5"])
    assert api("GET", "/v1/keys", key=key["key"], source_ip="2001:db8:1::42").status == 200
    assert api("GET", "/v1/keys", key=key["key"], source_ip="::ffff:203.0.113.5").status == 200
    assert api("GET", "/v1/keys", key=key["key"], source_ip="2001:db9::1").status == 403


def test_spoofed_forwarded_for_is_ignored(api, tenant):
    key = _restricted_key(api, tenant, ["198.51.100.7"])
    spoofed = api("GET", "/v1/keys", key=key["key"], source_ip="203.0.113.99",
                  headers={"X-Forwarded-For": "198.51.100.7", "X-Real-IP": "198.51.100.7"})
    assert spoofed.status == 403


def test_allowlist_can_be_changed_and_cleared(api, tenant):
    key = _restricted_key(api, tenant, ["198.51.100.7"])
    assert api("GET", "/v1/keys", key=key["key"], source_ip="203.0.113.1").status == 403
    api("PATCH", f"/v1/keys/{key['id']}", key=tenant["key"], json_body={"allowed_ips": []})
    assert api("GET", "/v1/keys", key=key["key"], source_ip="203.0.113.1").status == 200


def test_invalid_allowlist_entry_names_the_field(api, tenant):
    result = api("POST", "/v1/keys", key=tenant["key"], json_body={"name": "x", "allowed_ips": ["10.0.0.0/8", "nope"]})
    assert result.status == 422
    assert result.json["errors"][0]["field"] == "allowed_ips"
    assert "'nope'" in result.json["errors"][0]["message"]


@pytest.mark.parametrize("source,allowed,expected", [
    ("10.1.2.3", [], True),
    (None, ["10.0.0.0/8"], False),
    ("garbage", ["10.0.0.0/8"], False),
    ("10.1.2.3", ["10.0.0.0/8"], True),
    ("10.1.2.3", ["::/0"], False),
    ("::ffff:10.1.2.3", ["10.0.0.0/8"], True),
])
def test_address_allowed(source, allowed, expected):
    assert address_allowed(source, allowed) is expected
