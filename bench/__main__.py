"""`python -m bench` (`make bench`): runs every benchmark package under bench/ that has a `__main__`, in turn."""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main() -> None:
    names = sorted(p.parent.name for p in HERE.glob("*/__main__.py"))
    for name in names:
        print(f"=== bench.{name} ===", flush=True)
        runpy.run_module(f"bench.{name}", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
