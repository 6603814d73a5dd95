"""Run Python code in a fresh interpreter from the project's root and read the JSON its last output line prints:
what a module import loads (or creates) can only be seen in a process that has not imported it yet."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_probe(code: str) -> Any:
    output = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout
    return json.loads(output.strip().splitlines()[-1])
