"""Guards the Google endpoint settings (real defaults; http:// only in the local/test stages) and the API's cold
start staying free of googleapiclient."""
from __future__ import annotations

import subprocess
import sys

import pytest

from chalicelib.config import load_settings
from tests.conftest import ROOT


DEPLOYED = {"MAILBRIDGE_PUBLIC_BASE_URL": "https://api.example.test/api"}   # required outside local stages


def test_defaults_are_the_real_google_endpoints():
    settings = load_settings({"MAILBRIDGE_STAGE": "prod"} | DEPLOYED)
    assert settings.google_auth_uri == "https://accounts.google.com/o/oauth2/v2/auth"
    assert settings.google_token_uri == "https://oauth2.googleapis.com/token"
    assert settings.gmail_api_root == "https://gmail.googleapis.com/"
    assert settings.google_certs_uri == "https://www.googleapis.com/oauth2/v1/certs"


def test_http_endpoints_only_in_local_and_test_stages():
    local = load_settings({"MAILBRIDGE_STAGE": "local", "MAILBRIDGE_GMAIL_API_ROOT": "http://127.0.0.1:9100"})
    assert local.gmail_api_root == "http://127.0.0.1:9100/"
    for name in ("MAILBRIDGE_GOOGLE_AUTH_URI", "MAILBRIDGE_GOOGLE_TOKEN_URI", "MAILBRIDGE_GMAIL_API_ROOT",
                 "MAILBRIDGE_GOOGLE_CERTS_URI"):
        with pytest.raises(ValueError, match=name):
            load_settings({"MAILBRIDGE_STAGE": "prod", name: "http://127.0.0.1:9100/"} | DEPLOYED)
        with pytest.raises(ValueError, match=name):
            load_settings({"MAILBRIDGE_STAGE": "dev", name: "file:///etc/passwd"} | DEPLOYED)


def test_importing_the_app_does_not_load_googleapiclient():
    code = ("import sys, app; from chalicelib.providers import kinds; "
            "print(sorted(m for m in sys.modules if m.startswith(('googleapiclient', 'google_auth_httplib2', "
            "'httplib2', 'google.auth'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert "gmail" in subprocess.run([sys.executable, "-c", "from chalicelib.providers import kinds; "
                                      "print(kinds.registered_kinds())"], cwd=ROOT, capture_output=True,
                                     text=True, check=True).stdout
