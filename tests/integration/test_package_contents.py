"""Guards the shipped Lambda package (`make package`) against its pruning dropping a file a function needs,
against a stripped shared library that no longer works, and against shipping without the bytecode of what the
functions import. Everything runs in a fresh interpreter with only the unzipped package and the standard
library on `sys.path` (`-I -S -B`), as on Lambda."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import zipfile

import pytest

from infra.package import DROPPED_POWERTOOLS, package
from infra.package_imports import loaded_files, our_modules

pytestmark = pytest.mark.slow

# Each shared library the package ships, exercised after `strip --strip-unneeded`.
NATIVE_CHECKS = """
import json, sys
sys.path.insert(0, sys.argv[1])
done = []

import os
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
key, nonce = AESGCM.generate_key(bit_length=256), os.urandom(12)
assert AESGCM(key).decrypt(nonce, AESGCM(key).encrypt(nonce, b"secret", b"aad"), b"aad") == b"secret"
done.append("aes-gcm")

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
signature = private.sign(b"payload", padding.PKCS1v15(), hashes.SHA256())
private.public_key().verify(signature, b"payload", padding.PKCS1v15(), hashes.SHA256())   # raises if invalid
done.append("rsa-verify")

import nh3
assert nh3.clean('<p onclick="x()">hi<script>alert(1)</script></p>') == "<p>hi</p>"
done.append("nh3")

import pydantic
class Model(pydantic.BaseModel):
    n: int = pydantic.Field(ge=1)
assert Model.model_validate({"n": "3"}).n == 3
try:
    Model.model_validate({"n": 0})
    raise AssertionError("validated n=0")
except pydantic.ValidationError:
    done.append("pydantic")

import regex
assert regex.compile(r"(?i)inv\\w+", regex.VERSION0).search("An INVOICE", timeout=1).group() == "INVOICE"
done.append("regex")

import charset_normalizer
assert str(charset_normalizer.from_bytes("Grüße aus Köln".encode("cp1252")).best()) == "Grüße aus Köln"
done.append("charset_normalizer")

import warnings
warnings.simplefilter("error")        # a missing optional dependency would warn here
import httplib2
from googleapiclient import discovery
gmail = discovery.build("gmail", "v1", http=httplib2.Http(), static_discovery=True)
assert gmail.users().messages().list(userId="me").uri.startswith("https://gmail.googleapis.com/")
done.append("gmail-client")

from cffi import FFI
assert FFI().new("int *", 7)[0] == 7
done.append("cffi")

print(json.dumps(done))
"""


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    out = tmp_path_factory.mktemp("package")
    package("dev", out)
    root = out / "unzipped"
    with zipfile.ZipFile(out / "deployment.zip") as archive:
        archive.extractall(root)
        names = set(archive.namelist())
    return root, names


def test_every_function_module_imports_from_the_package_alone(shipped):
    root, _ = shipped
    try:
        loaded = loaded_files(root)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"importing the functions' code from the package failed:\n{exc.stderr}")
    assert "app.py" in loaded and "chalicelib/sync/worker.py" in loaded
    # the provider SDKs the Gmail and Graph paths load on first use are there too (sourceless bytecode)
    assert {"googleapiclient/discovery.pyc", "msal/application.pyc", "aws_lambda_powertools/logging/logger.pyc",
            "aws_lambda_powertools/utilities/batch/base.pyc", "imapclient/imapclient.pyc"} <= set(loaded)


def test_stripped_shared_libraries_still_work(shipped):
    root, names = shipped
    assert any(name.endswith("_rust.abi3.so") for name in names)
    result = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", NATIVE_CHECKS, str(root)], cwd=root,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [
        "aes-gcm", "rsa-verify", "nh3", "pydantic", "regex", "charset_normalizer", "gmail-client", "cffi"]


def test_protobuf_and_the_other_grpc_dependencies_are_not_shipped(shipped):
    """Guards against shipping protobuf, the common protos, proto-plus and OpenTelemetry again (google-api-core's
    gRPC dependencies, ~0.65 MB zipped) — googleapiclient never imports them."""
    _, names = shipped
    tops = {name.split("/", 1)[0] for name in names}
    assert not [top for top in tops if top.split("-", 1)[0] in
                ("proto", "proto_plus", "protobuf", "googleapis_common_protos", "opentelemetry",
                 "opentelemetry_api")], sorted(tops)
    assert not [name for name in names if name.startswith(("google/protobuf/", "google/_upb/", "google/api/"))]
    assert "google/api_core/client_options.pyc" in names or "google/api_core/client_options.py" in names


def test_unused_files_are_not_shipped(shipped):
    _, names = shipped
    assert not [n for n in names if n.endswith((".pyi", "/py.typed", ".dist-info/RECORD"))]
    assert not [n for n in names if n.startswith(DROPPED_POWERTOOLS)]
    assert not [n for n in names if "/tests/" in n and not n.startswith("chalicelib/")]


def test_every_module_the_functions_import_ships_its_bytecode(shipped):
    """Without it each cold start compiles every imported source again (Lambda's /var/task is read-only).
    Third-party modules ship sourceless (their `.pyc` where the `.py` was); mailbridge's own keep sources."""
    root, names = shipped
    loaded = [name for name in loaded_files(root, our_modules(root)) if name.endswith((".py", ".pyc"))]
    ours = [name for name in loaded if name == "app.py" or name.startswith("chalicelib/")]
    third_party = [name for name in loaded if name not in ours]
    assert "chalicelib/api/routing.py" in ours and "botocore/client.pyc" in third_party
    missing = [name for name in ours if not name.endswith(".py")
               or importlib.util.cache_from_source(name) not in names]
    assert not missing, missing[:10]
    with_source = [name for name in third_party if not name.endswith(".pyc") or name[:-1] in names]
    assert not with_source, with_source[:10]
    # unchecked hash-based pycs (PEP 552 flags = 0b01): used without a timestamp comparison
    with zipfile.ZipFile(root.parent / "deployment.zip") as archive:
        for pyc in (importlib.util.cache_from_source("app.py"), "botocore/client.pyc"):
            header = archive.read(pyc)[:8]
            assert header[:4] == importlib.util.MAGIC_NUMBER and int.from_bytes(header[4:8], "little") == 0b01


def test_the_clients_find_a_ca_bundle(shipped):
    """Guards against dropping botocore's and httplib2's own CA bundles without the certifi bundle they use."""
    root, names = shipped
    assert "botocore/cacert.pem" not in names and "certifi/cacert.pem" in names
    probe = ("import os, sys; sys.path.insert(0, sys.argv[1]); import botocore.httpsession, httplib2.certs; "
             "assert os.path.isfile(botocore.httpsession.where()) and os.path.isfile(httplib2.certs.where())")
    result = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", probe, str(root)], cwd=root,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
