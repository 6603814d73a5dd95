"""Guards against the Graph validation handshake's answer (200 text/plain, the echoed token) being missing from
the OpenAPI document, which declared only 202 for both Graph webhooks (found by schemathesis on the local
stack: an undocumented status code)."""
from __future__ import annotations

import pytest


@pytest.mark.parametrize("path", ["/v1/push/graph", "/v1/push/graph/lifecycle"])
def test_the_handshake_answer_is_documented_and_given(api, path):
    document = api("GET", "/v1/openapi.json").json
    responses = document["paths"][path]["post"]["responses"]
    assert responses["200"]["content"] == {"text/plain": {"schema": {"type": "string"}}}
    assert "202" in responses
    answer = api("POST", f"{path}?validationToken=abc%20123", body="", headers={"content-type": "text/plain"})
    assert answer.status == 200 and answer.body == "abc 123"
    assert answer.headers["content-type"].startswith("text/plain")
