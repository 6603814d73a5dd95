"""Guards against SSRF through any user-supplied host or URL: with the production rules (no allowlist), every
spelling of an internal address — loopback, private, link-local, CGNAT, IPv4-mapped IPv6, decimal/octal/hex
IPv4 forms, names resolving to them — is refused through the API, no connection reaches a listener on
loopback, and each surface answers one uniform error (the same as for a name that does not resolve).
Webhook redirects are not followed, so a receiver cannot bounce a delivery to an internal address."""
from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chalicelib.config import reset_settings
from chalicelib.security import ssrf

# Spellings of internal addresses; "{port}" is the loopback listener's port where the form has no port.
INTERNAL_HOSTS = [
    "127.0.0.1", "127.1", "127.0.1", "2130706433", "0x7f000001", "0x7f.0.0.1", "0177.0.0.1", "0177.1",
    "127.000.000.001", "localhost", "LOCALHOST", "localhost.", "::1", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1",
    "::ffff:7f00:1", "0.0.0.0", "0", "::", "10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1",
    "169.254.169.254", "fe80::1", "fd00::1", "64:ff9b::7f00:1", "2002:7f00:1::", "internal.attacker.example",
    "metadata.attacker.example",
]
RESOLVES_INTERNAL = {"internal.attacker.example": "127.0.0.1", "metadata.attacker.example": "169.254.169.254"}
UNRESOLVABLE = "no-such-host.invalid"


class CountingListener:
    """TCP listeners on 127.0.0.1 and ::1 (one port) that count every connection they accept."""

    def __init__(self):
        self.accepted = 0
        self.v4 = socket.create_server(("127.0.0.1", 0))
        self.port = self.v4.getsockname()[1]
        self.sockets = [self.v4]
        try:
            self.sockets.append(socket.create_server(("::1", self.port), family=socket.AF_INET6))
        except OSError:
            pass  # no IPv6 loopback on this machine: the v4 listener still counts
        for sock in self.sockets:
            sock.settimeout(0.2)
            threading.Thread(target=self._accept, args=(sock,), daemon=True).start()
        self.stopped = False

    def _accept(self, sock):
        while not getattr(self, "stopped", False):
            try:
                conn, _ = sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            conn.close()

    def close(self):
        self.stopped = True
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def listener():
    listening = CountingListener()
    yield listening
    listening.close()


@pytest.fixture
def production_rules(monkeypatch):
    """The prod stage's guard: nothing allowlisted, plain transport refused; attacker names resolve inside."""
    monkeypatch.setenv("MAILBRIDGE_SSRF_ALLOWED_NETWORKS", "")
    monkeypatch.setenv("MAILBRIDGE_STAGE", "prod")
    monkeypatch.setenv("MAILBRIDGE_PUBLIC_BASE_URL", "https://api.example.test/api")    # required in prod
    reset_settings()
    real = socket.getaddrinfo

    def resolver(host, *args, **kwargs):
        if isinstance(host, str) and host.rstrip(".").lower() in RESOLVES_INTERNAL:
            return real(RESOLVES_INTERNAL[host.rstrip(".").lower()], *args, **kwargs)
        if host == UNRESOLVABLE:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    yield
    monkeypatch.undo()
    reset_settings()


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def create_imap_mailbox(api, tenant, host, port):
    return api("POST", "/v1/mailboxes", key=tenant["key"], user="u-1", json_body={
        "name": "probe", "type": "imap", "email": "probe@acme-crm.example", "password": "secret-pw",
        "imap": {"host": host, "port": port, "security": "tls", "username": "probe"},
        "smtp": {"host": host, "port": port, "security": "starttls", "username": "probe"}})


def put_webhook(api, tenant, host, port):
    return api("PUT", "/v1/webhook", key=tenant["key"],
               json_body={"url": f"https://{url_host(host)}:{port}/hook"})


def put_relay(api, tenant, host, port):
    return api("PUT", "/v1/notification-relay", key=tenant["key"], json_body={
        "host": host, "port": port, "security": "starttls", "username": "relay", "password": "relay-pw",
        "from_address": "notify@acme-crm.example"})


SURFACES = {"mailbox (IMAP + SMTP hosts)": create_imap_mailbox, "webhook URL": put_webhook,
            "notification relay": put_relay}


@pytest.mark.parametrize("surface", list(SURFACES))
def test_every_internal_spelling_is_refused_uniformly_without_a_connection(api, tenant, listener,
                                                                            production_rules, surface):
    call = SURFACES[surface]
    baseline = call(api, tenant, UNRESOLVABLE, listener.port)
    assert 400 <= baseline.status < 500, baseline
    outcomes = {}
    for host in INTERNAL_HOSTS:
        result = call(api, tenant, host, listener.port)
        assert 400 <= result.status < 500, (host, result)
        outcomes[host] = (result.status, result.json.get("type"), result.json.get("detail"))
    expected = (baseline.status, baseline.json.get("type"), baseline.json.get("detail"))
    differing = {host: outcome for host, outcome in outcomes.items() if outcome != expected}
    assert differing == {}, f"{surface}: answers that differ from an unresolvable name {expected}: {differing}"
    assert listener.accepted == 0


class Redirector(BaseHTTPRequestHandler):
    target = ""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(307)
        self.send_header("Location", self.target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_webhook_redirect_to_an_internal_address_is_not_followed(api, tenant, listener, monkeypatch):
    """The receiver answers 307 to the loopback listener: the delivery fails, nothing connects there."""
    Redirector.target = f"http://127.0.0.1:{listener.port}/internal"
    server = ThreadingHTTPServer(("127.0.0.2", 0), Redirector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("MAILBRIDGE_SSRF_ALLOWED_NETWORKS", "127.0.0.2/32")  # only the "public" receiver
        reset_settings()
        saved = api("PUT", "/v1/webhook", key=tenant["key"],
                    json_body={"url": f"http://127.0.0.2:{server.server_address[1]}/hook"})
        assert saved.status == 200, saved
        test = api("POST", "/v1/webhook/test", key=tenant["key"])
        assert test.status == 200, test
        assert test.json["status_code"] == 307 and test.json["delivered"] is False, test
        assert listener.accepted == 0
    finally:
        server.shutdown()
        reset_settings()


def test_the_sweep_would_see_a_connection(listener):
    """The listener counts what reaches it (so `accepted == 0` above means something)."""
    socket.create_connection(("127.0.0.1", listener.port)).close()
    deadline = threading.Event()
    for _ in range(50):
        if listener.accepted:
            break
        deadline.wait(0.05)
    assert listener.accepted == 1
    assert ssrf.GENERIC_MESSAGE
