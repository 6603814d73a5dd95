"""The handler module's import without cyclic garbage collection (`app.py` imports this module first).

Importing `app` creates ~70,000 long-lived objects (modules, classes, functions, pydantic and PynamoDB
metadata) and no garbage worth collecting, yet the allocations trigger ~170 collections, one of them a full
(generation 2) pass over everything loaded so far: ~0.1 s of the API's cold import on this machine
(docs/benchmarks.md). Importing this module turns the collector off; `app.py` calls `loaded()` at its end,
which moves everything imported into the permanent generation (`gc.freeze`, Python ≥ 3.7: later collections
never scan it again — the loaded code lives as long as the process anyway) and turns the collector back on.
https://docs.python.org/3/library/gc.html#gc.freeze
"""
from __future__ import annotations

import gc

_was_enabled = gc.isenabled()
gc.disable()


def loaded() -> None:
    """The handler's modules are imported: freeze what they created and collect cyclic garbage again."""
    gc.freeze()
    if _was_enabled:
        gc.enable()
