"""The API reference at `/docs`: server-side HTML rendered from the OpenAPI document (`openapi.build_document`).

Every operation gets an `#<operationId>` anchor, its parameters, its request body and response schemas as
field tables (`$ref`s resolved, nested objects flattened to dotted names), its errors with the problem
types (RFC 9457) that status can carry, a curl example and example JSON (`schema_examples`). The page works
offline: no CDN, one stylesheet and one small script shipped in the package (`chalicelib/console/static/`),
no inline script or style, so it is served with a strict Content-Security-Policy (`DOCS_CSP`).
"""
from __future__ import annotations

import html
import json
import re
from typing import Any

from chalicelib.api.errors import ApiError
from chalicelib.api.schema_examples import example, non_null, resolve

DOCS_CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'")
_MAX_FIELD_DEPTH = 5
_KEY_VARIABLE = {"apiKey": "$KEY", "operatorKey": "$OPERATOR_KEY"}
_ESC = html.escape


def problem_types() -> dict[int, list[tuple[str, str]]]:
    """HTTP status → [(type URI, title)] of every `ApiError` subclass the application has loaded."""
    found: dict[int, set[tuple[str, str]]] = {}
    pending = [ApiError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls is not ApiError:
            found.setdefault(cls.status, set()).add((cls.type.fget(cls), cls.title))  # type: ignore[attr-defined]
    found.setdefault(500, set()).add(("https://mailbridge.dev/problems/internal", "Internal error"))
    return {status: sorted(types) for status, types in found.items()}


def _type_label(schema: dict[str, Any], components: dict[str, Any]) -> str:
    nullable = any(b.get("type") == "null" for b in schema.get("anyOf", []) + schema.get("oneOf", []))
    branch = non_null(schema)
    ref_name = branch["$ref"].rsplit("/", 1)[-1] if "$ref" in branch else None
    resolved = resolve(branch, components)
    kind = resolved.get("type", "object" if "properties" in resolved else "any")
    if isinstance(kind, list):
        nullable = nullable or "null" in kind
        kind = " | ".join(k for k in kind if k != "null")
    if resolved.get("enum"):
        label = " | ".join(json.dumps(v) for v in resolved["enum"])
    elif kind == "array":
        items = resolved.get("items", {})
        label = f"array of {_type_label(items, components)}" if items else "array"
    else:
        label = ref_name or kind
        if resolved.get("format"):
            label += f" ({resolved['format']})"
    return label + (" | null" if nullable else "")


def _constraints(schema: dict[str, Any]) -> str:
    schema = non_null(schema)
    parts = []
    for key, text in (("minLength", "min length"), ("maxLength", "max length"), ("minimum", "≥"),
                      ("maximum", "≤"), ("exclusiveMinimum", ">"), ("exclusiveMaximum", "<"),
                      ("minItems", "min items"), ("maxItems", "max items"), ("pattern", "pattern")):
        if key in schema:
            parts.append(f"{text} {schema[key]}")
    if "default" in schema:
        parts.append(f"default {json.dumps(schema['default'])}")
    return ", ".join(parts)


def field_rows(schema: dict[str, Any], components: dict[str, Any], prefix: str = "",
               depth: int = 0, seen: tuple[str, ...] = ()) -> list[tuple[str, str, bool, str]]:
    """(dotted name, type, required, description) for every property, nested objects flattened."""
    branch = non_null(schema)
    ref = branch.get("$ref")
    if ref in seen or depth > _MAX_FIELD_DEPTH:
        return []
    resolved = resolve(branch, components)
    if resolved.get("type") == "array":
        return field_rows(resolved.get("items", {}), components, prefix + "[]", depth, seen)
    properties = resolved.get("properties") or {}
    required = set(resolved.get("required", []))
    rows = []
    for name, prop in properties.items():
        dotted = f"{prefix}.{name}" if prefix else name
        description = " ".join(filter(None, [non_null(prop).get("description") or prop.get("description"),
                                             _constraints(prop)]))
        rows.append((dotted, _type_label(prop, components), name in required, description))
        rows.extend(field_rows(prop, components, dotted, depth + 1, seen + ((ref,) if ref else ())))
    return rows


def _field_table(schema: dict[str, Any], components: dict[str, Any]) -> str:
    rows = field_rows(schema, components)
    if not rows:
        return f"<p>Type: <code>{_ESC(_type_label(schema, components))}</code></p>"
    body = "".join(
        f'<tr><td><code>{_ESC(name)}</code></td><td><code>{_ESC(kind)}</code></td>'
        f'<td>{"yes" if required else ""}</td><td>{_ESC(description)}</td></tr>'
        for name, kind, required, description in rows)
    return ('<table class="fields"><thead><tr><th>Field</th><th>Type</th><th>Required</th><th>Description</th>'
            f"</tr></thead><tbody>{body}</tbody></table>")


def _json_block(value: Any) -> str:
    return f'<pre class="json">{_ESC(json.dumps(value, indent=2, ensure_ascii=False))}</pre>'


def _shell_var(name: str) -> str:
    return "$" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def curl_example(path: str, method: str, op: dict[str, Any], components: dict[str, Any]) -> str:
    """A curl command line that pastes into a POSIX shell once `$B` (base URL), the key variable and the path
    parameters (as upper-case shell variables, e.g. `$MAILBOX_ID`) are set."""
    url = "$B" + re.sub(r"{([^}]+)}", lambda m: _shell_var(m.group(1)), path)
    query = [p for p in op.get("parameters", []) if p["in"] == "query" and p.get("required")]
    if query:
        url += "?" + "&".join(f"{p['name']}={example(p['schema'], components, name=p['name'])}" for p in query)
    parts = ["curl -s" + (f" -X {method.upper()}" if method != "get" else "") + f' "{url}"']
    for requirement in op.get("security", []):
        for scheme in requirement:
            parts.append(f'-H "Authorization: Bearer {_KEY_VARIABLE.get(scheme, "$KEY")}"')
    body = op.get("requestBody", {}).get("content", {}).get("application/json")
    if body:
        payload = json.dumps(example(body["schema"], components, required_only=True), ensure_ascii=False)
        parts.append("-H 'Content-Type: application/json'")
        parts.append("-d '" + payload.replace("'", "'\\''") + "'")
    return " \\\n     ".join(parts)


def _parameters(op: dict[str, Any], components: dict[str, Any]) -> str:
    params = op.get("parameters", [])
    if not params:
        return ""
    rows = []
    for p in params:
        schema = p.get("schema", {})
        description = " ".join(filter(None, [p.get("description") or non_null(schema).get("description"),
                                             _constraints(schema)]))
        rows.append(f'<tr><td><code>{_ESC(p["name"])}</code></td><td>{_ESC(p["in"])}</td>'
                    f'<td><code>{_ESC(_type_label(schema, components))}</code></td>'
                    f'<td>{"yes" if p.get("required") else ""}</td><td>{_ESC(description)}</td></tr>')
    return ('<h4>Parameters</h4><table class="fields"><thead><tr><th>Name</th><th>In</th><th>Type</th>'
            f"<th>Required</th><th>Description</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _request_body(op: dict[str, Any], components: dict[str, Any]) -> str:
    content = op.get("requestBody", {}).get("content", {})
    if not content:
        return ""
    media, entry = next(iter(content.items()))
    return (f"<h4>Request body <code>{_ESC(media)}</code></h4>{_field_table(entry['schema'], components)}"
            f"<p>Example (required fields):</p>{_json_block(example(entry['schema'], components, required_only=True))}")


def _responses(op: dict[str, Any], components: dict[str, Any], problems: dict[int, list]) -> str:
    success, errors = [], []
    for code, response in op.get("responses", {}).items():
        (success if int(code) < 400 else errors).append((code, response))
    out = []
    for code, response in success:
        out.append(f"<h4>Response {_ESC(code)} — {_ESC(response.get('description', ''))}</h4>")
        content = response.get("content", {})
        if not content:
            out.append("<p>No body.</p>")
        for media, entry in content.items():
            out.append(f"<p>Content type <code>{_ESC(media)}</code></p>")
            if "schema" in entry:
                out.append(_field_table(entry["schema"], components))
                if "json" in media:
                    out.append("<p>Example:</p>" + _json_block(example(entry["schema"], components)))
    if errors:
        rows = "".join(
            f'<tr><td>{_ESC(code)}</td><td>{_ESC(response.get("description", ""))}</td><td>'
            + " ".join(f'<code title="{_ESC(title)}">{_ESC(uri.rsplit("/", 1)[-1])}</code>'
                       for uri, title in problems.get(int(code), []))
            + "</td></tr>" for code, response in errors)
        out.append('<h4>Errors <code>application/problem+json</code></h4><table class="fields errors"><thead>'
                   f"<tr><th>Status</th><th>When</th><th>Problem types</th></tr></thead><tbody>{rows}</tbody></table>")
    return "".join(out)


def _operation(path: str, method: str, op: dict[str, Any], components: dict[str, Any],
               problems: dict[int, list]) -> str:
    anchor = _ESC(op["operationId"])
    schemes = [s for r in op.get("security", []) for s in r]
    auth = {"apiKey": "tenant API key", "operatorKey": "operator key"}
    who = ", ".join(auth.get(s, s) for s in schemes) or "none (public)"
    return (f'<section class="op" id="{anchor}"><h3><a class="anchor" href="#{anchor}">'
            f'<span class="m m-{_ESC(method)}">{_ESC(method.upper())}</span> <code>{_ESC(path)}</code></a></h3>'
            f'<p>{_ESC(op.get("summary", ""))}</p><p class="auth">Authentication: {_ESC(who)}</p>'
            f"{_parameters(op, components)}{_request_body(op, components)}{_responses(op, components, problems)}"
            f'<h4>Example request</h4><pre class="curl">{_ESC(curl_example(path, method, op, components))}</pre>'
            "</section>")


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, methods in document["paths"].items() for method, op in methods.items()]


_INTRO = """<p>Generated from the OpenAPI 3.1 document at <a href="v1/openapi.json">/v1/openapi.json</a>.
Authenticate with <code>Authorization: Bearer &lt;key&gt;</code>: a tenant API key (<code>mbk_…</code>) or, for
<code>/v1/admin</code>, the operator key (<code>mbo_…</code>). Add <code>X-User-Id</code> to act for a CRM user.
Errors are RFC 9457 <code>application/problem+json</code> with a stable <code>type</code> URI; validation errors
(422) list per-field <code>errors</code>. Lists return <code>{"items": [...], "next_cursor": …}</code>: pass
<code>cursor</code> back for the next page. The examples use shell variables: <code>B={base}</code>,
<code>KEY</code> (tenant key), <code>OPERATOR_KEY</code>, and one per path parameter
(<code>MAILBOX_ID</code>, …).</p>"""


def render_docs(document: dict[str, Any]) -> str:
    components = document.get("components", {}).get("schemas", {})
    problems = problem_types()
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, method, op in operations(document):
        by_tag.setdefault((op.get("tags") or ["misc"])[0], []).append((path, method, op))
    toc, sections = [], []
    for tag in sorted(by_tag):
        items = "".join(f'<li><a href="#{_ESC(op["operationId"])}"><span class="m m-{_ESC(method)}">'
                        f'{_ESC(method.upper())}</span> {_ESC(path)}</a></li>' for path, method, op in by_tag[tag])
        toc.append(f"<li><a href=\"#tag-{_ESC(tag)}\">{_ESC(tag)}</a><ul>{items}</ul></li>")
        sections.append(f'<h2 id="tag-{_ESC(tag)}">{_ESC(tag)}</h2>' + "".join(
            _operation(path, method, op, components, problems) for path, method, op in by_tag[tag]))
    title = _ESC(document.get("info", {}).get("title", "API"))
    # `$B`: the document's server (the public base URL, stage prefix included; `config.Settings.public_url`)
    base = (document.get("servers") or [{}])[0].get("url") or "http://127.0.0.1:8000"
    intro = _INTRO.replace("{base}", _ESC(base))
    description = _ESC(document.get("info", {}).get("description", ""))
    return ('<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{title}</title><link rel="icon" href="data:,"><link rel="stylesheet" href="docs/docs.css">'
            '<script type="module" src="docs/docs.js"></script></head><body>'
            f'<nav id="toc"><input id="filter" type="search" placeholder="Filter operations" aria-label="Filter">'
            f'<ul>{"".join(toc)}</ul></nav><main><h1>{title}</h1><p>{description}</p>{intro}'
            f'{"".join(sections)}</main></body></html>')
