"""Guards that saving/testing a mailbox really logs in to a live IMAP (Dovecot) + SMTP (aiosmtpd) server and
maps each failure to the right answer: wrong password → `password`, dead port → the one generic message."""
from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest

from chalicelib.timeutil import utcnow
from devservers.smtp import for_dovecot
from tests.dovecot import free_port

GENERIC = ("The mail server could not be reached: check the host name's spelling, the port, and the security mode "
           "(tls: implicit TLS, usually IMAP 993 / SMTP 465; starttls: usually IMAP 143 / SMTP 587).")


@pytest.fixture
def smtp_port(dovecot):
    """SMTP on loopback that accepts AUTH with the Dovecot users' passwords (and offers STARTTLS)."""
    with for_dovecot(dovecot) as server:
        yield server.port


@pytest.fixture
def trust_dovecot_ca(dovecot, monkeypatch):
    """The provider uses the system trust store (SSL_CERT_FILE); point it at the test CA."""
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.base / "tls" / "cert.pem"))


def mailbox_body(dovecot, smtp_port, user, password, **imap):
    return {"name": "Live", "type": "imap", "email": f"{user}@example.com",
            "import_since": (utcnow().date() - timedelta(days=2)).isoformat(), "kind": "personal",
            "imap": {"host": "127.0.0.1", "port": dovecot.port, "security": "none", "username": user, **imap},
            "smtp": {"host": "127.0.0.1", "port": smtp_port, "security": "none", "username": user},
            "password": password}


def _set_server_password(dovecot, user: str, password: str) -> None:
    """Dovecot re-reads a passwd-file whose mtime changed (1 s resolution): wait, then rewrite it."""
    entry = dovecot.base / "users" / user
    time.sleep(1.1)
    line = entry.read_text().split(":")
    line[1] = password
    entry.write_text(":".join(line))
    dovecot.passwords[user] = password


def test_correct_password_connects_active(api, tenant, dovecot, smtp_port):
    user, password = dovecot.new_user()
    result = api("POST", "/v1/mailboxes", key=tenant["key"], user="u-live",
                 json_body=mailbox_body(dovecot, smtp_port, user, password))
    assert result.status == 201, result
    assert result.json["status"] == "active" and result.json["has_password"] is True
    assert password not in result.body


def test_implicit_tls_is_verified_against_the_host_name(api, tenant, dovecot, smtp_port, trust_dovecot_ca):
    user, password = dovecot.new_user()
    body = mailbox_body(dovecot, smtp_port, user, password, host="localhost", port=dovecot.tls_port,
                        security="tls")
    result = api("POST", "/v1/mailboxes", key=tenant["key"], user="u-live", json_body=body)
    assert result.status == 201, result


def test_tls_to_a_plaintext_port_names_the_tls_problem(api, tenant, dovecot, smtp_port):
    user, password = dovecot.new_user()
    body = mailbox_body(dovecot, smtp_port, user, password, security="tls")   # plaintext port, TLS asked
    result = api("POST", "/v1/mailboxes", key=tenant["key"], user="u-live", json_body=body)
    assert result.status == 422, result
    assert "TLS" in result.json["detail"] and password not in result.body
    assert result.json["errors"][0]["field"] == "imap"


def test_wrong_password_is_a_password_field_error(api, tenant, dovecot, smtp_port):
    user, _ = dovecot.new_user()
    result = api("POST", "/v1/mailboxes", key=tenant["key"], user="u-live",
                 json_body=mailbox_body(dovecot, smtp_port, user, "not-the-password"))
    assert result.status == 422, result
    assert result.json["errors"] == [{"field": "password", "message": "the server refused the login"}]
    assert api("GET", "/v1/mailboxes", key=tenant["key"]).json["items"] == []


def test_unreachable_port_gives_the_generic_message(api, tenant, dovecot, smtp_port):
    user, password = dovecot.new_user()
    result = api("POST", "/v1/mailboxes", key=tenant["key"], user="u-live",
                 json_body=mailbox_body(dovecot, smtp_port, user, password, port=free_port()))
    assert result.status == 422, result
    assert result.json["detail"] == GENERIC
    assert result.json["errors"] == [{"field": "imap.host", "message": GENERIC}]


def test_internal_address_answers_like_a_dead_port(api, tenant, dovecot, smtp_port):
    user, password = dovecot.new_user()
    dead = api("POST", "/v1/mailboxes", key=tenant["key"], user="u-live",
               json_body=mailbox_body(dovecot, smtp_port, user, password, port=free_port()))
    internal = api("POST", "/v1/mailboxes", key=tenant["key"], user="u-live",
                   json_body=mailbox_body(dovecot, smtp_port, user, password, host="169.254.169.254"))
    assert (dead.status, dead.json) == (internal.status, internal.json)


@pytest.mark.slow
def test_password_changed_on_server_flips_status_both_ways(api, tenant, dovecot, smtp_port):
    from chalicelib.notify.events import list_events
    user, password = dovecot.new_user()
    created = api("POST", "/v1/mailboxes", key=tenant["key"], user="u-live",
                  json_body=mailbox_body(dovecot, smtp_port, user, password))
    assert created.status == 201, created
    path = f"/v1/mailboxes/{created.json['id']}/test"
    assert api("POST", path, key=tenant["key"], user="u-live").json["ok"] is True

    _set_server_password(dovecot, user, "changed-" + os.urandom(4).hex())
    refused = api("POST", path, key=tenant["key"], user="u-live")
    assert refused.status == 200
    assert refused.json["ok"] is False and refused.json["status"] == "auth_error"

    _set_server_password(dovecot, user, password)
    back = api("POST", path, key=tenant["key"], user="u-live").json
    assert back["ok"] is True and back["status"] == "active"
    statuses = [(e.payload["previous_status"], e.payload["status"])
                for e in reversed(list_events(tenant["id"], "mailbox.status_changed"))]
    assert statuses == [("active", "auth_error"), ("auth_error", "active")]
