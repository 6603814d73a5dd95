"""Guards the API's cold start against pulling in what no API request needs at import: the provider SDKs
(googleapiclient + google-auth, msal + requests) and the IMAP adapter load only when a provider of their kind is
built (`providers.kinds`) — the notifier's digest mail (`notify.digest_mail`, SMTP) too —, boto3 (with
s3transfer and multiprocessing) not at all: the clients are botocore's; the subsystems that only some routes
call load on a route's first use (`chalicelib.lazy`): the sync write path with MIME parsing (`email.policy`, the
reply parser, `regex`), erasure, the pairing engine and rules, outbox composition, webhook delivery and its
configuration, the mailbox service and provider kinds, `cryptography` (sealed secrets) and `nh3` (sanitizing);
and the request/response models (`api/schemas/*`), which a route names by reference and resolves on its first
request (`chalicelib.api.routing`)."""
from tests.probe import ROOT, run_probe

NOT_LOADED = ("googleapiclient", "google.auth", "httplib2", "msal", "requests", "charset_normalizer", "boto3",
              "s3transfer", "multiprocessing", "imapclient", "imaplib", "smtplib",
              # deferred to the routes that use them (chalicelib.lazy)
              "regex", "cryptography", "nh3", "email.policy", "mailparser_reply", "idna",
              "chalicelib.sync.store", "chalicelib.sync.mime", "chalicelib.sync.push", "chalicelib.erasure",
              "chalicelib.pairing.engine", "chalicelib.pairing.rules", "chalicelib.pairing.manual",
              "chalicelib.outbox.service", "chalicelib.outbox.compose", "chalicelib.notify.deliveries",
              "chalicelib.notify.webhook_config", "chalicelib.notify.transport", "chalicelib.mailboxes.service",
              "chalicelib.providers.kinds", "chalicelib.security.crypto", "chalicelib.security.sanitize",
              "chalicelib.oauthflow", "chalicelib.messages.views", "chalicelib.models.pairing",
              "chalicelib.models.notification", "chalicelib.models.outbox",
              # named by reference, resolved by a route's first request (chalicelib.api.routing)
              "chalicelib.api.schemas", "chalicelib.models.webhook", "chalicelib.models.privacy",
              # the OpenAPI document and the rendered reference, built by their routes' first request
              "chalicelib.api.openapi", "chalicelib.api.docs_page", "chalicelib.api.schema_examples")
PROBE = ("import sys, json, app; print(json.dumps(sorted(m for m in sys.modules "
         f"if m in {NOT_LOADED!r} or m.startswith(tuple(name + '.' for name in {NOT_LOADED!r})))))")


def test_importing_the_app_loads_none_of_the_listed_modules():
    assert run_probe(PROBE) == []


def test_the_provider_modules_do_load_them():
    """The probe above can see the SDKs when they are imported (so an empty list means something)."""
    probe = PROBE.replace("import sys, json, app;", "import sys, json, app, chalicelib.providers.gmail.client, "
                          "chalicelib.providers.graph.tokens, chalicelib.notify.notifier;")
    loaded = run_probe(probe)
    assert "googleapiclient" in loaded and "msal" in loaded and "requests" in loaded
    assert "imapclient" in loaded and "smtplib" in loaded


def test_every_deferred_module_imports_on_first_use():
    """Guards the lazy references of the modules `import app` loads (`chalicelib.lazy`) against naming a module
    that does not exist — it would fail in a request, not at import — and shows the listed modules do load once
    the references are used (so the empty list above means something)."""
    probe = ("import json, sys, app\n"
             "from chalicelib.api.schemas import outbox as outbox_schemas\n"
             "from chalicelib.lazy import LazyModule\n"
             "named = {}\n"
             "for module in [m for name, m in sys.modules.items() if name.split('.')[0] in ('app', 'chalicelib')]:\n"
             "    for value in list(vars(module).values()):\n"
             "        if isinstance(value, LazyModule):\n"
             "            named[value._lazy_name] = value.__name__\n"
             "outbox_schemas.compose.html_is_blank('<p></p>')\n"
             f"print(json.dumps({{'named': named, 'loaded': sorted(m for m in sys.modules if m in {NOT_LOADED!r})}}))")
    found = run_probe(probe)
    assert len(found["named"]) > 20 and all(name == real for name, real in found["named"].items())
    assert {"regex", "cryptography", "nh3", "email.policy", "chalicelib.sync.store", "chalicelib.outbox.compose",
            "chalicelib.erasure", "chalicelib.providers.kinds", "chalicelib.api.schemas", "chalicelib.api.openapi",
            "chalicelib.api.docs_page", "chalicelib.models.webhook", "chalicelib.models.privacy"
            } <= set(found["loaded"])


def test_importing_the_app_creates_no_api_model_and_the_schema_modules_build_none():
    """Guards the API's cold start against creating the ~120 request/response classes at import (routes name
    them by reference, `chalicelib.api.routing`), and against pydantic building each model's validator when its
    schema module loads: each derives from `ApiModel` (`defer_build=True`) and is built on its first use."""
    probe = ("import importlib, json, pkgutil, app, pydantic\n"
             "def subclasses(cls):\n"
             "    for sub in cls.__subclasses__():\n"
             "        yield sub\n"
             "        yield from subclasses(sub)\n"
             "def ours():\n"
             "    return {m for m in subclasses(pydantic.BaseModel) if m.__module__.startswith('chalicelib')}\n"
             "at_import = sorted(m.__qualname__ for m in ours())\n"
             "import chalicelib.api.schemas as package\n"
             "for info in pkgutil.iter_modules(package.__path__):\n"
             "    importlib.import_module(f'chalicelib.api.schemas.{info.name}')\n"
             "from chalicelib.api.schemas.common import ApiModel\n"
             "models = ours()\n"
             "print(json.dumps({'at_import': at_import, 'count': len(models), 'not_deferred': sorted(\n"
             "    m.__qualname__ for m in models if not issubclass(m, ApiModel)), 'built': sorted(m.__qualname__\n"
             "    for m in models if m.__pydantic_complete__)}))")
    found = run_probe(probe)
    assert found["at_import"] == []
    assert found["count"] > 100 and found["not_deferred"] == [] and found["built"] == []


def test_the_collector_runs_again_after_the_import_and_skips_the_loaded_modules():
    """Guards against `chalicelib.coldstart` leaving cyclic garbage collection off after `import app` (a leak in
    every function), and against losing the freeze that keeps later collections off the loaded modules."""
    probe = ("import gc, json, app; "
             "print(json.dumps({'enabled': gc.isenabled(), 'frozen': gc.get_freeze_count()}))")
    found = run_probe(probe)
    assert found["enabled"] is True and found["frozen"] > 10_000


def test_the_request_and_response_models_do_not_postpone_their_annotations():
    """Guards a route's first request (and the OpenAPI document) against pydantic compiling and evaluating
    every field's annotation string while a schema module's model classes are created (`api/schemas/common.py`:
    ~39 M instructions for the ~120 models, 3 % of the API's cold import when they were created at import)."""
    postponing = [path.name for path in sorted((ROOT / "chalicelib" / "api" / "schemas").glob("*.py"))
                  if "from __future__ import annotations" in path.read_text().splitlines()]
    assert postponing == []
