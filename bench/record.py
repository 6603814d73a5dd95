"""Where every benchmark keeps its latest figures: `bench/results/<name>.json` (docs/benchmarks.md quotes them)."""
from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def record(name: str, result: dict) -> Path:
    """Write `result` as `bench/results/<name>.json` and say where."""
    target = RESULTS / f"{name}.json"
    target.write_text(json.dumps(result, indent=2) + "\n")
    print(f"recorded in {target.relative_to(RESULTS.parent.parent)}")
    return target
