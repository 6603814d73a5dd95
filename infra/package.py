"""`make package`: one deployable CloudFormation template for a stage.

    python -m infra.package --stage dev --out build/

Runs `chalice package --merge-template infra/resources.yaml --stage <stage>` (Chalice's functions, API and
schedules merged with our tables, queues, bucket, key and alarms), then `infra.template_wiring` adds what
Chalice cannot (partial batch responses on SQS sources, env vars wired to the resources, IAM access) and
writes `<out>/template.yaml` next to `<out>/deployment.zip`. Deploy it with
`aws cloudformation package` + `aws cloudformation deploy` (docs/operations.md).

Chalice imports `app.py` to read decorator arguments (the queue names of `on_sqs_message`), so the stage's
environment variables from `.chalice/config.json` are exported to the Chalice process first.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import yaml

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


def dropped(name: str) -> bool:
    """Whether a file of Chalice's zip stays out of the shipped package."""
    if name.endswith("/"):
        return False
    if name.startswith(DISCOVERY_DIR):
        return name[len(DISCOVERY_DIR):] not in KEPT_DISCOVERY
    if name.startswith(BOTOCORE_DATA_DIR):
        service = name[len(BOTOCORE_DATA_DIR):].split("/", 1)
        return len(service) == 2 and service[0] not in KEPT_BOTOCORE_SERVICES   # top-level files stay
    return False


def prune_deployment(source: Path, target: Path) -> tuple[int, int]:
    """Copy the deployment zip without googleapiclient's bundled discovery documents (~110 MB, one per Google
    API) except Gmail's — the service is built with `static_discovery=True` from `gmail.v1.json` only — and
    without botocore's models of the ~440 AWS services the functions never call (~27 MB; the kept ones are
    `KEPT_BOTOCORE_SERVICES`). Returns (bytes before, bytes after)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if not dropped(info.filename):
                zout.writestr(info, zin.read(info))
    return source.stat().st_size, target.stat().st_size


def package(stage: str, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mailbridge-package-") as tmp:
        workdir = Path(tmp) / "chalice"
        sam_template = run_chalice_package(stage, workdir)
        template = wire_template(yaml.safe_load(sam_template.read_text()), stage)
        prune_deployment(workdir / "deployment.zip", out / "deployment.zip")
    target = out / "template.yaml"
    target.write_text(yaml.safe_dump(template, sort_keys=False, width=120))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--out", type=Path, default=ROOT / "build")
    args = parser.parse_args(argv)
    target = package(args.stage, args.out)
    print(f"wrote {target} (+ deployment.zip); deploy: see docs/operations.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
