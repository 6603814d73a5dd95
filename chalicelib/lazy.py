"""Modules imported on first use: the one mechanism by which mailbridge defers an import.

Why: the API Lambda's cold start. `import app` loads every route module (`api/blueprints/*`) before the first
request; a route module that imported its services at its top made every cold start load whole subsystems that
only some routes call — the sync write path with MIME parsing (`email.policy`, the reply parser and `regex`),
erasure, the pairing engine, outbox composition, webhook delivery, the provider kinds, `cryptography`'s AES-GCM
and `nh3`: a quarter of the instructions `import app` executed (1,658 M → 1,259 M once deferred, valgrind;
docs/benchmarks.md, "Package weight and cold import"; docs/architecture.md, "Cold start"). A route module names
such a module instead of importing it:

    service = lazy_module("chalicelib.outbox.service")
    ...
    item = service.accept(...)          # the first attribute read imports chalicelib.outbox.service, once

and the provider registry names each kind's adapter, which loads with its SDK when a provider of that kind is
built (`lazy_callable("chalicelib.providers.imap.adapter:ImapProvider")`, `providers/kinds.py`; the consent
flows likewise, `oauthflow/flows.py`); a route declaration names its request/response models the same way
(`body="chalicelib.api.schemas.tenancy:CreateKey"`), which `api/routing.py` resolves with `resolve` on the
route's first request, and a route module builds a response model through a `lazy_module` of its schema
module, so `import app` creates none of the ~120 model classes. A few modules defer the same way a heavy
dependency only some of their callers need (the MIME parser in `messages/views.py`, cryptography in
`mailboxes/servers.py`, idna in `idn.py`; docs/architecture.md lists them).
`tests/unit/test_cold_start_imports.py` lists what `import app` must not load and checks that every lazy
reference names a module that exists; `tests/unit/test_routing_references.py` resolves every model reference.

How: `LazyModule` is a stand-in that runs an ordinary `importlib.import_module` on its first attribute read and
forwards every read, write and delete to the real module from then on. The Python documentation's recipe
"Implementing lazy imports" (`importlib.util.LazyLoader`,
https://docs.python.org/3/library/importlib.html#implementing-lazy-imports) was not taken: it puts a module
into `sys.modules` before the module has run, so `sys.modules` no longer tells what was loaded, and CPython
3.11's `_LazyModule.__getattribute__` switches the module's class back before executing it, so a second thread
reading an attribute meanwhile sees a half-executed module (scientific-python/lazy-loader#88) — the check
function builds providers from a thread pool (`sync/check.py`). An ordinary import runs the module under the
import system's per-module lock (a second thread asking for it waits until it has run), and binds it to its
parent package, exactly as an import statement does; an ImportError surfaces at the first use, naming the module.

Not a way around an import cycle: a lazy reference points the same way as the import it replaces (a route
module to a service, a registry to an adapter), and `tests/unit/test_one_engine.py` still forbids function-level
imports of `chalicelib` modules.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Callable


class LazyModule:
    """A module by name, imported on the first attribute read (or write, or delete) and then forwarded to."""

    __slots__ = ("_lazy_name", "_lazy_module")

    def __init__(self, name: str):
        object.__setattr__(self, "_lazy_name", name)
        object.__setattr__(self, "_lazy_module", None)

    def _load(self) -> ModuleType:
        module = self._lazy_module
        if module is None:
            module = importlib.import_module(self._lazy_name)   # the import lock: one thread runs it, others wait
            object.__setattr__(self, "_lazy_module", module)
        return module

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._load(), attribute)

    def __setattr__(self, attribute: str, value: Any) -> None:
        setattr(self._load(), attribute, value)

    def __delattr__(self, attribute: str) -> None:
        delattr(self._load(), attribute)

    def __dir__(self) -> list[str]:
        return dir(self._load())

    def __repr__(self) -> str:
        state = "loaded" if self._lazy_module is not None else "not loaded yet"
        return f"<lazy module {self._lazy_name!r} ({state})>"


def lazy_module(name: str) -> LazyModule:
    """The module `name` (absolute, e.g. "chalicelib.sync.store"), imported on its first attribute access."""
    return LazyModule(name)


def resolve(target: str) -> Any:
    """The attribute a `"package.module:attribute"` string names, its module imported now if it was not yet."""
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def lazy_callable(target: str) -> Callable[..., Any]:
    """A function standing for the callable `"package.module:attribute"` names (a function or a class); the
    module is imported on the first call."""
    module_name, _, attribute = target.partition(":")
    module = lazy_module(module_name)

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(module, attribute)(*args, **kwargs)

    call.__qualname__ = call.__name__ = attribute
    return call
