"""The one way to declare a route: auth mode, request models, response model and OpenAPI entry together.

    @route(bp, "/v1/keys", methods=["POST"], body="chalicelib.api.schemas.tenancy:CreateKey",
           response="chalicelib.api.schemas.tenancy:KeyCreated", status=201, summary="Create an API key")
    def create_key(body: CreateKey): ...

The wrapper authenticates (`auth="tenant" | "operator" | "none"`), enforces the body size limit and JSON
content type, validates the body and query string with pydantic (422 with per-field errors), binds the log
context, renders the result as JSON and turns every `ApiError` into problem+json. Because the OpenAPI
document is built from the same declarations, a route cannot exist without its documentation.

Models are named, not imported: `body`, `query`, `response` and an `Answer`'s model are `"package.module:Name"`
references (`chalicelib.lazy.resolve`), so `import app` — every route module — creates none of the ~120
request/response classes (docs/architecture.md, "Cold start"). A route's body and query models are resolved by
its first request, its response model by the handler that builds it (through a `lazy_module` of its schema
module) or by the OpenAPI document, which resolves every `Operation`'s models; a resolved class is cached.
`route()` refuses anything but such a string, so a model class cannot slip back into a route module's top;
`tests/unit/test_routing_references.py` resolves every reference, so a typo fails a test, not a request.

Path parameters reach the handler percent-decoded (RFC 3986 §2.1): API Gateway's REST API — and Chalice's local
server — pass `pathParameters` as the client wrote them, so `/v1/directory/company/c%201` must name the record
`c 1` that a batch stored, and a share for `alice@example.com` may be sent as `alice%40example.com`.

Chalice refuses a request whose Content-Type a route does not list before the route runs. Routes that take
JSON register `*/*` with Chalice and check the type in `parse_body` (only when there is a body model, so a
GET, DELETE or body-less POST carrying a client's default Content-Type is not refused); a route that declares
its own `accepts` keeps Chalice's check, whose answer `framework_errors` renders as problem+json.

JSON bodies may nest at most `MAX_JSON_DEPTH` arrays/objects deep. The check is a scan over the bytes
before parsing: Python's decoder recurses once per level (a 6 KB body of 3,000 `[` exhausts the
interpreter's recursion limit), and no request model of this API nests deeper than a few levels.
"""
from __future__ import annotations

import functools
import json
import re
from urllib.parse import quote, unquote
from dataclasses import dataclass, field
from typing import Any, Callable

from chalice import Response
from pydantic import BaseModel, ValidationError

from chalicelib.api import auth
from chalicelib.api.context import reset_principal, set_principal
from chalicelib.api.errors import (ApiError, BadRequest, NotFound, PayloadTooLarge, UnsupportedMediaType,
                                   ValidationFailed, invalid, problem_response)
from chalicelib.config import get_settings
from chalicelib.lazy import resolve
from chalicelib.logs import logger


@functools.cache
def _resolved(reference: str) -> type[BaseModel]:
    model = resolve(reference)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"{reference!r} names {model!r}, not a pydantic model")
    return model


def model_class(reference: str | None) -> type[BaseModel] | None:
    """The model class a `"package.module:Name"` reference names (None for None): its module is imported by
    the first call, the class cached from then on (the import system's lock: one thread runs the import)."""
    return None if reference is None else _resolved(reference)


def _reference(reference: str | None, role: str) -> str | None:
    """`reference` when it is None or a `"package.module:Name"` string; a model class (or anything else) is
    refused here, at import, so route modules keep naming their models instead of importing them."""
    if reference is None:
        return None
    if not isinstance(reference, str) or reference.count(":") != 1 or not all(reference.split(":")):
        raise TypeError(f"{role} must be a 'package.module:Name' reference to a model, not {reference!r}")
    return reference


@dataclass(frozen=True)
class Answer:
    """A success answer of a route besides its `status`: its description, body model (a `"module:Name"`
    reference; None: a plain string) and content type — e.g. a purge that finishes (200) or continues in the
    background (202)."""
    description: str
    model_ref: str | None = None
    content_type: str = "application/json"

    def __post_init__(self) -> None:
        _reference(self.model_ref, "Answer's model")

    @property
    def model(self) -> type[BaseModel] | None:
        return model_class(self.model_ref)


