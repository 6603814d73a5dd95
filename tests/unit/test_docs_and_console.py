"""The API reference at /docs and the console's static files: what they must show and how they are served."""
from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from urllib.parse import urljoin

import pytest

from chalicelib.api.docs_page import field_rows, operations, render_docs
from chalicelib.api.openapi import build_document
from chalicelib.api.routing import OPERATIONS
from chalicelib.api.schema_examples import example
from chalicelib.console.assets import STATIC_DIR
from tests.conftest import OPERATOR_KEY
from tests.sync_helpers import make_mailbox

# DOM sinks that parse strings as HTML or code; the console inserts data only as text and attributes.
FORBIDDEN_JS = re.compile(r"\.(innerHTML|outerHTML)\b|insertAdjacentHTML|document\.write|\beval\s*\(|"
                          r"new\s+Function\s*\(|setTimeout\s*\(\s*['\"`]|createContextualFragment|DOMParser")


@pytest.fixture(scope="module")
def document():
    import app  # noqa: F401 - registers every route, so the document holds them all
    return build_document()


class _Sections(HTMLParser):
    """Text of each <section id=...> of the page (sections do not nest)."""

    def __init__(self):
        super().__init__()
        self.sections: dict[str, list[str]] = {}
        self.current: str | None = None
        self.scripts: list[dict] = []
        self.inline_styles = 0

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "section":
            self.current = attributes.get("id")
            self.sections[self.current] = []
        if tag == "script":
            self.scripts.append(attributes)
        if tag == "style" or "style" in attributes or any(name.startswith("on") for name in attributes):
            self.inline_styles += 1

    def handle_endtag(self, tag):
        if tag == "section":
            self.current = None

    def handle_data(self, data):
        if self.current:
            self.sections[self.current].append(data)


def test_docs_lists_every_operation_with_its_parameters_schemas_errors_and_examples(api, document):
    """/docs was an index (method, path, one line): an operation, parameter, field or error missing from it
    leaves a developer guessing what to send and what comes back."""
    result = api("GET", "/docs")
    assert result.status == 200 and result.headers["content-type"].startswith("text/html")
    page = _Sections()
    page.feed(result.body)
    components = document["components"]["schemas"]
    operations = [(path, method, op) for path, methods in document["paths"].items() for method, op in methods.items()]
    assert len(operations) == len(OPERATIONS)
    for path, method, op in operations:
        anchor = op["operationId"]
        assert f'href="#{anchor}"' in result.body, f"no table-of-contents link to {anchor}"
        text = " ".join(page.sections[anchor])
        assert method.upper() in text and path in text and op["summary"] in text
        for parameter in op.get("parameters", []):
            assert parameter["name"] in text, f"{anchor}: parameter {parameter['name']}"
        schemas = [c["schema"] for c in op.get("requestBody", {}).get("content", {}).values()]
        schemas += [c["schema"] for r in op["responses"].values() for c in r.get("content", {}).values()
                    if "problem" not in next(iter(r["content"]))]
        for schema in schemas:
            for name, *_ in field_rows(schema, components):
                assert name in text, f"{anchor}: field {name}"
        for code in op["responses"]:
            assert code in text, f"{anchor}: status {code}"
        assert "curl -s" in text and "Example request" in text


def test_generated_examples_validate_against_their_models(document):
    """An example body the API itself would refuse (wrong pattern, missing field) misleads more than none."""
    components = document["components"]["schemas"]
    for op in OPERATIONS:
        for model, required_only in ((op.body, True), (op.response, False)):
            if model is not None:
                value = example({"$ref": f"#/components/schemas/{model.__name__}"}, components,
                                required_only=required_only)
                model.model_validate(value)


def test_docs_name_problem_types_and_resolve_nested_schemas(document):
    """Errors were a bare status list, and nested models ($ref) showed as a name without their fields."""
    page = html.unescape(render_docs(document))
    assert "key-inactive" in page and "address-not-allowed" in page and "feature-not-in-plan" in page
    assert "imap.host" in page and "items[].subject" in page and "items[].links[].reason" in page
    assert 'curl -s -X POST "$B/v1/mailboxes/$MAILBOX_ID/refresh"' in page


