"""Guards the Gmail push handler's key cache: fetching Google's certs for every push (slow, and a load on
Google), keeping keys past their `Cache-Control: max-age` or `MAX_AGE_SECONDS`, refetching in a loop for an
unknown key id, and an unreachable certs URI surfacing as anything but `CertsUnavailable`."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chalicelib.push.certs import MAX_AGE_SECONDS, CachedCertsRequest, CertsUnavailable
from devservers.dovecot import free_port


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def certs_server():
    """A certs endpoint on loopback: `{kid: PEM}` with the `Cache-Control` set in `state`; counts GETs."""
    state = {"hits": 0, "cache_control": "public, max-age=120", "keys": {"k1": "PEM-1"}}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            return None

        def do_GET(self):  # noqa: N802 - http.server naming
            state["hits"] += 1
            body = json.dumps(state["keys"]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", state["cache_control"])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/oauth2/v1/certs"
    yield state
    server.shutdown()
    server.server_close()


def test_keys_are_served_from_memory_until_max_age(certs_server):
    clock = Clock()
    request = CachedCertsRequest(clock)
    first = request(certs_server["url"], method="GET")
    assert (first.status, json.loads(first.data)) == (200, {"k1": "PEM-1"})
    clock.now += 119
    assert request(certs_server["url"]).data == first.data and certs_server["hits"] == 1
    clock.now += 2                                                  # past max-age=120
    certs_server["keys"] = {"k2": "PEM-2"}
    assert json.loads(request(certs_server["url"]).data) == {"k2": "PEM-2"} and certs_server["hits"] == 2


def test_a_long_max_age_is_capped(certs_server):
    certs_server["cache_control"] = "public, max-age=86400"
    clock = Clock()
    request = CachedCertsRequest(clock)
    request(certs_server["url"])
    clock.now += MAX_AGE_SECONDS + 1
    request(certs_server["url"])
    assert certs_server["hits"] == 2


def test_an_unknown_key_id_refetches_at_most_once_a_minute(certs_server):
    clock = Clock()
    request = CachedCertsRequest(clock)
    request(certs_server["url"])
    assert request.forget_if_older(certs_server["url"]) is False      # fetched just now: no refetch storm
    clock.now += 61
    assert request.forget_if_older(certs_server["url"]) is True
    request(certs_server["url"])
    assert certs_server["hits"] == 2


def test_an_unreachable_certs_uri_is_certs_unavailable():
    with pytest.raises(CertsUnavailable):
        CachedCertsRequest()(f"http://127.0.0.1:{free_port()}/oauth2/v1/certs")
    with pytest.raises(CertsUnavailable):
        CachedCertsRequest()("http://127.0.0.1:1/", method="POST")