@dataclass(frozen=True)
class Operation:
    """A declared route. The models are `"module:Name"` references (`*_ref`); `body`, `query` and `response`
    resolve them (importing their schema module on first use), for the OpenAPI document and the tests."""
    method: str
    path: str
    summary: str
    auth: str
    status: int
    tags: tuple[str, ...]
    body_ref: str | None = None
    query_ref: str | None = None
    response_ref: str | None = None
    content_type: str = "application/json"
    errors: tuple[int, ...] = field(default_factory=tuple)
    # other success answers the route gives besides `status` (e.g. a purge's 200/202, a handshake's echo)
    also: tuple[tuple[int, Answer], ...] = field(default_factory=tuple)
    location: str | None = None     # a 201's `Location` template (see `created_location`)

    @property
    def body(self) -> type[BaseModel] | None:
        return model_class(self.body_ref)

    @property
    def query(self) -> type[BaseModel] | None:
        return model_class(self.query_ref)

    @property
    def response(self) -> type[BaseModel] | None:
        return model_class(self.response_ref)

    def models(self) -> list[type[BaseModel]]:
        """Every model the operation names (body, query, response, the other answers'), resolved."""
        found = [self.body, self.query, self.response, *(answer.model for _, answer in self.also)]
        return [model for model in found if model is not None]


OPERATIONS: list[Operation] = []
JSON_ONLY = ("application/json",)
MAX_JSON_DEPTH = 32
# A JSON string (RFC 8259 §7): quote, then runs of ordinary characters or backslash escapes, then quote.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(rb'[^\[\]{}]+')


