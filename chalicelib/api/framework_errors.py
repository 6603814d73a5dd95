"""Chalice's own error answers, rewritten into the API's one vocabulary (`chalicelib.api.errors`).

A few answers never reach a route's wrapper (`chalicelib.api.routing`), so Chalice writes them itself as
`{"Code": ..., "Message": ...}` without a content type: a method the path does not serve (405, with `Allow`),
a request body in a media type the route does not take (415; only routes that declare `accepts`), a binary
download whose `Accept` header does not name its type (Chalice says 400; it is RFC 9110 §15.5.7's 406), and an
exception that escaped a view (500). `problem_middleware` — registered in `app.py` as HTTP middleware, so it
wraps Chalice's routing — turns each into problem+json with a stable `type`; every other answer passes through.
The route wrapper renders bodies as JSON strings, so a dict body with exactly `Code` and `Message` is Chalice's.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from chalice import Response

from chalicelib.api.errors import (ApiError, BadRequest, MethodNotAllowed, NotAcceptable, NotFound,
                                   UnsupportedMediaType)

_BY_CODE: dict[str, type[ApiError]] = {
    "MethodNotAllowedError": MethodNotAllowed, "UnsupportedMediaType": UnsupportedMediaType,
    "BadRequest": NotAcceptable,     # Chalice's binary-response check: Accept does not name the body's type
    "BadRequestError": BadRequest, "NotFoundError": NotFound,
}
_SERVED_TYPE = re.compile(r"Content-Type of ([\w.+-]+/[\w.+-]+?)\.(?:\s|$)")


def _is_chalice_error(response: Any) -> bool:
    return isinstance(response, Response) and isinstance(response.body, dict) \
        and set(response.body) == {"Code", "Message"}


def _detail(error: type[ApiError], request: Any, response: Response) -> str:
    method = getattr(request, "method", "") or ""
    if error is MethodNotAllowed:
        allowed = response.headers.get("Allow", "")
        return f"This path does not serve {method}; it serves {allowed}."
    if error is UnsupportedMediaType:
        return "This route does not take a body of that media type."
    if error is NotAcceptable:
        found = _SERVED_TYPE.search(str(response.body.get("Message", "")))
        served = found.group(1) if found else "a binary media type"
        return f"This route answers {served}: send 'Accept: {served}' (or */*)."
    return str(response.body.get("Message") or error.title)


def problem_response_for(request: Any, response: Response) -> Response:
    """`response` when it is not one of Chalice's own error bodies, else the same answer as problem+json."""
    if not _is_chalice_error(response):
        return response
    error = _BY_CODE.get(response.body["Code"])
    if error is None:
        problem = ApiError("An unexpected error occurred; it has been logged.")
    else:
        problem = error(_detail(error, request, response))
    keep = {k: v for k, v in response.headers.items() if k.lower() == "allow"}
    problem.headers.update(keep)
    context = getattr(request, "context", None) or {}
    return problem.to_response(instance=context.get("path"))


def problem_middleware(event: Any, get_response: Callable[[Any], Response]) -> Response:
    return problem_response_for(event, get_response(event))