def test_docs_and_console_are_served_with_a_strict_csp_and_no_inline_script(api):
    """Inline scripts or styles would need 'unsafe-inline' and reopen the door to injected markup."""
    for path in ("/docs", "/console"):
        result = api("GET", path)
        assert result.status == 200, path
        csp = result.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp
        page = _Sections()
        page.feed(result.body)
        assert page.scripts and all(s.get("src") for s in page.scripts), path
        assert page.inline_styles == 0, path
    for path, kind in (("/docs/docs.css", "text/css"), ("/docs/docs.js", "text/javascript"),
                       ("/console/app.js", "text/javascript"), ("/console/console.css", "text/css")):
        result = api("GET", path)
        assert result.status == 200 and result.headers["content-type"].startswith(kind), path
        assert "unsafe-inline" not in result.headers["content-security-policy"]


@pytest.mark.parametrize("path", ["/console/..%2Fassets.py", "/console/assets.py", "/console/nope.js",
                                  "/console/docs.css", "/docs/app.js", "/docs/index.html", "/console/.env"])
def test_only_shipped_static_files_are_served(api, path):
    """A static route that serves any name could read the package's source or walk out of its directory."""
    result = api("GET", path)
    assert result.status == 404 and result.json["type"].endswith("/not-found")


def test_console_scripts_never_parse_data_as_html_or_code():
    """One innerHTML with an API string is enough for a hostile subject to run script in the console."""
    scripts = sorted(STATIC_DIR.glob("*.js"))
    assert len(scripts) >= 5
    for script in scripts:
        source = script.read_text()
        assert not FORBIDDEN_JS.search(source), f"{script.name}: {FORBIDDEN_JS.search(source).group(0)}"
        assert "localStorage" not in source, f"{script.name}: the key belongs in sessionStorage only"
    api_js = (STATIC_DIR / "api.js").read_text()
    assert "sessionStorage" in api_js and "Authorization" in api_js


def test_console_calls_only_routes_of_the_public_api(document):
    """The console must be a client of the documented API, never of a private endpoint."""
    paths = [re.sub(r"{[^}]+}", "X", p) for p in document["paths"]]
    for script in STATIC_DIR.glob("*.js"):
        for call in re.findall(r'call\("(?:GET|POST|PUT|PATCH|DELETE)", [`"]([^`"?$]*)', script.read_text()):
            called = "/" + re.sub(r"\$\{[^}]+\}", "X", call).rstrip("/")
            assert any(re.fullmatch(re.escape(p).replace("X", "[^/]+"), called) or p.startswith(called)
                       for p in paths), f"{script.name} calls {called}"


def test_console_and_docs_assets_stay_small():
    """The static files ship in every API Lambda package; a bundled framework would weigh on each cold start."""
    total = sum(path.stat().st_size for path in STATIC_DIR.iterdir() if path.is_file())
    assert total < 64 * 1024, f"{total} bytes of static files"


@pytest.mark.parametrize("path, target", [("/console/", "/console"), ("/docs/", "/docs")])
def test_a_trailing_slash_redirects_to_the_page_its_relative_links_are_written_for(api, path, target):
    """`/console/` served the page itself, so its relative `console/app.js` resolved to
    `/console/console/app.js` (404): a blank page without scripts, and `/docs/` lost its stylesheet and its
    link to the OpenAPI document. The redirect is relative, so it also holds under an API Gateway stage."""
    result = api("GET", path)
    assert result.status == 308, result
    assert urljoin(f"https://api.example{path}", result.headers["location"]) == f"https://api.example{target}"
    assert urljoin(f"https://api.example/dev{path}", result.headers["location"]) == f"https://api.example/dev{target}"
    assert api("GET", target).status == 200


def test_the_reference_and_console_pages_carry_the_same_security_headers(api):
    """/docs lacked the console's Referrer-Policy and Cache-Control; neither page said X-Frame-Options for
    browsers that predate CSP frame-ancestors (RFC 7034)."""
    for path in ("/docs", "/console", "/docs/docs.js", "/console/app.js"):
        headers = api("GET", path).headers
        assert headers["x-frame-options"] == "DENY", path
        assert headers["referrer-policy"] == "no-referrer", path
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["cache-control"] == "no-cache", path


