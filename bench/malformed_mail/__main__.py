"""`python -m bench.malformed_mail`: the long run of the malformed-mail promise (issue "Proof", item 8).

    python -m bench.malformed_mail [--mutations 5000] [--seed 1] [--shapes-only]

What a stored message goes through, per input: the ingest parse (`sync.mime.parse_message`: headers, snippet,
attachment list), the detail view's sanitizer (`security.sanitize.sanitize_html` on the HTML body) and the
attachment downloads (every listed attachment, as `sync.attachments.read_attachment` serves it: from its
byte span, else by a parse). Three sets of inputs:

1. every file of the corpora (`tests/corpora.py`: CPython's `test_email` data, the public flanker and
   mail-parser corpora, the project's fixtures);
2. `--mutations` seeded mutations of the small corpus files: up to 8 splices of hostile tokens
   (`tests.mailfactory.HOSTILE_TOKENS`) or random bytes, deletions and overwrites — the CI fuzz test does 80
   of these with hypothesis, this is the long run;
3. hostile shapes at full size (deep and wide multipart nesting, 20,000 parts, a 50 MB body of soft line
   breaks, hundreds of long recipients or attachment headers, HTML of 100,000 unclosed `<blockquote>`s and of
   200,000 nested `<div>`s, a 3 MB encoded-word Subject, 5,000 enclosed messages), each in a fresh process
   with a timeout, so a hang is seen as one and its peak resident memory is its own.

Per input: crash = an exception from any step (the store would not hold the message); over budget = ingest +
detail view, or one download (a request of its own), slower than `MESSAGE_BUDGET_SECONDS` (corpus and mutated
mail) or `SHAPE_BUDGET_SECONDS` / `SHAPE_BUDGET_MB` (hostile shapes) — small shares of the worker's 300 s and
the API's 29 s Lambda timeouts. Printed, and written to
bench/results/malformed_mail.json. A benchmark: nothing is asserted (tests/unit/test_mime_*.py guard the
same promises with smaller inputs in CI).
"""
from __future__ import annotations

import argparse
import datetime as dt
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.record import record  # noqa: E402
from bench.stats import percentile  # noqa: E402
from chalicelib.security.sanitize import sanitize_html  # noqa: E402
from chalicelib.sync.attachments import span_content  # noqa: E402
from chalicelib.sync.mime import attachment_content, parse_message  # noqa: E402
from tests.corpora import corpus_files, label  # noqa: E402
from tests.mailfactory import HOSTILE_TOKENS  # noqa: E402

MESSAGE_BUDGET_SECONDS = 5.0
SHAPE_BUDGET_SECONDS = 10.0
SHAPE_BUDGET_MB = 1024
SEED_MAX_BYTES = 64 * 1024


def store_and_view(raw: bytes) -> float:
    """What ingest and the detail view do with one raw message, then each attachment download as
    `sync.attachments.read_attachment` serves it (from its byte span, else by a parse). Returns the slowest
    single download's seconds (each download is a request of its own)."""
    parsed = parse_message(raw)
    if parsed.html:
        sanitize_html(parsed.html)
    slowest = 0.0
    for item in parsed.attachments:
        started = time.perf_counter()
        span_content(item, lambda start, end: raw[start:end]) or attachment_content(raw, item["index"])
        slowest = max(slowest, time.perf_counter() - started)
    return slowest


def timed(raw: bytes) -> tuple[float, float, str | None]:
    """(seconds of ingest + detail view, seconds of the slowest download, crash or None)."""
    started = time.perf_counter()
    try:
        slowest = store_and_view(raw)
    except Exception as exc:  # noqa: BLE001 - a crash is the figure being measured
        return time.perf_counter() - started, 0.0, f"{type(exc).__name__}: {exc}"[:200]
    return time.perf_counter() - started - slowest, slowest, None


