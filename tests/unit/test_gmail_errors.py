"""Guards the one Gmail error translator: a stale historyId that is not a resync, a vanished message that fails
the mailbox, rate limits that are dead-lettered instead of throttled, and revoked grants that are retried."""
from __future__ import annotations

import json
import socket

import httplib2
import pytest
from googleapiclient.errors import HttpError

from chalicelib.providers.base import ErrorCode, ProviderError
from chalicelib.providers.gmail import errors


def http_error(status: int, reason: str | None = None, retry_after: str | None = None) -> HttpError:
    headers = {"status": str(status)}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    body = {"error": {"code": status, "message": "m", "errors": [{"reason": reason or "x", "domain": "global"}]}}
    return HttpError(httplib2.Response(headers), json.dumps(body).encode())


@pytest.mark.parametrize("status,reason,resource,retry_after,code,expected_retry", [
    (404, None, "history", None, ErrorCode.CURSOR_INVALID, None),
    (404, None, "message", None, ErrorCode.NOT_FOUND, None),
    (404, None, "profile", None, ErrorCode.PERMANENT, None),
    (429, None, "message", "7", ErrorCode.THROTTLED, 7.0),
    (429, None, "history", None, ErrorCode.THROTTLED, errors.DEFAULT_THROTTLE_SECONDS),
    (403, "rateLimitExceeded", "messages", None, ErrorCode.THROTTLED, errors.DEFAULT_THROTTLE_SECONDS),
    (403, "userRateLimitExceeded", "messages", "12", ErrorCode.THROTTLED, 12.0),
    (403, "dailyLimitExceeded", "messages", None, ErrorCode.THROTTLED, errors.DAILY_LIMIT_SECONDS),
    (403, "insufficientPermissions", "messages", None, ErrorCode.AUTH_REVOKED, None),
    (401, "authError", "messages", None, ErrorCode.AUTH_REVOKED, None),
    (400, "invalidArgument", "messages", None, ErrorCode.PERMANENT, None),
    (500, "backendError", "messages", None, ErrorCode.TEMPORARY, None),
    (503, "backendError", "messages", "3", ErrorCode.TEMPORARY, 3.0),
    (429, None, "message", "Wed, 21 Oct 2026 07:28:00 GMT", ErrorCode.THROTTLED, errors.DEFAULT_THROTTLE_SECONDS),
])
def test_http_errors(status, reason, resource, retry_after, code, expected_retry):
    error = errors.translate(http_error(status, reason, retry_after), resource=resource)
    assert error.code == code
    assert error.retry_after == expected_retry


@pytest.mark.parametrize("exc", [socket.timeout("t"), ConnectionRefusedError(), httplib2.ServerNotFoundError("x"),
                                 TimeoutError()])
def test_transport_errors_are_temporary(exc):
    assert errors.translate(exc).code == ErrorCode.TEMPORARY


def test_provider_errors_pass_through_unchanged():
    original = ProviderError(ErrorCode.AUTH_REVOKED, "google: invalid_grant")
    assert errors.translate(original) is original


@pytest.mark.parametrize("status,body,code", [
    (400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
     ErrorCode.AUTH_REVOKED),
    (401, {"error": "invalid_client"}, ErrorCode.AUTH_REVOKED),
    (503, {}, ErrorCode.TEMPORARY),
    (None, {}, ErrorCode.TEMPORARY),
])
def test_token_endpoint_errors(status, body, code):
    assert errors.translate_token(status, body, None).code == code


def test_retry_after_is_capped():
    assert errors.retry_after_seconds({"retry-after": "999999"}) == errors.MAX_RETRY_AFTER_SECONDS
