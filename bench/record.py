"""Where every benchmark keeps its latest figures: `bench/results/<name>.json` (docs/benchmarks.md quotes them)."""
from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def record(name: str, result: dict, path: str | Path | None = None) -> Path:
    """Write `result` as `bench/results/<name>.json` (or `path`, a bench's `--out`) and say where."""
    target = Path(path) if path else RESULTS / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"recorded in {target}")
    return target
