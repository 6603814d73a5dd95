"""The API's one error vocabulary, rendered as RFC 9457 problem details (`application/problem+json`).

Every error a route can answer is an `ApiError` subclass with a stable `type` URI, an HTTP status and a
human `detail`. Validation problems carry per-field `errors` ([{"field": "imap.port", "message": ...}]).
Models and services never raise these; route helpers translate domain outcomes into them.
"""
from __future__ import annotations

import json
from typing import Any

from chalice import Response

PROBLEM_BASE = "https://mailbridge.dev/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"


class ApiError(Exception):
    status = 500
    slug = "internal"
    title = "Internal error"

    def __init__(self, detail: str, *, errors: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra or {}

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status,
                                "detail": self.detail}
        if instance:
            body["instance"] = instance
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extra)
        return body

    def to_response(self, instance: str | None = None) -> Response:
        return problem_response(self.to_problem(instance), self.status, self.headers)


def problem_response(problem: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(body=json.dumps(problem), status_code=status,
                    headers={"Content-Type": PROBLEM_CONTENT_TYPE, **(headers or {})})


class BadRequest(ApiError):
    status, slug, title = 400, "bad-request", "Bad request"


class ValidationFailed(ApiError):
    status, slug, title = 422, "validation", "Validation failed"


class Unauthorized(ApiError):
    status, slug, title = 401, "unauthorized", "Unauthorized"

    def __init__(self, detail: str, **kwargs: Any):
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="mailbridge"'})
        super().__init__(detail, **kwargs)


class Forbidden(ApiError):
    status, slug, title = 403, "forbidden", "Forbidden"


class InsufficientAccess(Forbidden):
    """The caller sees the mailbox or message but its access level does not allow this action."""
    slug, title = "insufficient-access", "Insufficient access"


class KeyInactive(Forbidden):
    slug, title = "key-inactive", "API key inactive"


class AddressNotAllowed(Forbidden):
    slug, title = "address-not-allowed", "Client address not allowed"


class FeatureNotInPlan(Forbidden):
    slug, title = "feature-not-in-plan", "Feature not in plan"


class PlanLimitReached(Forbidden):
    slug, title = "plan-limit", "Plan limit reached"


class NotFound(ApiError):
    status, slug, title = 404, "not-found", "Not found"


class MethodNotAllowed(ApiError):
    status, slug, title = 405, "method-not-allowed", "Method not allowed"


class NotAcceptable(ApiError):
    status, slug, title = 406, "not-acceptable", "Not acceptable"


class Conflict(ApiError):
    status, slug, title = 409, "conflict", "Conflict"


class PayloadTooLarge(ApiError):
    status, slug, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(ApiError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class TooManyRequests(ApiError):
    status, slug, title = 429, "too-many-requests", "Too many requests"

    def __init__(self, detail: str, *, retry_after: int, **kwargs: Any):
        kwargs.setdefault("headers", {"Retry-After": str(max(1, int(retry_after)))})
        kwargs.setdefault("extra", {"retry_after": max(1, int(retry_after))})
        super().__init__(detail, **kwargs)


class UpstreamFailed(ApiError):
    """A mail server or provider refused or failed; `detail` says what, never with secrets."""
    status, slug, title = 502, "upstream", "Mail provider error"


class Unavailable(ApiError):
    """The service could not answer (API Gateway reached no working API function)."""
    status, slug, title = 503, "unavailable", "Service unavailable"


class GatewayTimeout(ApiError):
    status, slug, title = 504, "timeout", "Timed out"


def invalid(errors: list[dict[str, str]]) -> ValidationFailed:
    """The 422 for `errors` ({field, message} each), its detail naming the first five."""
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return ValidationFailed(f"Request is invalid — {detail}", errors=errors)


def field_error(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{field}: {message}", errors=[{"field": field, "message": message}])
