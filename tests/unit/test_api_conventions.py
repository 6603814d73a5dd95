"""Guards the API conventions: problem+json errors naming fields, body limits, health, OpenAPI, docs."""
import json



def test_health_needs_no_auth(api):
    result = api("GET", "/v1/health")
    assert result.status == 200 and result.json == {"status": "ok", "stage": "test"}


def test_validation_errors_name_each_field(api, tenant):
    result = api("POST", "/v1/keys", key=tenant["key"], json_body={"name": "", "colour": "red"})
    assert result.status == 422
    assert result.headers["content-type"] == "application/problem+json"
    fields = {e["field"] for e in result.json["errors"]}
    assert fields == {"name", "colour"}
    assert result.json["type"] == "https://mailbridge.dev/problems/validation"
    assert result.json["status"] == 422 and result.json["title"]


def test_malformed_json_is_400(api, tenant):
    result = api("POST", "/v1/keys", key=tenant["key"], body="{not json")
    assert result.status == 400 and "JSON" in result.json["detail"]
    result = api("POST", "/v1/keys", key=tenant["key"], body="[1,2]")
    assert result.status == 422 and result.json["errors"][0]["field"] == "body"


def test_body_size_limit(api, tenant):
    big = json.dumps({"name": "x" * (1_048_576 + 10)})
    result = api("POST", "/v1/keys", key=tenant["key"], body=big)
    assert result.status == 413


def test_wrong_content_type_is_415(api, tenant):
    result = api("POST", "/v1/keys", key=tenant["key"], body="name=x",
                 headers={"content-type": "application/x-www-form-urlencoded"})
    assert result.status == 415


def test_query_validation_names_the_parameter(api, tenant):
    result = api("GET", "/v1/keys?limit=5000", key=tenant["key"])
    assert result.status == 422 and result.json["errors"][0]["field"] == "query.limit"


def test_openapi_documents_every_route(api):
    from app import app
    document = api("GET", "/v1/openapi.json").json
    assert document["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, ops in document["paths"].items() for method in ops}
    served = {(path, method) for path, methods in app.routes.items() for method in methods}
    assert served - documented == set(), "routes missing from the OpenAPI document"
    from chalicelib.api.openapi import undocumented_routes
    assert undocumented_routes(app.routes) == set()
    assert documented - served == set(), "documented routes that are not served"
    assert document["components"]["schemas"]["Problem"]["required"] == ["type", "title", "status", "detail"]
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            assert op["summary"] and op["responses"], (path, method)


def test_openapi_documents_the_error_statuses_the_routes_return(api):
    """Undocumented 400/404/409/422 answers (schemathesis status_code_conformance) broke generated clients."""
    paths = api("GET", "/v1/openapi.json").json["paths"]
    user_header = next(p for p in paths["/v1/keys"]["get"]["parameters"] if p["name"] == "X-User-Id")
    assert user_header["schema"]["pattern"].startswith("^")
    assert {"400", "422"} <= set(paths["/v1/keys"]["get"]["responses"])  # bad cursor / limit
    assert "400" in paths["/v1/keys/{key_id}"]["delete"]["responses"]  # malformed X-User-Id
    assert "404" in paths["/v1/signals"]["get"]["responses"] and "404" in paths["/v1/rules"]["post"]["responses"]
    assert "422" in paths["/v1/directory/{record_type}/{record_id}"]["get"]["responses"]
    mailbox_id = paths["/v1/mailboxes/{mailbox_id}"]["patch"]["parameters"][0]
    assert mailbox_id["schema"]["minLength"] == 1  # "/v1/mailboxes/" is another route (405), not this one
    for path in ("/v1/messages/{message_id}/links", "/v1/audit/{audit_id}/undo",
                 "/v1/signals/{signal_id}/accept", "/v1/signals/{signal_id}/dismiss"):
        assert "409" in paths[path]["post"]["responses"], path


def test_openapi_is_valid_3_1(api):
    from openapi_spec_validator import validate
    validate(api("GET", "/v1/openapi.json").json)


def test_a_route_registered_without_its_declaration_is_reported():
    from chalice import Chalice

    from chalicelib.api.openapi import undocumented_routes

    app = Chalice(app_name="probe")

    @app.route("/v1/sneaky", methods=["GET"])      # bypasses route(): no OpenAPI entry
    def sneaky():
        return {}

    assert undocumented_routes(app.routes) == {("/v1/sneaky", "GET")}
    from app import app as real_app
    assert undocumented_routes(real_app.routes) == set()


def test_docs_page_renders_operations(api):
    result = api("GET", "/docs")
    assert result.status == 200 and result.headers["content-type"].startswith("text/html")
    assert "/v1/keys" in result.body and "Create an API key" in result.body


def test_unhandled_errors_are_500_problems_without_internals(api, tenant, monkeypatch):
    from chalicelib.tenancy import service

    def boom(*args, **kwargs):
        raise RuntimeError("secret internal detail")
    monkeypatch.setattr(service, "list_keys", boom)
    result = api("GET", "/v1/keys", key=tenant["key"])
    assert result.status == 500 and "secret internal detail" not in result.body


def _captured_logs():
    import io
    import logging

    from chalicelib.logs import logger
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    return logger, handler, stream


def test_deeply_nested_json_is_400_on_every_body_route(api, tenant, operator_key):
    """A 6 KB body of 3,000 nested arrays escaped as RecursionError: 500 and a logged traceback on every route."""
    import re

    from chalicelib.api.routing import MAX_JSON_DEPTH, OPERATIONS
    hostile = '{"name": ' + "[" * 3000 + "]" * 3000 + "}"
    logger, handler, stream = _captured_logs()
    logger.addHandler(handler)
    try:
        checked = 0
        for op in OPERATIONS:
            if op.body is None:
                continue
            path = re.sub(r"\{[^}]+\}", "x1", op.path)
            key = operator_key if op.auth == "operator" else tenant["key"]
            result = api(op.method, path, key=key, body=hostile)
            assert result.status == 400, (op.method, op.path, result)
            assert result.headers["content-type"] == "application/problem+json"
            assert result.json["type"].endswith("/bad-request") and "deeper than 32" in result.json["detail"]
            assert result.json["max_depth"] == MAX_JSON_DEPTH
            checked += 1
        assert checked >= 10
    finally:
        logger.removeHandler(handler)
    assert "Traceback" not in stream.getvalue() and "RecursionError" not in stream.getvalue()


def test_json_depth_limit_counts_nesting_not_brackets_in_strings(api, tenant):
    """Guards the depth scan against refusing legitimate bodies: brackets inside strings and long flat lists."""
    from chalicelib.api.routing import json_depth_exceeds
    assert not json_depth_exceeds(b"[" * 32 + b"]" * 32) and json_depth_exceeds(b"[" * 33 + b"]" * 33)
    assert not json_depth_exceeds(b'{"a": "' + b"[" * 5000 + b'\\"{{{{"}')
    assert not json_depth_exceeds(b"[" + b"[1],{}," * 20000 + b"1]")
    name = "[[[{{{" * 100
    created = api("POST", "/v1/keys", key=tenant["key"], json_body={"name": name[:100]})
    assert created.status == 201, created
    nested = api("PUT", "/v1/pairing/settings", key=tenant["key"],
                 body='{"blocklist": {"addresses": [' + "[" * 40 + "]" * 40 + "]}}")
    assert nested.status == 400 and "deeper than 32" in nested.json["detail"]
