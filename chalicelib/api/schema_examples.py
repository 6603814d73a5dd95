"""Example values generated from JSON Schema (2020-12, as pydantic emits it and OpenAPI 3.1 carries it).

Used by the rendered reference (`docs_page`) for request and response examples. An `examples`/`example`,
`const`, `default` or first `enum` value of a schema wins; otherwise the value is built from the type and
its constraints (length, bounds, format) so that a generated request body validates against its model.
Request examples (`required_only=True`) carry only the required properties — optional fields are listed in
the field table — unless the object has no required property, in which case every property is shown.
"""
from __future__ import annotations

from typing import Any

MAX_DEPTH = 6
_FORMATS = {"date-time": "2026-12-01T08:00:00Z", "date": "2026-12-01", "uri": "https://crm.example/hooks",
            "email": "jan@acme.example", "uuid": "3fa85f64-5717-4562-b3fc-2c963f66afa6"}
# Name hints for plain strings, so examples read like the API's real data (first match wins).
_NAME_HINTS = (("ips", "192.0.2.0/24"), ("base64", "SGVsbG8="), ("topic", "projects/acme-crm/topics/gmail-push"),
               ("address", "jan@acme.example"), ("email", "jan@acme.example"), ("url", "https://crm.example/hooks"),
               ("host", "imap.example.com"), ("username", "jan@acme.example"), ("password", "app-password"),
               ("secret", "client-secret"), ("_at", "2026-12-01T08:00:00Z"), ("date", "2026-12-01T08:00:00Z"),
               ("since", "2026-12-01"), ("subject", "Offer #1234#"), ("domain", "acme.example"), ("name", "Acme"),
               ("text", "Hello"))


def resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """Follow a local `$ref` (`#/components/schemas/<Name>`); other schemas come back unchanged."""
    seen = 0
    while isinstance(schema, dict) and "$ref" in schema and seen < 20:
        schema = components.get(schema["$ref"].rsplit("/", 1)[-1], {})
        seen += 1
    return schema


def non_null(schema: dict[str, Any]) -> dict[str, Any]:
    """The first non-null branch of an `anyOf`/`oneOf` (pydantic's spelling of `X | None`)."""
    for key in ("anyOf", "oneOf"):
        branches = [b for b in schema.get(key, []) if b.get("type") != "null"]
        if branches:
            merged = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf", "default")}
            return {**branches[0], **merged}
    return schema


def example(schema: dict[str, Any], components: dict[str, Any], *, name: str = "",
            required_only: bool = False, depth: int = 0) -> Any:
    schema = resolve(schema, components)
    if not isinstance(schema, dict):
        return None
    if schema.get("examples"):
        return schema["examples"][0]
    if "example" in schema:
        return schema["example"]
    if "const" in schema:
        return schema["const"]
    if schema.get("default") is not None:
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "anyOf" in schema or "oneOf" in schema:
        branch = non_null(schema)
        if branch is schema:
            return None
        return example(branch, components, name=name, required_only=required_only, depth=depth)
    if "allOf" in schema and schema["allOf"]:
        return example(schema["allOf"][0], components, name=name, required_only=required_only, depth=depth)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object" or "properties" in schema:
        return _object(schema, components, required_only, depth)
    if kind == "array":
        if depth >= MAX_DEPTH:
            return []
        item = example(schema.get("items", {}), components, name=name, required_only=required_only,
                       depth=depth + 1)
        return [item] * max(1, int(schema.get("minItems", 1)))
    if kind == "integer":
        return _number(schema, 1)
    if kind == "number":
        return _number(schema, 0.5)
    if kind == "boolean":
        return True
    if kind == "string":
        return _string(schema, name)
    return None


def _object(schema: dict[str, Any], components: dict[str, Any], required_only: bool, depth: int) -> dict:
    if depth >= MAX_DEPTH:
        return {}
    properties = schema.get("properties", {})
    required = set(schema.get("required", []))
    keys = [k for k in properties if k in required] if required_only and required else list(properties)
    return {key: example(properties[key], components, name=key, required_only=required_only, depth=depth + 1)
            for key in keys}


def _number(schema: dict[str, Any], fallback: float) -> float:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    value = fallback if low is None else low + (1 if "exclusiveMinimum" in schema else 0)
    if high is not None and value > high:
        value = high
    return int(value) if schema.get("type") == "integer" else value


def _string(schema: dict[str, Any], name: str) -> str:
    if schema.get("format") in _FORMATS:
        return _FORMATS[schema["format"]]
    lowered = name.lower()
    value = next((hint for key, hint in _NAME_HINTS if key in lowered), None)
    if value is None:
        value = f"{lowered.rsplit('_', 1)[0]}_123" if lowered.endswith("id") and lowered else "string"
    low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
    if len(value) < low:
        value = value + "x" * (low - len(value))
    if high is not None and len(value) > high:
        value = value[:high]
    return value
