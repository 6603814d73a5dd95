"""Package weight and the API's cold import time.

    python -m bench.package_weight [--runs 9] [--zip build/deployment.zip]

1. Builds the Lambda package exactly as `make package` does (`infra.package`: `chalice package`, then the
   googleapiclient discovery documents other than Gmail's are dropped) and reports the zip Chalice wrote
   (before pruning), the shipped zip, its unzipped size (Lambda's limit is 250 MB unzipped, 50 MB zipped for a
   direct upload — https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html) and the largest
   top-level entries. `--zip` measures an existing shipped zip instead of building one.
2. Measures the cold import of `app.py` — what an API Lambda pays on a cold start before the first request —
   in fresh interpreters (median of `--runs`), as shipped (googleapiclient and msal are imported only by the
   Gmail and Graph providers, on the worker paths that use them) and as it would be if the providers were
   imported eagerly, and lists which heavy modules each variant loads.

Results go to `bench/results/package_weight.json`; docs/benchmarks.md records them.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.record import record  # noqa: E402
from infra import package as packaging  # noqa: E402

HEAVY = ("googleapiclient", "google.auth", "msal", "imapclient", "nh3", "pynamodb", "boto3", "pydantic")
PROBE = """
import sys, time
start = time.perf_counter()
import app
{extra}
elapsed = time.perf_counter() - start
import json
print(json.dumps({{"seconds": elapsed, "modules": len(sys.modules),
                  "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""
VARIANTS = {
    "as shipped (import app)": "",
    "eager providers (import app + Gmail and Graph providers)":
        "import chalicelib.providers.gmail.client, chalicelib.providers.graph.tokens, "
        "chalicelib.providers.graph.consent",
}


def build(out: Path) -> tuple[int, int, int, Path]:
    """Run the packaging steps; returns (chalice zip bytes, its unzipped bytes, shipped zip bytes, shipped zip)."""
    with tempfile.TemporaryDirectory(prefix="mailbridge-bench-package-") as tmp:
        workdir = Path(tmp) / "chalice"
        packaging.run_chalice_package("dev", workdir)
        before, after = packaging.prune_deployment(workdir / "deployment.zip", out / "deployment.zip")
        before_unzipped, _ = unzipped(workdir / "deployment.zip")
    return before, before_unzipped, after, out / "deployment.zip"


def unzipped(path: Path) -> tuple[int, list[tuple[str, int]]]:
    sizes: dict[str, int] = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            top = info.filename.split("/", 1)[0]
            sizes[top] = sizes.get(top, 0) + info.file_size
    return sum(sizes.values()), sorted(sizes.items(), key=lambda item: -item[1])[:10]


def cold_import(extra: str, runs: int) -> dict:
    samples, last = [], {}
    for _ in range(runs):
        output = subprocess.run([sys.executable, "-c", PROBE.format(extra=extra, heavy=HEAVY)], cwd=ROOT,
                                check=True, capture_output=True, text=True).stdout
        last = json.loads(output.strip().splitlines()[-1])
        samples.append(last["seconds"])
    return {"median_s": round(statistics.median(samples), 3), "min_s": round(min(samples), 3),
            "modules": last["modules"], "heavy_loaded": last["heavy"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.package_weight")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--zip", type=Path, default=None, help="measure this shipped zip instead of building")
    args = parser.parse_args(argv)
    mb = 1024 * 1024
    result: dict = {"machine": f"{platform.machine()}, {platform.python_version()}",
                    "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    with tempfile.TemporaryDirectory(prefix="mailbridge-bench-out-") as out:
        if args.zip:
            shipped = args.zip
            result["package"] = {"shipped_zip_mb": round(shipped.stat().st_size / mb, 1)}
        else:
            before, before_unzipped, after, shipped = build(Path(out))
            result["package"] = {"chalice_zip_mb": round(before / mb, 1),
                                 "chalice_unzipped_mb": round(before_unzipped / mb, 1),
                                 "shipped_zip_mb": round(after / mb, 1)}
        total, largest = unzipped(shipped)
        result["package"]["unzipped_mb"] = round(total / mb, 1)
        result["package"]["largest"] = {name: round(size / mb, 1) for name, size in largest}
    for name, package in result["package"].items():
        print(f"package {name}: {package}")
    result["cold_import"] = {}
    for label, extra in VARIANTS.items():
        figures = cold_import(extra, args.runs)
        result["cold_import"][label] = figures
        print(f"cold import, {label}: median {figures['median_s']} s (min {figures['min_s']} s), "
              f"{figures['modules']} modules, heavy: {', '.join(figures['heavy_loaded'])}")
    record("package_weight", result)
    return result


if __name__ == "__main__":
    main()
