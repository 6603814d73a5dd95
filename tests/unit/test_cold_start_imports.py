"""Guards the API's cold start against pulling in the provider SDKs: googleapiclient (+ google-auth) and msal
are imported only by the Gmail and Graph providers, on the worker paths that use them."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = ("import sys, json, app; print(json.dumps(sorted(m for m in sys.modules "
         "if m.split('.')[0] in ('googleapiclient', 'msal', 'httplib2') or m.startswith('google.auth'))))")


def test_importing_the_app_loads_no_provider_sdk():
    output = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout
    assert json.loads(output.strip().splitlines()[-1]) == []


def test_the_provider_modules_do_load_them():
    """The probe above can see the SDKs when they are imported (so an empty list means something)."""
    probe = PROBE.replace("import sys, json, app;", "import sys, json, app, chalicelib.providers.gmail.client, "
                          "chalicelib.providers.graph.tokens;")
    output = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout
    loaded = json.loads(output.strip().splitlines()[-1])
    assert "googleapiclient" in loaded and "msal" in loaded
