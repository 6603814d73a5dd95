"""Guards the local stack's access log against writing the OAuth callback's authorization code and state
(credentials, RFC 6749 §10.5 and §10.12) to the terminal, while other query parameters stay readable."""
from __future__ import annotations

from infra.local_api import CountingRequestHandler, redact


def test_code_and_state_values_are_hidden_other_parameters_kept():
    line = "GET /v1/oauth/callback?state=s1.sig&code=4%2Fcode-value&scope=gmail.readonly HTTP/1.1"
    assert redact(line) == "GET /v1/oauth/callback?state=…&code=…&scope=gmail.readonly HTTP/1.1"
    assert redact("GET /v1/messages?zipcode=1&q=code HTTP/1.1") == "GET /v1/messages?zipcode=1&q=code HTTP/1.1"


def test_the_handler_logs_the_redacted_request_line():
    handler = object.__new__(CountingRequestHandler)             # no socket: only the log line is exercised
    handler.requestline = "GET /v1/oauth/callback?code=secret-code&state=secret-state HTTP/1.1"
    logged = []
    handler.log_message = lambda fmt, *args: logged.append(fmt % args)
    handler.log_request(302)
    assert logged == ['"GET /v1/oauth/callback?code=…&state=… HTTP/1.1" 302 -']


def test_an_unknown_path_is_a_404_problem_that_echoes_no_key():
    """Chalice's local server answered an unknown path 403 "Missing Authentication Token" — and, when the call
    carried `Authorization: Bearer <key>`, a body that repeated the API key."""
    import json

    from chalice.config import Config
    from chalice.local import LocalGateway, LocalGatewayException

    from app import app
    key = "mbk_abcdefghijkl_" + "s" * 43
    gateway = LocalGateway(app, Config(chalice_stage="test"))
    try:
        gateway.handle_request("GET", "/v1/nothing-here", {"authorization": f"Bearer {key}"}, None)
    except LocalGatewayException as exc:
        error = exc
    sent = []
    handler = object.__new__(CountingRequestHandler)
    handler._send_http_response = lambda code, headers, body: sent.append((code, headers, body))
    handler._send_error_response(error)
    [(code, headers, body)] = sent
    assert code == 404 and headers["Content-Type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["type"] == "https://mailbridge.dev/problems/not-found" and problem["status"] == 404
    assert key not in body.decode()
