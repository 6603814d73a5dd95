"""The API's cold start must not load msal (weight: the Graph provider loads it when an outlook mailbox is built)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_app_does_not_load_msal():
    """Guards against: every API Lambda paying msal's import time because a module imports it eagerly."""
    code = ("import sys; import app; import chalicelib.providers.kinds, chalicelib.push.graph; "
            "print(sorted(m for m in sys.modules if m == 'msal' or m.startswith('msal.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "MAILBRIDGE_STAGE": "test", "AWS_DEFAULT_REGION": "us-east-1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
