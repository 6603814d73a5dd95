"""Guards the model references of the route declarations (`chalicelib.api.routing`): a route names its
request/response models as `"package.module:Name"` strings resolved on first use, so a misspelt reference would
otherwise fail in the first request of that route (a 500), not at import. Every reference must resolve to an API
model; `route()` refuses a model class (which would have been imported at the route module's top, on the API's
cold start); a route's first request loads its own schema module and not the others'."""
from __future__ import annotations

import pytest
from chalice import Blueprint

from chalicelib.api.routing import OPERATIONS, Answer, model_class, route
from tests.probe import run_probe



def test_every_operation_names_models_that_exist():
    import app  # noqa: F401  (declares every route)
    from chalicelib.api.schemas.common import ApiModel
    named, wrong = 0, []
    for op in OPERATIONS:
        references = [op.body_ref, op.query_ref, op.response_ref, *(answer.model_ref for _, answer in op.also)]
        for reference in filter(None, references):
            named += 1
            try:
                model = model_class(reference)
            except (ImportError, AttributeError, TypeError) as exc:
                wrong.append((op.method, op.path, reference, repr(exc)))
                continue
            if not issubclass(model, ApiModel):
                wrong.append((op.method, op.path, reference, "not an ApiModel"))
        assert len(op.models()) == len(list(filter(None, references)))
    assert wrong == [] and named > 100


@pytest.mark.parametrize("reference", ["chalicelib.api.schemas.common:NoSuchModel", "chalicelib.api.schemaz:Health",
                                       "chalicelib.api.schemas.common:Field"])
def test_a_wrong_reference_fails_when_resolved(reference):
    with pytest.raises((ImportError, AttributeError, TypeError)):
        model_class(reference)


@pytest.mark.parametrize("reference", [object, "chalicelib.api.schemas.common.Health", "chalicelib:api:Health",
                                       ":Health", "chalicelib.api.schemas.common:"])
def test_route_refuses_anything_but_a_reference(reference):
    bp = Blueprint("probe")
    with pytest.raises(TypeError, match="reference"):
        route(bp, "/v1/probe", methods=["GET"], summary="probe", response=reference)
    with pytest.raises(TypeError, match="reference"):
        Answer("probe", reference)


def test_a_route_resolves_its_models_on_its_first_request_and_no_others():
    """`import app` loads no schema module; the Graph handshake (query model `GraphPushQuery`) loads its own."""
    probe = ("import json, sys, app\n"
             "from chalice.config import Config\n"
             "from chalice.local import LocalGateway\n"
             "schemas = lambda: sorted(m for m in sys.modules if m.startswith('chalicelib.api.schemas.'))\n"
             "before = schemas()\n"
             "gateway = LocalGateway(app.app, Config(chalice_stage='test'))\n"
             "event = gateway.event_converter.create_lambda_event('POST', '/v1/push/graph?validationToken=t%201',\n"
             "                                                    {'content-type': 'text/plain'}, b'')\n"
             "answer = app.app(event, None)\n"
             "print(json.dumps({'before': before, 'after': schemas(), 'status': answer['statusCode'],\n"
             "                  'body': answer['body']}))")
    found = run_probe(probe)
    assert found["before"] == []
    assert found["status"] == 200 and found["body"] == "t 1"
    assert found["after"] == ["chalicelib.api.schemas.common", "chalicelib.api.schemas.push"]
