"""The one Graph/MSAL error translator, as a table."""
from __future__ import annotations

import pytest

from chalicelib.providers.base import ErrorCode
from chalicelib.providers.graph.errors import graph_error, msal_error, network_error


def body(code: str, message: str = "") -> dict:
    return {"error": {"code": code, "message": message}}


@pytest.mark.parametrize("status, payload, headers, expected, retry_after", [
    (410, body("syncStateNotFound"), {}, ErrorCode.CURSOR_INVALID, None),
    (400, body("resyncRequired"), {}, ErrorCode.CURSOR_INVALID, None),
    (400, body("syncStateInvalid"), {}, ErrorCode.CURSOR_INVALID, None),
    (429, body("TooManyRequests"), {"Retry-After": "17"}, ErrorCode.THROTTLED, 17.0),
    (503, body("ServiceUnavailable"), {"retry-after": "4"}, ErrorCode.THROTTLED, 4.0),
    (429, body("TooManyRequests"), {}, ErrorCode.THROTTLED, 10.0),
    (401, body("InvalidAuthenticationToken"), {}, ErrorCode.AUTH_REVOKED, None),
    (403, body("ErrorAccessDenied"), {}, ErrorCode.AUTH_REVOKED, None),
    (404, body("ErrorItemNotFound"), {}, ErrorCode.NOT_FOUND, None),
    (404, body("MailboxNotEnabledForRESTAPI"), {}, ErrorCode.PERMANENT, None),
    (404, body("ErrorMailboxNotEnabled"), {}, ErrorCode.PERMANENT, None),
    (404, body("ResourceNotFound", "The mailbox is either inactive, soft-deleted, or is hosted on-premise."), {},
     ErrorCode.PERMANENT, None),
    (500, body("InternalServerError"), {}, ErrorCode.TEMPORARY, None),
    (504, {}, {}, ErrorCode.TEMPORARY, None),
    (400, body("BadRequest"), {}, ErrorCode.PERMANENT, None),
])
def test_graph_answers_map_to_one_code(status, payload, headers, expected, retry_after):
    """Guards against: a mailbox-wide 404 read as a vanished folder, throttling dead-lettered, 410 not resynced."""
    error = graph_error(status, payload, headers)
    assert error.code == expected
    assert error.retry_after == retry_after


@pytest.mark.parametrize("result, expected", [
    ({"error": "invalid_grant", "error_description": "AADSTS700082: The refresh token has expired"},
     ErrorCode.AUTH_REVOKED),
    ({"error": "invalid_grant", "error_description": "AADSTS65001: The user or administrator has not consented",
      "error_codes": [65001]}, ErrorCode.NEEDS_ADMIN_CONSENT),
    ({"error": "consent_required", "error_description": "AADSTS65001: consent"}, ErrorCode.NEEDS_ADMIN_CONSENT),
    ({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret"},
     ErrorCode.AUTH_REVOKED),
    (None, ErrorCode.AUTH_REVOKED),
])
def test_msal_results_map_through_the_shared_oauth_table(result, expected):
    """Guards against: an admin-consent requirement shown as a plain revoked grant (or the reverse)."""
    assert msal_error(result).code == expected


def test_network_errors_are_temporary_and_never_carry_the_url():
    """Guards against: leaking request URLs (tokens in links) into error details."""
    error = network_error(ConnectionError("https://graph.test/?secret=1"))
    assert error.code == ErrorCode.TEMPORARY and "secret" not in error.detail
