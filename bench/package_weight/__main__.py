"""Package weight and the API's cold import time.

    python -m bench.package_weight [--runs 9] [--zip build/deployment.zip]

1. Builds the Lambda package exactly as `make package` does (`infra.package`: `chalice package`, the pruning of
   `prune_deployment`, then the bytecode of every module the functions import, `infra.package_imports`) and
   reports the zip Chalice wrote, the pruned zip with sources only (`--no-bytecode`), the shipped zip
   (third-party bytecode sourceless), the same with bytecode beside every source (`sourceless=False`), the
   what-if of leaving botocore and its dependencies to the Lambda runtime's copy (size only: same modules), its
   unzipped size (Lambda's limit is 250 MB unzipped, 50 MB zipped for a direct upload —
   https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html), the largest top-level entries,
   and the zip's bytes per installed distribution with the runtime requirements that pull each in
   (`attribution`): mailbridge's own share and the third-party floor under it.
   `--zip` measures an existing shipped zip instead of building one (no sources-only figures then).
2. Measures the cold import of `app.py` — what an API Lambda pays on a cold start before the first request —
   from the unzipped package, in fresh interpreters that see only the package and the standard library and
   cannot write bytecode (`python -I -S -B`; Lambda's /var/task is read-only): median wall and CPU time of
   `--runs`. Variants: as shipped; sources only; the third-party floor (the same non-chalicelib modules
   `import app` loads, in its order, with the collector paused as `app.py` does, so "app − floor" is what
   mailbridge's own code adds); `import app` plus the
   first DynamoDB client (what a request adds before its first AWS call: botocore reading its models from the
   package's pruned data); with the Gmail code imported eagerly (provider, consent, push verification:
   googleapiclient and google-auth, which the API loads only on the paths that use them); and with the Gmail
   and Graph providers imported eagerly (msal too).
   The Gmail weight (issue 9): googleapiclient's discovery documents as installed (what `chalice package`
   copies) and as shipped (`gmail.v1.json` only), and what the Gmail SDK (`GMAIL_SDK`) adds to the shipped zip.
   The same as shipped and for the floor in instructions executed (`valgrind --tool=cachegrind`), which do not
   move with the machine's load as times do.
3. Runs `bench.package_weight.first_request` (from the checkout, against moto): `import app` + the first and
   second `GET /v1/mailboxes`, so the schemas pydantic builds on first use (`defer_build`) are counted.

Results go to `bench/results/package_weight.json`; docs/benchmarks.md records them.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.package_weight.attribution import attribute  # noqa: E402
from bench.record import record  # noqa: E402
from infra import package as packaging  # noqa: E402
from infra.package_imports import add_bytecode  # noqa: E402

HEAVY = ("googleapiclient", "google.auth", "msal", "requests", "imapclient", "nh3", "pynamodb", "boto3", "pydantic")
# What the Lambda Python runtime ships in /var/runtime (boto3 and its dependencies): the what-if of not packaging
# them (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html, "SDK" column).
RUNTIME_SDK = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")
PROBE = """
import sys, time
sys.path.insert(0, sys.argv[1])
wall, cpu = time.perf_counter(), time.process_time()
{imports}
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
import json
third = [m for m, module in list(sys.modules.items()) if m.split(".")[0] not in ("app", "chalicelib")
         and (getattr(module, "__file__", None) or "").startswith(sys.argv[1] + "/")]   # in load order