def mutate(raw: bytes, rng: random.Random) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 8)):
        at = rng.randint(0, len(data))
        chunk = rng.choice(HOSTILE_TOKENS) if rng.random() < 0.7 else rng.randbytes(rng.randint(1, 12))
        action = rng.choice(("insert", "delete", "replace"))
        if action == "insert":
            data[at:at] = chunk
        elif action == "delete":
            del data[at:at + rng.randint(1, 64)]
        else:
            data[at:at + len(chunk)] = chunk
    return bytes(data)


def _percentiles(values: list[float]) -> dict:
    return {"p50_ms": round(1000 * statistics.median(values), 2), "max_ms": round(1000 * max(values), 2),
            "p99_ms": round(1000 * percentile(values, 0.99), 2)} if values else {}


def summarize(times: list[tuple[float, float]], crashes: list[str], budget: float) -> dict:
    return {
        "inputs": len(times), "crashes": len(crashes), "crash_samples": crashes[:5],
        "over_budget": sum(1 for view, download in times if max(view, download) > budget), "budget_seconds": budget,
        "ingest_and_view": _percentiles([view for view, _ in times]),
        "slowest_download": _percentiles([download for _, download in times]),
    }


def run_corpus() -> tuple[dict, list[bytes]]:
    times, crashes, seeds = [], [], []
    for path in corpus_files():
        raw = path.read_bytes()
        view, download, crash = timed(raw)
        times.append((view, download))
        if crash:
            crashes.append(f"{label(path)}: {crash}")
        if len(raw) <= SEED_MAX_BYTES:
            seeds.append(raw)
    return summarize(times, crashes, MESSAGE_BUDGET_SECONDS), seeds


def run_mutations(seeds: list[bytes], count: int, seed: int) -> dict:
    rng = random.Random(seed)
    times, crashes = [], []
    for n in range(count):
        raw = mutate(rng.choice(seeds), rng)
        view, download, crash = timed(raw)
        times.append((view, download))
        if crash:
            crashes.append(f"mutation #{n} (seed {seed}): {crash}")
    return summarize(times, crashes, MESSAGE_BUDGET_SECONDS)


# Each shape is an expression building the raw bytes, evaluated in a fresh interpreter.
SHAPES = {
    "multipart nested 3,000 deep": (
        "b'From: a@example.com\\r\\n' + b''.join(b'Content-Type: multipart/mixed; boundary=b%d\\r\\n\\r\\n--b%d\\r\\n'"
        " % (i, i) for i in range(3000)) + b'Content-Type: text/plain\\r\\n\\r\\nleaf\\r\\n'"),
    "12,000 parts nested 1,000 deep": (
        "b'From: a@example.com\\r\\n' + b''.join(b'Content-Type: multipart/mixed; boundary=b%d\\r\\n\\r\\n--b%d\\r\\n'"
        " % (i, i) for i in range(1000)) + b'Content-Type: text/plain\\r\\n\\r\\nleaf\\r\\n' + b''.join("
        "b''.join(b'--b%d\\r\\nContent-Type: application/pdf\\r\\n\\r\\nsib\\r\\n' % i for _ in range(11))"
        " + b'--b%d--\\r\\n' % i for i in reversed(range(1000)))"),
    "20,000 sibling parts": (
        "b'From: a@example.com\\r\\nContent-Type: multipart/mixed; boundary=x\\r\\n\\r\\n' + b''.join("
        "b'--x\\r\\nContent-Type: application/pdf\\r\\n\\r\\n%d\\r\\n' % i for i in range(20000)) + b'--x--\\r\\n'"),
    "50 MB of quoted-printable soft line breaks": (
        "b'From: a@example.com\\r\\nContent-Type: text/plain\\r\\nContent-Transfer-Encoding: quoted-printable"
        "\\r\\n\\r\\n' + b'=\\n' * 25_000_000"),
    "200 recipients of 2 KB each, in To, Cc and Bcc": (
        "(lambda r: b'From: a@example.com\\r\\nTo: ' + r + b'\\r\\nCc: ' + r + b'\\r\\nBcc: ' + r + b'\\r\\n\\r\\nhi')"
        "(b', '.join(b'\"' + b'N' * 2000 + b'\" <r%d@example.com>' % i for i in range(200)))"),
    "200 attachments with 2 KB content types": (
        "b'From: a@example.com\\r\\nContent-Type: multipart/mixed; boundary=x\\r\\n\\r\\n' + b''.join("
        "b'--x\\r\\nContent-Type: application/x-' + b'y' * 2000 + b'\\r\\nContent-Disposition: attachment; "
        "filename=f%d.bin\\r\\n\\r\\ndata\\r\\n' % i for i in range(200)) + b'--x--\\r\\n'"),
    "HTML of 100,000 unclosed <blockquote>s": (
        "b'From: a@example.com\\r\\nContent-Type: text/html\\r\\n\\r\\n' + b'<blockquote>q ' * 100_000"),
    "HTML of 200,000 nested <div>s": (
        "b'From: a@example.com\\r\\nContent-Type: text/html\\r\\n\\r\\n' + b'<div>' * 200_000 + b'x'"),
    "a 3 MB Subject of encoded words": (
        "b'From: a@example.com\\r\\nSubject: ' + b'=?utf-8?q?ab?= ' * 200_000 + b'\\r\\n\\r\\nbody'"),
    "5,000 enclosed messages": (
        "b'From: a@example.com\\r\\n' + b'Content-Type: message/rfc822\\r\\n\\r\\n' * 5000 + b'hi'"),
}

