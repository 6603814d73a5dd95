"""OpenAPI 3.1 document built from the route declarations (`routing.OPERATIONS`) and pydantic models.

pydantic emits JSON Schema 2020-12, which OpenAPI 3.1 uses as its schema dialect, so model schemas are
placed under `components.schemas` unchanged (their `$defs` hoisted and `$ref`s rewritten). The operations name
their models by reference (`Operation.body` etc. resolve them): building the document imports every schema
module, which `import app` does not (`routing`'s docstring).
"""
from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from chalicelib.api.auth import USER_ID_PATTERN
from chalicelib.api.routing import OPERATIONS, Operation

PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "properties": {
        "type": {"type": "string", "format": "uri"}, "title": {"type": "string"},
        "status": {"type": "integer"}, "detail": {"type": "string"}, "instance": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "field": {"type": "string"}, "message": {"type": "string"}}}},
    },
    "required": ["type", "title", "status", "detail"],
}
_STATUS_TEXT = {400: "Bad request", 401: "Missing or unknown API key", 403: "Forbidden",
                404: "Not found (or another tenant's id)",
                406: "Not acceptable: send an Accept header naming the answer's media type, or */*",
                409: "Conflict", 413: "Payload too large",
                415: "Unsupported media type", 422: "Validation failed (per-field errors)",
                429: "Too many requests (see Retry-After)", 502: "Mail provider error"}


def _add_component(components: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    """Components are keyed by model class name: two different models of one name would silently document
    the first for both, so that is refused (rename one of them)."""
    if components.setdefault(name, schema) != schema:
        raise ValueError(f"two different schemas are named {name!r} in the OpenAPI document")


_DESCRIPTION = ("Connects CRM users' mailboxes (IMAP/SMTP, Gmail, Microsoft 365) to the CRM: imports and stores "
                "their mail, pairs messages with the tenant's directory records (automatically, as suggestions to "
                "accept, by scanner rules or by hand, with an audit trail and undo), sends and replies through an "
                "outbox, and tells the tenant by signed webhooks and its users by in-app or e-mail notifications. "
                "Human-readable reference: /docs.")


def _schema_ref(model: type[BaseModel], components: dict[str, Any]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        _add_component(components, name, sub)
    _add_component(components, model.__name__, schema)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    return [{"name": name, "in": "query", "required": name in required, "schema": prop}
            for name, prop in schema.get("properties", {}).items()]


def _operation(op: Operation, components: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"summary": op.summary, "tags": list(op.tags) or ["misc"],
                             "operationId": f"{op.method.lower()}_{re.sub(r'[^a-zA-Z0-9]+', '_', op.path).strip('_')}"}
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
              for name in re.findall(r"{([^}]+)}", op.path)]  # an empty segment is another route (or none)
    if op.auth == "tenant":
        params.append({"name": "X-User-Id", "in": "header", "required": False,
                       "schema": {"type": "string", "pattern": USER_ID_PATTERN},
                       "description": "CRM user the call acts for; omitted = the tenant itself."})
    if op.query is not None:
        params.extend(_query_parameters(op.query))
    if params:
        entry["parameters"] = params
    if op.body is not None:
        entry["requestBody"] = {"required": True,
                                "content": {"application/json": {"schema": _schema_ref(op.body, components)}}}
    ok: dict[str, Any] = {"description": "Success"}
    if op.response is not None:
        ok["content"] = {op.content_type: {"schema": _schema_ref(op.response, components)}}
    if op.location and op.status == 201:
        ok["headers"] = {"Location": {"description": "The created resource's URI", "schema": {"type": "string",
                                                                                             "format": "uri"}}}
    responses: dict[str, Any] = {str(op.status): ok}
    for code, answer in op.also:     # other success answers of the route (a purge's 200/202, a handshake's echo)
        schema = _schema_ref(answer.model, components) if answer.model else {"type": "string"}
        responses[str(code)] = {"description": answer.description, "content": {answer.content_type: {"schema": schema}}}
    problem = {"content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    codes = set(op.errors)
    if op.auth != "none":
        codes |= {401, 403}
    if op.auth == "tenant":
        codes.add(400)  # malformed X-User-Id
    if op.auth != "none":
        codes.add(422)  # a query parameter the route does not take (routing.refuse_query)
        if op.body is None and op.method in ("POST", "PUT", "PATCH", "DELETE"):
            codes |= {413, 415}  # a body sent to a route that takes none is read to be refused (refuse_body)
    if op.body is not None:
        codes |= {400, 413, 415, 422}
    if op.query is not None:
        codes |= {400, 422}  # bad pagination cursor; per-field query errors
    if "{" in op.path:
        codes.add(404)
    for code in sorted(codes):
        responses[str(code)] = {"description": _STATUS_TEXT.get(code, "Error"), **problem}
    entry["responses"] = responses
    if op.auth == "tenant":
        entry["security"] = [{"apiKey": []}]
    elif op.auth == "operator":
        entry["security"] = [{"operatorKey": []}]
    else:
        entry["security"] = []
    return entry


def undocumented_routes(routes: dict[str, dict[str, Any]]) -> set[tuple[str, str]]:
    """(path, METHOD) pairs a Chalice app serves (`app.routes`) that no `route()` declaration documents."""
    documented = {(op.path, op.method) for op in OPERATIONS}
    return {(path, method) for path, methods in routes.items() for method in methods} - documented


def build_document(server_url: str | None = None) -> dict[str, Any]:
    components: dict[str, Any] = {"Problem": PROBLEM_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for op in sorted(OPERATIONS, key=lambda o: (o.path, o.method)):
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, components)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "mailbridge API", "version": "1.0.0",
                 "description": _DESCRIPTION},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "apiKey": {"type": "http", "scheme": "bearer", "description": "Tenant API key (mbk_…)"},
            "operatorKey": {"type": "http", "scheme": "bearer", "description": "Operator key (mbo_…)"}}},
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document
