"""`make package`: one deployable CloudFormation template for a stage.

    python -m infra.package --stage dev --out build/

Runs `chalice package --merge-template infra/resources.yaml --stage <stage>` (Chalice's functions, API and
schedules merged with our tables, queues, bucket, key and alarms), then `infra.template_wiring` adds what
Chalice cannot (partial batch responses on SQS sources, env vars wired to the resources, IAM access) and
writes `<out>/template.yaml` next to `<out>/deployment.zip`: Chalice's zip pruned (`prune_deployment`) plus
the bytecode of every module the functions import (`infra.package_imports`; `--no-bytecode` leaves it out).
Deploy it with `aws cloudformation package` + `aws cloudformation deploy` (docs/operations.md).

Chalice imports `app.py` to read decorator arguments (the queue names of `on_sqs_message`), so the stage's
environment variables from `.chalice/config.json` are exported to the Chalice process first.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import yaml

from infra.package_imports import add_bytecode
from infra.template_wiring import wire_template

ROOT = Path(__file__).resolve().parent.parent
RESOURCES = ROOT / "infra" / "resources.yaml"
CHALICE_CONFIG = ROOT / ".chalice" / "config.json"


def stage_environment(stage: str) -> dict[str, str]:
    """The environment variables `.chalice/config.json` gives the stage (global ones, then the stage's)."""
    config = json.loads(CHALICE_CONFIG.read_text())
    if stage not in config["stages"]:
        raise SystemExit(f"unknown stage {stage!r}; .chalice/config.json has {sorted(config['stages'])}")
    env = dict(config.get("environment_variables", {}))
    env.update(config["stages"][stage].get("environment_variables", {}))
    return env


def run_chalice_package(stage: str, workdir: Path) -> Path:
    env = {**os.environ, **stage_environment(stage)}
    env.setdefault("AWS_DEFAULT_REGION", env.get("AWS_REGION", "us-east-1"))
    chalice = Path(sys.executable).parent / "chalice"
    command = [str(chalice) if chalice.exists() else "chalice", "package", "--stage", stage,
               "--merge-template", str(RESOURCES), "--template-format", "yaml", str(workdir)]
    subprocess.run(command, cwd=ROOT, env=env, check=True)
    return workdir / "sam.yaml"


DISCOVERY_DIR = "googleapiclient/discovery_cache/documents/"
KEPT_DISCOVERY = frozenset({"gmail.v1.json"})
BOTOCORE_DATA_DIR = "botocore/data/"
# The AWS services the functions call (chalicelib/aws.py clients and PynamoDB's DynamoDB); STS for role
# credentials. botocore loads a service's model from botocore/data/<service>/ only when a client for it is made.
KEPT_BOTOCORE_SERVICES = frozenset({"dynamodb", "s3", "sqs", "kms", "sts"})
# Powertools subpackages no function imports (chalicelib uses its Logger and the SQS batch utility; the one
# reference from the rest, shared.functions.pydantic_to_dict, runs only when a pydantic event is logged):
# event_handler alone is 2.2 MB (its own REST resolvers, OpenAPI models and a bundled Swagger UI).
# tests/integration/test_package_contents.py imports every function's code from the built package.
DROPPED_POWERTOOLS = tuple(f"aws_lambda_powertools/{sub}/" for sub in (
    "event_handler", "utilities/idempotency", "utilities/parameters", "utilities/feature_flags",
    "utilities/data_masking", "utilities/streaming", "utilities/kafka", "utilities/circuit_breaker",
    "utilities/auth_alpha", "utilities/validation"))
# Files the interpreter never reads: type stubs and markers (PEP 561), stale bytecode, a wheel's install
# record (pip's uninstall list; importlib.metadata reads METADATA, which stays).
DROPPED_SUFFIXES = (".pyi", "/py.typed", ".pyc", ".dist-info/RECORD")
# Data files nothing reads: botocore's and httplib2's own CA bundles (each uses certifi's, which ships, when
# certifi is importable: botocore.httpsession.where, httplib2.certs.where) and dateutil's zoneinfo tarball
# (only `dateutil.zoneinfo`'s fallback reads it; botocore uses dateutil.tz's tzutc/tzlocal).
DROPPED_FILES = frozenset({"botocore/cacert.pem", "httplib2/cacerts.txt",
                           "dateutil/zoneinfo/dateutil-zoneinfo.tar.gz"})
# google-api-core's gRPC and long-running-operation dependencies: protobuf (its `_upb` library included),
# googleapis-common-protos (google/api, rpc, type, longrunning, cloud, logging, gapic), proto-plus and
# opentelemetry-api. googleapiclient imports only google-api-core's `client_options`, `universe` and
# `version_header`, which import none of them (nor do google-auth, google-auth-httplib2 or msal), and
# google-api-core's dependency-version check skips a package it cannot find
# (`_python_package_support.get_dependency_version`). test_package_contents builds the Gmail client from the
# package alone.
DROPPED_PACKAGES = ("protobuf", "proto_plus", "googleapis_common_protos", "opentelemetry_api")
DROPPED_TOP_LEVEL = (
    "proto/", "opentelemetry/", *(f"{name}-" for name in DROPPED_PACKAGES),
    *(f"google/{sub}/" for sub in ("protobuf", "_upb", "api", "rpc", "type", "longrunning", "cloud", "logging",
                                   "gapic")))
ELF_MAGIC = b"\x7fELF"
DEFLATE_LEVEL = 9


def dropped(name: str) -> bool:
    """Whether a file of Chalice's zip stays out of the shipped package."""
    if name.endswith("/"):
        return False
    if name.endswith(DROPPED_SUFFIXES) or "__pycache__/" in name or "/tests/" in name:
        return True   # incl. a developer's stale chalicelib/__pycache__ (infra.package_imports adds fresh ones)
    if name.startswith(DROPPED_POWERTOOLS) or name.startswith(DROPPED_TOP_LEVEL) or name in DROPPED_FILES:
        return True
    if name.startswith(DISCOVERY_DIR):
        return name[len(DISCOVERY_DIR):] not in KEPT_DISCOVERY
    if name.startswith(BOTOCORE_DATA_DIR):
        service = name[len(BOTOCORE_DATA_DIR):].split("/", 1)
        return len(service) == 2 and service[0] not in KEPT_BOTOCORE_SERVICES   # top-level files stay
    return False


BOTOCORE_ENDPOINTS = "botocore/data/endpoints.json"


def pruned_endpoints(data: bytes) -> bytes:
    """botocore's endpoint table (`endpoints.json`: every partition's regions and, per service, its endpoints)
    with only the `KEPT_BOTOCORE_SERVICES`: the first client of every process parses it (~60 ms of CPU for
    its 1.2 MB here; ~40 KB remain). Partitions, regions and defaults stay as they are."""
    table = json.loads(data)
    for partition in table["partitions"]:
        partition["services"] = {name: service for name, service in partition["services"].items()
                                 if name in KEPT_BOTOCORE_SERVICES}
    return json.dumps(table, separators=(",", ":")).encode()


def stripped(data: bytes) -> bytes:
    """A shared library without its symbol table and debug sections (`strip --strip-unneeded`, GNU binutils):
    the dynamic symbols the loader and Python's import need stay, so the library loads and runs unchanged.
    The wheels ship them unstripped (cryptography's Rust extension: 14.3 MB → 11.5 MB; regex's 2.6 → 0.9 MB)."""
    if not data.startswith(ELF_MAGIC):
        return data
    if shutil.which("strip") is None:
        raise SystemExit("`strip` (GNU binutils) is missing: run `make bootstrap` or apt-get install binutils")
    with tempfile.TemporaryDirectory(prefix="mailbridge-strip-") as tmp:
        path = Path(tmp) / "lib.so"
        path.write_bytes(data)
        subprocess.run(["strip", "--strip-unneeded", str(path)], check=True)
        return path.read_bytes()


def prune_deployment(source: Path, target: Path) -> tuple[int, int]:
    """Copy the deployment zip without googleapiclient's bundled discovery documents (~110 MB, one per Google
    API) except Gmail's — the service is built with `static_discovery=True` from `gmail.v1.json` only —,
    without botocore's models of the ~440 AWS services the functions never call (~27 MB; the kept ones are
    `KEPT_BOTOCORE_SERVICES`; their entries alone in `endpoints.json`), without unused Powertools subpackages
    and files the interpreter never reads (`dropped`), with shared libraries stripped, at the highest deflate
    level. Returns (bytes before, after)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED,
                                                          compresslevel=DEFLATE_LEVEL) as zout:
        for info in zin.infolist():
            if dropped(info.filename):
                continue
            data = zin.read(info)
            if ".so" in info.filename.rsplit("/", 1)[-1]:
                data = stripped(data)
            elif info.filename == BOTOCORE_ENDPOINTS:
                data = pruned_endpoints(data)
            copy = zipfile.ZipInfo(info.filename, info.date_time)
            copy.external_attr = info.external_attr
            copy.compress_type = zipfile.ZIP_DEFLATED
            zout.writestr(copy, data, compresslevel=DEFLATE_LEVEL)
    return source.stat().st_size, target.stat().st_size


def package(stage: str, out: Path, bytecode: bool = True) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mailbridge-package-") as tmp:
        workdir = Path(tmp) / "chalice"
        sam_template = run_chalice_package(stage, workdir)
        template = wire_template(yaml.safe_load(sam_template.read_text()), stage)
        prune_deployment(workdir / "deployment.zip", out / "deployment.zip")
        if bytecode:
            add_bytecode(out / "deployment.zip")
    target = out / "template.yaml"
    target.write_text(yaml.safe_dump(template, sort_keys=False, width=120))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--out", type=Path, default=ROOT / "build")
    parser.add_argument("--no-bytecode", action="store_true",
                        help="ship sources only (smaller zip; each cold start compiles them: infra/package_imports.py)")
    args = parser.parse_args(argv)
    target = package(args.stage, args.out, bytecode=not args.no_bytecode)
    print(f"wrote {target} (+ deployment.zip); deploy: see docs/operations.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
