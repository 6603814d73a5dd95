"""Guards against HTTP 500s and responses that break the app's own OpenAPI document (schemathesis, in-process)."""
from __future__ import annotations

import base64
from urllib.parse import urlsplit

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

EXAMPLES_PER_OPERATION = 20
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,  # same inputs on every run: a failure here is a bug, never bad luck
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def chalice_as_wsgi(api):
    """WSGI face for the Chalice app: Chalice is not WSGI, so each request becomes the API Gateway event the
    tests' `api` fixture builds (LocalGateway's converter) and the Lambda proxy response is turned back."""

    def wsgi(environ, start_response):
        raw_uri = environ.get("RAW_URI") or environ["PATH_INFO"]
        target = urlsplit(raw_uri)
        path = target.path + (f"?{target.query}" if target.query else "")
        headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items()
                   if key.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else None
        event = api.gateway.event_converter.create_lambda_event(environ["REQUEST_METHOD"], path, headers, body)
        event["requestContext"]["identity"]["sourceIp"] = "203.0.113.10"
        event["requestContext"]["requestId"] = "fuzz-request"
        response = api.app(event, None)
        payload = response.get("body") or ""
        data = base64.b64decode(payload) if response.get("isBase64Encoded") else payload.encode()
        status = response["statusCode"]
        start_response(f"{status} X", list((response.get("headers") or {}).items()))
        return [data]

    return wsgi


def fuzz(schema, headers: dict[str, str], tag_filter, known_ids: dict[str, str]) -> list[str]:
    """Runs every selected operation; path parameters named in `known_ids` point at real resources, so the
    fuzzed bodies and queries reach the handlers instead of stopping at a 404."""
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if not tag_filter(operation.tags or []):
            continue

        @FUZZ_SETTINGS
        @given(case=operation.as_strategy())
        def check(case):
            for name in set(case.path_parameters or {}) & set(known_ids):
                case.path_parameters[name] = known_ids[name]
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            check()
        except (Exception, BaseExceptionGroup) as error:  # collect every operation's failure, not the first only
            failures.append(f"{operation.label}: {error}")
    return failures


@pytest.fixture
def app_schema(api):
    return schemathesis.openapi.from_wsgi("/v1/openapi.json", chalice_as_wsgi(api))


@pytest.mark.slow
def test_tenant_routes_hold_their_contract_under_fuzzing(api, app_schema, tenant):
    key = api("POST", "/v1/keys", key=tenant["key"], json_body={"name": "fuzzed"}).json
    rule = api("POST", "/v1/rules", key=tenant["key"],
               json_body={"name": "fuzzed", "actions": [{"type": "stop"}]}).json
    failures = fuzz(app_schema, {"Authorization": f"Bearer {tenant['key']}"}, lambda tags: "operator" not in tags,
                    {"key_id": key["id"], "rule_id": rule["id"]})
    assert not failures, "\n\n".join(failures)


@pytest.mark.slow
def test_operator_routes_hold_their_contract_under_fuzzing(app_schema, operator_key, tenant):
    failures = fuzz(app_schema, {"Authorization": f"Bearer {operator_key}"}, lambda tags: "operator" in tags,
                    {"tenant_id": tenant["id"]})
    assert not failures, "\n\n".join(failures)