def json_depth_exceeds(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when `raw` opens more than `limit` arrays/objects inside each other (brackets inside strings do
    not count). Linear in the body size; malformed input is left for the JSON parser to refuse."""
    brackets = _NOT_BRACKET.sub(b"", _JSON_STRING.sub(b'""', raw))
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return False
    return _nests_deeper(brackets, limit)


def _nests_deeper(brackets: bytes, limit: int) -> bool:
    depth = 0
    for byte in brackets:
        if byte in (0x5B, 0x7B):     # [ {
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def validation_errors(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    errors = []
    for err in exc.errors(include_url=False):
        path = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
        errors.append({"field": f"{prefix}{path}" if path else prefix.rstrip(".") or "body",
                       "message": err.get("msg", "invalid")})
    return errors


def _raise_validation(exc: ValidationError, prefix: str = "") -> None:
    raise invalid(validation_errors(exc, prefix)) from None


def _read_json(request, max_body: int | None) -> Any:
    """The request body as parsed JSON ({} when empty) after the size, media type and depth checks."""
    raw = request.raw_body or b""
    limit = max_body or get_settings().max_body_bytes
    if len(raw) > limit:
        raise PayloadTooLarge(f"Request body exceeds {limit} bytes.", extra={"max_bytes": limit})
    content_type = (request.headers.get("content-type") or "application/json").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise UnsupportedMediaType("Send the request body as application/json.")
    if json_depth_exceeds(raw):
        raise BadRequest(f"Request body nests arrays/objects deeper than {MAX_JSON_DEPTH} levels.",
                         extra={"max_depth": MAX_JSON_DEPTH})
    try:
        data = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except RecursionError:   # unreachable after the depth check; kept so no body can answer 500
        raise BadRequest(f"Request body nests arrays/objects deeper than {MAX_JSON_DEPTH} levels.") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"Request body is not valid JSON: {exc}") from None
    return data


def parse_body(request, model: type[BaseModel], max_body: int | None = None) -> BaseModel:
    data = _read_json(request, max_body)
    if not isinstance(data, dict):
        raise ValidationFailed("Request body must be a JSON object.",
                               errors=[{"field": "body", "message": "must be a JSON object"}])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        _raise_validation(exc)
        raise


def refuse_body(request) -> None:
    """A write route without a body model takes no body: an empty one or `{}` passes, any field is a 422 naming
    it (as a model refuses a field it does not know), anything else is refused as `parse_body` would."""
    if request.method not in ("POST", "PUT", "PATCH", "DELETE") or not (request.raw_body or b"").strip():
        return
    data = _read_json(request, None)
    if data == {}:
        return
    if not isinstance(data, dict):
        raise ValidationFailed("This route takes no request body.",
                               errors=[{"field": "body", "message": "this route takes no request body"}])
    raise invalid([{"field": name, "message": "Extra inputs are not permitted"} for name in data])


def refuse_query(request) -> None:
    """A route without a query model takes no query parameters: any is a 422 naming it, as a route with a
    model answers for a parameter it does not know (`DELETE /v1/messages/{id}?purge=true` must not look done)."""
    names = sorted(request.query_params or {})
    if names:
        raise invalid([{"field": f"query.{name}", "message": "Extra inputs are not permitted"} for name in names])


def parse_query(request, model: type[BaseModel], *, single: bool = True) -> BaseModel:
    """The query string validated by `model`. No parameter of this API is a list, so with `single` one given
    twice is refused (Chalice's mapping would silently keep the last value); provider redirects pass False."""
    raw = request.query_params or {}
    repeated = sorted(name for name in raw if len(raw.getlist(name)) > 1) if single and hasattr(raw, "getlist") \
        else []
    if repeated:
        raise invalid([{"field": f"query.{name}", "message": "given more than once"} for name in repeated])
    params = dict(raw)
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        _raise_validation(exc, prefix="query.")
        raise


_PLACEHOLDER = re.compile(r"{([a-z_.]+)}")


def created_location(template: str, answer: dict[str, Any]) -> str | None:
    """The URI of what a 201 created (RFC 9110 §15.3.2, §10.2.2): `template` (`/v1/mailboxes/{id}`; a dotted
    name reads a nested field, `{record.id}`) filled from the answer's fields, each percent-encoded, under
    `MAILBRIDGE_PUBLIC_BASE_URL` (`Settings.public_url`) — absolute, since a path alone would drop an API Gateway
    stage prefix. None when a field is missing."""
    def value(match: re.Match) -> str:
        found: Any = answer
        for name in match.group(1).split("."):
            if not isinstance(found, dict) or found.get(name) in (None, ""):
                raise KeyError(match.group(1))
            found = found[name]
        return quote(str(found), safe="")
    try:
        return get_settings().public_url(_PLACEHOLDER.sub(value, template))
    except KeyError:
        return None


def render(result: Any, status: int, location: str | None = None) -> Response:
    if isinstance(result, Response):
        return result
    if result is None and status == 204:
        return Response(body="", status_code=204)
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json", by_alias=True)
    headers = {"Content-Type": "application/json"}
    uri = created_location(location, result) if location and status == 201 and isinstance(result, dict) else None
    if uri:
        headers["Location"] = uri
    return Response(body=json.dumps(result, default=str), status_code=status, headers=headers)


def _authenticate(mode: str, request):
    if mode == "tenant":
        return auth.authenticate_tenant(request)
    if mode == "operator":
        return auth.authenticate_operator(request)
    return None


def route(bp, path: str, *, methods: list[str], summary: str, auth: str = "tenant", body: str | None = None,
          query: str | None = None, response: str | None = None, status: int = 200, tags: tuple[str, ...] = (),
          content_type: str = "application/json", errors: tuple[int, ...] = (),
          accepts: tuple[str, ...] = JSON_ONLY, max_body: int | None = None,
          also: dict[int, Answer] | None = None, location: str | None = None) -> Callable:
    """Declare a route of `bp` (see the module docstring); `body`, `query` and `response` are `"module:Name"`
    references to pydantic models, resolved on first use; `location`: where a 201 says the created resource
    is (`created_location`)."""
    if auth not in {"tenant", "operator", "none"}:
        raise ValueError(f"unknown auth mode {auth!r}")
    body, query, response = _reference(body, "body"), _reference(query, "query"), _reference(response, "response")

    def decorator(fn: Callable) -> Callable:
        for method in methods:
            OPERATIONS.append(Operation(method.upper(), path, summary, auth, status, tuple(tags), body, query,
                                        response, content_type, tuple(errors), tuple((also or {}).items()),
                                        location))

        @functools.wraps(fn)
        def view(**path_args):
            request = bp.current_request
            request_id = (request.context or {}).get("requestId")
            logger.thread_safe_append_keys(request_id=request_id, route=f"{request.method} {path}", function="api")
            token = None
            try:
                principal = _authenticate(auth, request)
                token = set_principal(principal)
                if principal is not None:
                    logger.thread_safe_append_keys(tenant_id=principal.tenant_id, user_id=principal.user_id)
                kwargs = {name: unquote(value) for name, value in path_args.items()}
                empty = [name for name, value in kwargs.items() if value == ""]
                if empty:       # `/v1/mailboxes//messages`: an empty key is no id (DynamoDB refuses it: 500)
                    raise NotFound(f"Empty {empty[0]} in the path.")
                if body is not None:
                    kwargs["body"] = parse_body(request, model_class(body), max_body)
                elif auth != "none":     # provider callbacks and pushes read their own bodies
                    refuse_body(request)
                if query is not None:
                    kwargs["query"] = parse_query(request, model_class(query), single=auth != "none")
                elif auth != "none":     # provider redirects and pushes may carry parameters of their own
                    refuse_query(request)
                return render(fn(**kwargs), status, location)
            except ApiError as exc:
                if exc.status >= 500:
                    logger.warning("request failed", extra={"problem": exc.slug, "detail": exc.detail})
                return exc.to_response(instance=(request.context or {}).get("path"))
            except Exception:
                logger.exception("unhandled error")
                return problem_response({"type": "https://mailbridge.dev/problems/internal",
                                         "title": "Internal error", "status": 500,
                                         "detail": "An unexpected error occurred; it has been logged."}, 500)
            finally:
                if token is not None:
                    reset_principal(token)
                logger.thread_safe_remove_keys(["tenant_id", "user_id", "request_id", "route", "function"])

        content_types = ["*/*"] if tuple(accepts) == JSON_ONLY else list(accepts)   # JSON: parse_body checks
        bp.route(path, methods=[m.upper() for m in methods], content_types=content_types)(view)
        return fn

    return decorator