def test_every_example_of_the_document_validates_against_its_openapi_schema(document):
    """The reference's examples (request bodies, required query parameters, every JSON answer, and a schema's
    own `examples`) are checked against the schemas the document publishes — what a client generator or a
    validating proxy reads — not only against the server's models."""
    from openapi_schema_validator import OAS31Validator

    components = document["components"]["schemas"]
    checked, problems = 0, []

    def check(where: str, schema: dict, value) -> None:
        nonlocal checked
        checked += 1
        validator = OAS31Validator({**schema, "components": document["components"]})
        errors = [e.message for e in validator.iter_errors(value)]
        if errors:
            problems.append((where, errors[:2]))

    for path, method, op in operations(document):
        for parameter in op.get("parameters", []):
            if parameter["in"] == "query" and parameter.get("required"):
                check(f"{method} {path} ?{parameter['name']}", parameter["schema"],
                      example(parameter["schema"], components, name=parameter["name"]))
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if body:
            check(f"{method} {path} body", body["schema"], example(body["schema"], components, required_only=True))
        for code, response in op["responses"].items():
            for media, content in response.get("content", {}).items():
                if "json" in media and "schema" in content:
                    check(f"{method} {path} {code}", content["schema"], example(content["schema"], components))
    for name, schema in components.items():
        for value in schema.get("examples", []):
            check(f"{name} example", {"$ref": f"#/components/schemas/{name}"}, value)
    assert problems == [] and checked > 300


# Request bodies of /docs pasted as they are: routes that reach no provider or outside host (connecting a
# mailbox, the notification relay and the webhook resolve their hosts); `{...}` are filled from the world below.
PASTED = [("POST", "/v1/admin/tenants"), ("PATCH", "/v1/admin/tenants/{tenant_id}"), ("POST", "/v1/keys"),
          ("PATCH", "/v1/keys/{key_id}"), ("POST", "/v1/directory/batch"),
          ("PUT", "/v1/directory/{record_type}/{record_id}"), ("PUT", "/v1/pairing/settings"),
          ("PUT", "/v1/privacy/lists"), ("PUT", "/v1/privacy/settings"), ("POST", "/v1/rules"),
          ("PATCH", "/v1/rules/{rule_id}"), ("PUT", "/v1/users/{user_id}/notification-settings"),
          ("PUT", "/v1/users/{user_id}/privacy-lists"), ("POST", "/v1/webhook/deliveries/replay"),
          ("POST", "/v1/erasure"), ("POST", "/v1/mail-servers"), ("PATCH", "/v1/mail-servers/{server_id}"),
          ("PATCH", "/v1/mailboxes/{mailbox_id}"), ("POST", "/v1/mailboxes/{mailbox_id}/send")]


@pytest.mark.parametrize("method, path", PASTED)
def test_request_examples_of_the_reference_are_accepted_by_the_api(api, tenant, document, method, path):
    """Each /docs example passed the models' field checks, yet the API refused several when pasted (422): a rule
    action `pair` without its record, `"string"` as a never-import address, a retention of 1 day, a new message
    with `in_reply_to`."""
    op = document["paths"][path][method.lower()]
    components = document["components"]["schemas"]
    body = example(op["requestBody"]["content"]["application/json"]["schema"], components, required_only=True)
    rule = api("POST", "/v1/rules", key=tenant["key"], json_body={
        "name": "r", "actions": [{"type": "skip"}]}).json["id"]
    key_id = api("POST", "/v1/keys", key=tenant["key"], json_body={"name": "k"}).json["id"]
    server = api("POST", "/v1/mail-servers", key=tenant["key"], json_body={
        "name": "s", "type": "imap", "imap": {"host": "imap.acme.example"}}).json["id"]
    world = {"tenant_id": tenant["id"], "rule_id": rule, "key_id": key_id, "user_id": "u-1",
             "record_type": "contact", "record_id": "p-1", "server_id": server,
             "mailbox_id": make_mailbox(tenant["id"]).mailbox_id}
    key = OPERATOR_KEY if path.startswith("/v1/admin") else tenant["key"]
    result = api(method, re.sub(r"{([^}]+)}", lambda m: world[m.group(1)], path), key=key, json_body=body)
    assert result.status < 300, (body, result.json)


def test_the_sign_in_form_can_never_put_the_key_in_a_url(api):
    """The form had no method: a native submit (the script not loaded or failed) would have been a GET of
    `/console?key=mbk_…` — the key in the address bar, the history and every access log. It posts nowhere now:
    `method="post"`, and the CSP forbids form submission outright (`form-action 'none'`)."""
    result = api("GET", "/console")
    form = re.search(r"<form[^>]*id=\"signin\"[^>]*>", result.body).group(0)
    assert 'method="post"' in form
    assert "form-action 'none'" in result.headers["content-security-policy"]