print(json.dumps({{"wall": wall, "cpu": cpu, "modules": len(sys.modules), "third_party": third,
                  "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""
APP = "import app"
COLD_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AWS_DEFAULT_REGION": "us-east-1"}
# Paused collector as in `import app` (chalicelib.coldstart), so "app − floor" is mailbridge's own share.
FLOOR = """import gc, importlib
gc.disable()
for name in {modules!r}:
    try:
        importlib.import_module(name)
    except Exception:   # an alias another module installs (six.moves, ...) or needing its parent's setup
        pass
gc.freeze()
gc.enable()"""
FIRST_CLIENT = ("import app\nfrom chalicelib.models.tenant import Tenant\n"
                "Tenant._get_connection().connection.client")   # every request's first DynamoDB call makes it
EAGER = ("import app, chalicelib.providers.gmail.client, chalicelib.providers.graph.tokens, "
         "chalicelib.providers.graph.consent")
EAGER_GMAIL = ("import app, chalicelib.providers.gmail.kind, chalicelib.oauthflow.gmail\n"
               "from google.oauth2 import id_token")     # what the first push's verify() imports
# The Gmail API client and what only it needs (google-api-python-client's and google-auth's dependencies; nothing
# else in the package imports them): the package's top-level entries, with their dist-info.
GMAIL_SDK = ("googleapiclient", "google", "google_auth_httplib2", "httplib2", "uritemplate", "pyparsing",
             "pyasn1", "pyasn1_modules", "cachetools", "rsa", "google_api_python_client", "google_api_core",
             "google_auth")


def build(out: Path) -> dict:
    """Run the packaging steps into `out`: the sources-only zip and the shipped one (with bytecode)."""
    with tempfile.TemporaryDirectory(prefix="mailbridge-bench-package-") as tmp:
        workdir = Path(tmp) / "chalice"
        packaging.run_chalice_package("dev", workdir)
        before, sources_only = packaging.prune_deployment(workdir / "deployment.zip", out / "sources-only.zip")
        before_unzipped, _ = unzipped(workdir / "deployment.zip")
    shutil.copy(out / "sources-only.zip", out / "deployment.zip")
    add_bytecode(out / "deployment.zip")
    shutil.copy(out / "sources-only.zip", out / "beside.zip")
    add_bytecode(out / "beside.zip", sourceless=False)
    return {"chalice": before, "chalice_unzipped": before_unzipped, "sources_only": sources_only,
            "shipped": out / "deployment.zip", "sources_only_zip": out / "sources-only.zip",
            "beside": (out / "beside.zip").stat().st_size}


def without_runtime_sdk(path: Path) -> int:
    """Zipped bytes of `path` without the packages the Lambda runtime provides (`RUNTIME_SDK`, with dist-info)."""
    with zipfile.ZipFile(path) as archive:
        return sum(info.compress_size + 30 + len(info.filename) for info in archive.infolist()
                   if info.filename.split("/", 1)[0].split("-", 1)[0].removesuffix(".py") not in RUNTIME_SDK)


def gmail_weight(shipped: Path) -> dict:
    """Discovery documents installed vs shipped, and the zipped bytes of `GMAIL_SDK` in `shipped`."""
    client = Path(importlib.util.find_spec("googleapiclient").origin).parent
    installed = sorted((client / "discovery_cache" / "documents").glob("*.json"))
    deflated = sum(len(zlib.compress(path.read_bytes(), 9)) for path in installed)
    with zipfile.ZipFile(shipped) as archive:
        infos = archive.infolist()
        documents = [info for info in infos if "/discovery_cache/documents/" in info.filename]
        sdk = sum(info.compress_size + 30 + len(info.filename) for info in infos
                  if info.filename.split("/", 1)[0].split("-", 1)[0].removesuffix(".py").removesuffix(".pyc")
                  in GMAIL_SDK)
    mb = 1024 * 1024
    return {"discovery_documents_installed": len(installed),
            "discovery_documents_installed_mb": round(sum(p.stat().st_size for p in installed) / mb, 1),
            "discovery_documents_installed_deflated_mb": round(deflated / mb, 1),
            "discovery_documents_shipped": [info.filename.rsplit("/", 1)[1] for info in documents],
            "discovery_documents_shipped_kb": round(sum(info.file_size for info in documents) / 1024, 1),
            "gmail_sdk_zip_mb": round(sdk / mb, 2),
            "shipped_zip_without_gmail_sdk_mb": round((shipped.stat().st_size - sdk) / mb, 1)}


def unzipped(path: Path) -> tuple[int, list[tuple[str, int]]]:
    sizes: dict[str, int] = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            top = info.filename.split("/", 1)[0]
            sizes[top] = sizes.get(top, 0) + info.file_size
    return sum(sizes.values()), sorted(sizes.items(), key=lambda item: -item[1])[:10]


def extract(archive: Path, into: Path) -> Path:
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(into)
    return into


def cold_import(package_dir: Path, imports: str, runs: int) -> dict:
    walls, cpus, last = [], [], {}
    for _ in range(runs):
        output = subprocess.run([sys.executable, "-I", "-S", "-B", "-c",
                                 PROBE.format(imports=imports, heavy=HEAVY), str(package_dir)],
                                cwd=package_dir, env=COLD_ENV, check=True, capture_output=True, text=True).stdout
        last = json.loads(output.strip().splitlines()[-1])
        walls.append(last["wall"])
        cpus.append(last["cpu"])
    return {"median_s": round(statistics.median(walls), 3), "min_s": round(min(walls), 3),
            "cpu_median_s": round(statistics.median(cpus), 3), "modules": last["modules"],
            "heavy_loaded": last["heavy"], "third_party_modules": len(last["third_party"]),
            "_third_party": last["third_party"]}


def instructions(package_dir: Path, imports: str) -> int:
    """Instructions the interpreter executes for `imports` from the package, bare interpreter start-up and exit
    subtracted (`valgrind --tool=cachegrind --cache-sim=no`, "I refs": https://valgrind.org/docs/manual/
    cg-manual.html) — unlike a time, the same on a busy and a quiet machine, so it compares runs across windows."""
    def count(code: str) -> int:
        output = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                                 sys.executable, "-I", "-S", "-B", "-c", code, str(package_dir)], cwd=package_dir,
                                env=COLD_ENV, check=True, capture_output=True, text=True).stderr
        refs = re.search(r"I\s+refs:\s+([\d,]+)", output)
        if refs is None:
            raise RuntimeError(f"cachegrind printed no instruction count: {output[-500:]}")
        return int(refs.group(1).replace(",", ""))
    return count(PROBE.format(imports=imports, heavy=HEAVY)) - count(PROBE.format(imports="pass", heavy=HEAVY))


def first_request(runs: int) -> dict:
    """Median of `runs` probes, after one untimed probe that writes the bytecode (into a temporary
    `PYTHONPYCACHEPREFIX`, not the checkout): as in the package, no run compiles sources."""
    samples = []
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory(prefix="mailbridge-bench-pycache-") as cache:
        env["PYTHONPYCACHEPREFIX"] = cache
        for run in range(runs + 1):
            output = subprocess.run([sys.executable, "-m", "bench.package_weight.first_request"], cwd=ROOT,
                                    env=env, check=True, capture_output=True, text=True).stdout
            if run:
                samples.append(json.loads(output.strip().splitlines()[-1]))
    return {key: round(statistics.median(s[key] for s in samples), 3)
            for key in ("import_s", "first_request_s", "second_request_s", "import_and_first_s", "import_cpu_s",
                        "first_request_cpu_s", "import_and_first_cpu_s")}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.package_weight")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--zip", type=Path, default=None, help="measure this shipped zip instead of building")
    args = parser.parse_args(argv)
    mb = 1024 * 1024
    result: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
                    "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "load_average": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="mailbridge-bench-out-") as tmp:
        out = Path(tmp)
        variants: dict[str, tuple[Path, str]] = {}
        if args.zip:
            shipped = args.zip
            result["package"] = {"shipped_zip_mb": round(shipped.stat().st_size / mb, 1)}
        else:
            built = build(out)
            shipped = built["shipped"]
            result["package"] = {"chalice_zip_mb": round(built["chalice"] / mb, 1),
                                 "chalice_unzipped_mb": round(built["chalice_unzipped"] / mb, 1),
                                 "sources_only_zip_mb": round(built["sources_only"] / mb, 1),
                                 "sources_only_unzipped_mb": round(unzipped(built["sources_only_zip"])[0] / mb, 1),
                                 "bytecode_beside_sources_zip_mb": round(built["beside"] / mb, 1),
                                 "shipped_zip_mb": round(shipped.stat().st_size / mb, 1)}
        result["package"]["shipped_zip_bytes"] = shipped.stat().st_size
        result["package"]["what_if_runtime_sdk_zip_mb"] = round(without_runtime_sdk(shipped) / mb, 1)
        total, largest = unzipped(shipped)
        result["package"]["unzipped_mb"] = round(total / mb, 1)
        result["package"]["largest"] = {name: round(size / mb, 1) for name, size in largest}
        result["package"]["gmail"] = gmail_weight(shipped)
        result["package"]["attribution"] = attribute(shipped, ROOT / "requirements.txt")
        for name, figure in result["package"].items():
            if name != "attribution":
                print(f"package {name}: {figure}")
        shares = result["package"]["attribution"]
        print(f"package zip by owner (MB): mailbridge's own {shares['own_zip_mb']}, third-party "
              f"{shares['third_party_zip_mb']} (the floor without any of mailbridge's code)")
        for name, share in list(shares["distributions"].items())[:12]:
            print(f"  {name}: {share['zip_mb']} MB, required by {', '.join(share['required_by']) or '-'}")

        package_dir = extract(shipped, out / "shipped")
        floor = cold_import(package_dir, APP, 1)["_third_party"]
        variants["as shipped (import app)"] = (package_dir, APP)
        if not args.zip:
            variants["sources only, --no-bytecode (import app)"] = (
                extract(built["sources_only_zip"], out / "sources-only"), APP)
        variants["third-party floor (the modules import app loads, without chalicelib's)"] = (
            package_dir, FLOOR.format(modules=floor))
        variants["import app + the first DynamoDB client (botocore's models and endpoint table)"] = (
            package_dir, FIRST_CLIENT)
        variants["eager Gmail (import app + Gmail provider, consent and push verification)"] = (
            package_dir, EAGER_GMAIL)
        variants["eager providers (import app + Gmail and Graph providers)"] = (package_dir, EAGER)
        result["cold_import"] = {}
        result["third_party_modules_of_import_app"] = len(floor)
        for label, (directory, imports) in variants.items():
            figures = cold_import(directory, imports, args.runs)
            del figures["_third_party"]
            result["cold_import"][label] = figures
            print(f"cold import, {label}: median {figures['median_s']} s (min {figures['min_s']} s, "
                  f"CPU {figures['cpu_median_s']} s), {figures['modules']} modules, "
                  f"heavy: {', '.join(figures['heavy_loaded'])}")
        shipped_app, floor_imports = variants["as shipped (import app)"], FLOOR.format(modules=floor)
        result["instructions_m"] = {"import app": round(instructions(*shipped_app) / 1e6),
                                    "third-party floor": round(instructions(package_dir, floor_imports) / 1e6)}
        print(f"instructions executed (cachegrind, millions; load-independent): {result['instructions_m']}")
    result["first_request"] = first_request(max(1, min(args.runs, 5)))
    print(f"checkout + moto, import app then GET /v1/mailboxes: {result['first_request']}")
    record("package_weight", result)
    return result


if __name__ == "__main__":
    main()
