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
