"""Guards `chalicelib.lazy`, the one deferred-import mechanism: a lazy module imports nothing until used, then is
the real module for reads, writes and deletes (a monkeypatch through a route module's reference reaches the
module the service code reads), imports once even when threads touch it first together, and a misspelt name
fails at the first use with the module's name."""
from __future__ import annotations

import sys
import threading

import pytest

from chalicelib.lazy import lazy_callable, lazy_module, resolve


@pytest.fixture
def slow_module(tmp_path, monkeypatch):
    """A module of our own on sys.path that counts its executions and takes a moment to run."""
    (tmp_path / "lazy_probe_module.py").write_text(
        "import time\nimport builtins\n"
        "builtins.lazy_probe_runs = getattr(builtins, 'lazy_probe_runs', 0) + 1\n"
        "time.sleep(0.05)\n"
        "VALUE = 42\n"
        "def double(x):\n    return 2 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import builtins
    builtins.lazy_probe_runs = 0
    yield "lazy_probe_module"
    sys.modules.pop("lazy_probe_module", None)
    del builtins.lazy_probe_runs


def test_nothing_is_imported_until_first_use_then_reads_writes_and_deletes_reach_the_module(slow_module):
    module = lazy_module(slow_module)
    assert slow_module not in sys.modules and "not loaded yet" in repr(module)
    assert module.VALUE == 42 and module.double(4) == 8
    real = sys.modules[slow_module]
    module.VALUE = 7
    assert real.VALUE == 7
    del module.VALUE
    assert not hasattr(real, "VALUE")


def test_threads_touching_it_first_together_import_it_once_and_all_see_it_whole(slow_module):
    import builtins
    module, seen = lazy_module(slow_module), []
    threads = [threading.Thread(target=lambda: seen.append(module.VALUE)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [42] * 8 and builtins.lazy_probe_runs == 1


def test_targets_name_a_module_and_attribute(slow_module):
    assert resolve(f"{slow_module}:VALUE") == 42
    double = lazy_callable(f"{slow_module}:double")
    assert double.__name__ == "double" and double(21) == 42


def test_a_misspelt_module_fails_at_first_use_naming_it():
    module = lazy_module("chalicelib.no_such_module")
    with pytest.raises(ModuleNotFoundError, match="chalicelib.no_such_module"):
        module.anything
