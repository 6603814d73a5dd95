"""The local stack's API server: Chalice's local server, plus a per-request count of AWS calls.

Every response carries `X-Local-Aws-Calls: dynamodb=<n>, s3=<n>, ...` — the botocore calls the request's
handler made (boto3 and PynamoDB both go through `BaseClient._make_api_call`). Chalice's local server runs
each connection in its own thread and each request of a connection in turn, so a thread-local counter reset
at the start of a request counts exactly that request's calls. Local stage only: the header tells a
developer (and `bench/local_stack`) what a route costs; the cloud's API Gateway never sees it.

API requests go first. In the cloud the API, the sync worker and the notifier are separate Lambda functions;
here they share one process and its GIL, so a message list made while a mailbox imports waited behind the
worker's and notifier's threads (a 0.15 s list took 0.6 s). While a request is in flight, every other thread
waits before its next AWS call until no request is in flight (at most `BACKGROUND_WAIT_SECONDS` a call, so a
stream of requests slows background work but never stops it). A background thread waits only at the start of
a call, holding no emulator lock; the functions' process's calls wait the same way where the emulator answers
them (`wait_for_requests`).

A path no route serves is answered as the cloud's API Gateway answers it (`infra.template_wiring`,
`GATEWAY_PROBLEMS`): 404 problem+json. Chalice's local server would say 403 "Missing Authentication Token", and
echo an `Authorization` header — the API key — in that body.

The access log (one line a request on stderr) hides the values of `code` and `state` in the query: the OAuth
callback's authorization code and state are credentials (RFC 6749 §10.5, §10.12), short-lived and single-use,
but a log is no place for them — the cloud's API Gateway writes no request line at all.
"""
from __future__ import annotations

import collections
import json
import re
import threading

import botocore.client
from chalice.config import Config
from chalice.local import ChaliceRequestHandler, ForbiddenError, LocalDevServer

from chalicelib.api.errors import PROBLEM_CONTENT_TYPE
from infra.template_wiring import GATEWAY_PROBLEMS

HEADER = "X-Local-Aws-Calls"
BACKGROUND_WAIT_SECONDS = 1.0
_calls = threading.local()
_installed = False
_requests = threading.Condition()
_in_flight = 0
_CREDENTIAL_PARAMS = re.compile(r"([?&](?:code|state)=)[^&\s]*")


def _request_started() -> None:
    global _in_flight
    with _requests:
        _in_flight += 1


def _request_finished() -> None:
    global _in_flight
    with _requests:
        _in_flight -= 1
        if _in_flight == 0:
            _requests.notify_all()


def wait_for_requests() -> None:
    """Wait (≤ `BACKGROUND_WAIT_SECONDS`) while an API request is in flight: background work goes second. Run
    before each background AWS call of this process and each request the functions' process sends to the
    emulator (`infra/local_bridge.py`)."""
    if _in_flight:
        with _requests:
            _requests.wait_for(lambda: _in_flight == 0, timeout=BACKGROUND_WAIT_SECONDS)


def install_counter() -> None:
    """Count botocore calls per thread (idempotent)."""
    global _installed
    if _installed:
        return
    original = botocore.client.BaseClient._make_api_call

    def counting(self, operation_name, api_params):
        counter = getattr(_calls, "counter", None)
        if counter is not None:
            counter[self.meta.service_model.service_name] += 1
        else:
            wait_for_requests()
        return original(self, operation_name, api_params)

    botocore.client.BaseClient._make_api_call = counting
    _installed = True


def header_value(counter: collections.Counter) -> str:
    return ", ".join(f"{service}={n}" for service, n in sorted(counter.items())) or "none"


class CountingRequestHandler(ChaliceRequestHandler):
    def _generic_handle(self) -> None:
        _calls.counter = collections.Counter()
        _request_started()
        try:
            super()._generic_handle()
        finally:
            _request_finished()
            _calls.counter = None

    def _send_headers(self, headers) -> None:
        counter = getattr(_calls, "counter", None)
        if counter is not None:
            headers = {**headers, HEADER: header_value(counter)}
        super()._send_headers(headers)

    def _send_error_response(self, error) -> None:
        if not isinstance(error, ForbiddenError):      # the local gateway's only 403: no route matched
            super()._send_error_response(error)
            return
        problem = GATEWAY_PROBLEMS["MISSING_AUTHENTICATION_TOKEN"]
        self._send_http_response(problem.status, {"Content-Type": PROBLEM_CONTENT_TYPE},
                                 json.dumps(problem.to_problem()).encode())

    def log_request(self, code="-", size="-") -> None:
        self.log_message('"%s" %s %s', redact(self.requestline), str(code), str(size))

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = _generic_handle


def redact(request_line: str) -> str:
    """The request line without the values of its `code` and `state` query parameters."""
    return _CREDENTIAL_PARAMS.sub(r"\1…", request_line)


def create_server(app, config: Config, host: str, port: int) -> LocalDevServer:
    install_counter()
    return LocalDevServer(app, config, host, port, handler_cls=CountingRequestHandler)