_SHAPE_RUNNER = """
import resource, sys, time
sys.path.insert(0, {root!r})
from bench.malformed_mail.__main__ import store_and_view
raw = {expression}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
slowest_download = store_and_view(raw)
elapsed = time.perf_counter() - started - slowest_download
print(len(raw), elapsed, slowest_download, before // 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def run_shape(name: str, expression: str) -> dict:
    code = _SHAPE_RUNNER.format(root=str(ROOT), expression=expression)
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=SHAPE_BUDGET_SECONDS * 6, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"shape": name, "outcome": "hang", "seconds": None, "peak_mb": None}
    if done.returncode != 0:
        return {"shape": name, "outcome": "crash", "error": done.stderr.strip().splitlines()[-1][:200]}
    size, elapsed, slowest, before_mb, peak_mb = done.stdout.split()
    seconds, download, peak = float(elapsed), float(slowest), int(peak_mb)
    within = max(seconds, download) <= SHAPE_BUDGET_SECONDS and peak <= SHAPE_BUDGET_MB
    return {"shape": name, "outcome": "ok" if within else "over budget", "bytes": int(size),
            "seconds": round(seconds, 2), "slowest_download_seconds": round(download, 2), "peak_mb": peak,
            "input_built_mb": int(before_mb)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.malformed_mail", description=__doc__.splitlines()[0])
    parser.add_argument("--mutations", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shapes-only", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    result: dict = {"when": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                    "machine": f"{platform.machine()}, {platform.python_version()}",
                    "command": "python -m bench.malformed_mail " + " ".join(argv or sys.argv[1:])}
    if not args.shapes_only:
        started = time.perf_counter()
        result["corpus"], seeds = run_corpus()
        print(f"corpus: {result['corpus']}", flush=True)
        result["mutations"] = run_mutations(seeds, args.mutations, args.seed)
        result["mutations"]["seeds"] = len(seeds)
        print(f"mutations: {result['mutations']}", flush=True)
        result["corpus_and_mutations_seconds"] = round(time.perf_counter() - started, 1)
    result["shape_budget"] = {"seconds": SHAPE_BUDGET_SECONDS, "peak_mb": SHAPE_BUDGET_MB}
    result["shapes"] = []
    for name, expression in SHAPES.items():
        figures = run_shape(name, expression)
        result["shapes"].append(figures)
        print(f"{name:48} {figures}", flush=True)
    record("malformed_mail", result, args.out)
    return result


if __name__ == "__main__":
    main()
