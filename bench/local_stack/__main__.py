"""`python -m bench.local_stack`: the local stack (`make run`) importing a real mailbox while it is listed.

    python -m bench.local_stack [--messages 5000] [--seed 1] [--page 100] [--timeout SECONDS] [--mbsync-rounds 3]

1. Builds the `bench/imap_ingest` corpus (default 5,000 messages, dated within the last 6 days; cached under
   the temp dir) and loads it into a Dovecot started here (`devservers/dovecot.py`) with an SMTP server beside
   it (saving a mailbox verifies both logins), then pulls the account with `mbsync` (`--mbsync-rounds`, default
   3; the peer of issue #8 item 9, `bench/imap_ingest`) so the import's time is a ratio measured in the same run.
2. Starts `python -m infra.local_stack` as a subprocess on free ports with a temp data dir (with `--directory`
   loads one company per corpus domain into the directory, so imported messages are paired and listed pages
   carry links), connects the IMAP account through the API (`POST /v1/mailboxes`, as `make demo-mail` prints
   it) and asks for a refresh.
3. While the import runs: lists the newest page (`GET /v1/mailboxes/{id}/messages?limit=100`) about once a
   second — latency and DynamoDB calls per list (the stack's `X-Local-Aws-Calls` response header) — and samples
   the resident memory of the stack's processes (/proc/<pid>/status; the stack and its functions' process,
   summed). Import time = connect → `imported` equals the corpus size. The stack's CPU time during the import
   (utime + stime, both processes) is reported too: on a shared machine it says more than wall time.
4. After the import: walks every page, then SIGTERM → exit time, then starts the stack again on the same data
   dir and checks every message is still there (nothing lost across the final snapshot).
Results are printed and written to bench/results/local_stack.json. A benchmark, not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.imap_ingest.corpus import DOMAINS, load_corpus  # noqa: E402
from bench.imap_ingest.mbsync import run_mbsync  # noqa: E402
from bench.record import record  # noqa: E402
from devservers.dovecot import DovecotServer, free_port  # noqa: E402
from devservers.smtp import for_dovecot  # noqa: E402


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (proc(5): /proc/<pid>/task/<tid>/children) — the stack and the functions'
    process it starts (`infra/local_functions.py`)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                pending += [int(child) for child in (task / "children").read_text().split()]
            except (OSError, ValueError):
                pass
    return found


def proc_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident) of a process and its descendants, summed, in kB (proc(5)); the sum of
    the peaks bounds the peak of the sum."""
    values = {"VmRSS": 0, "VmHWM": 0}
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                name, _, rest = line.partition(":")
                if name in values:
                    values[name] += int(rest.split()[0])
        except (OSError, ValueError):
            pass
    return values if values["VmRSS"] else {}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its descendants (proc(5), fields 14 and 15, in clock ticks): their CPU
    time, whatever else runs on the machine."""
    total = 0.0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            pass
    return total


def aws_calls(response: requests.Response) -> dict[str, int]:
    header = response.headers.get("X-Local-Aws-Calls", "")
    calls = {}
    for part in header.split(","):
        name, _, n = part.strip().partition("=")
        if n.isdigit():
            calls[name] = int(n)
    return calls


class Stack:
    """`python -m infra.local_stack` as a subprocess on free ports; output to a log file."""

    def __init__(self, data_dir: Path, log: Path, snapshot_interval: float) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.data_dir, self.log, self.snapshot_interval = data_dir, log, snapshot_interval
        self.process: subprocess.Popen | None = None
        self.key = ""

    def start(self, timeout: float = 180) -> float:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILBRIDGE_", "AWS_"))}
        env["POWERTOOLS_LOG_LEVEL"] = "WARNING"
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "infra.local_stack", "--port", str(self.port), "--moto-port", "0",
             "--data-dir", str(self.data_dir), "--snapshot-interval", str(self.snapshot_interval)],
            cwd=ROOT, env=env, stdout=self.log.open("a"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("local stack exited:\n" + self.log.read_text()[-3000:])
            for line in self.log.read_text().splitlines():
                if line.strip().startswith("demo API key:"):
                    self.key = line.split(":", 1)[1].strip()
            if self.key:
                try:
                    requests.get(f"{self.base}/v1/health", timeout=5).raise_for_status()
                    return time.perf_counter() - started
                except requests.RequestException:
                    pass
            time.sleep(0.2)
        raise RuntimeError("local stack did not start:\n" + self.log.read_text()[-3000:])

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "X-User-Id": "u-bench"}

    def stop(self, timeout: float = 300) -> tuple[float, int | None]:
        """SIGTERM; (seconds until the process exited, exit code)."""
        assert self.process is not None
        started = time.perf_counter()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        return time.perf_counter() - started, code


def connect_mailbox(stack: Stack, server: DovecotServer, smtp_port: int, user: str, password: str,
                    since: dt.date) -> str:
    endpoint = {"host": "127.0.0.1", "security": "none", "username": user, "login_method": "plain"}
    body = {"name": "Bench", "type": "imap", "email": "alice@acme-crm.example", "kind": "personal",
            "import_since": since.isoformat(), "pairing_mode": "auto", "password": password,
            "imap": {**endpoint, "port": server.port}, "smtp": {**endpoint, "port": smtp_port}}
    created = requests.post(f"{stack.base}/v1/mailboxes", json=body, headers=stack.headers(), timeout=60)
    created.raise_for_status()
    return created.json()["id"]


def seed_directory(stack: Stack) -> int:
    """One company per corpus domain (`bench/imap_ingest/corpus.py`), readable by everyone: every message from
    or to those domains is paired as it is imported, so each listed page carries links (read in one batch)."""
    records = [{"type": "company", "id": f"bench-{n}", "name": domain.split(".")[0].title(), "domains": [domain],
                "readers": ["*"]} for n, domain in enumerate(DOMAINS)]
    admin = {"Authorization": f"Bearer {stack.key}"}       # the CRM's backend, no user: directory writes
    response = requests.post(f"{stack.base}/v1/directory/batch", json={"records": records}, headers=admin,
                             timeout=60)
    response.raise_for_status()
    return len(records)


def imported(stack: Stack, mailbox_id: str) -> int:
    status = requests.get(f"{stack.base}/v1/mailboxes/{mailbox_id}/sync", headers=stack.headers(), timeout=60)
    status.raise_for_status()
    return int(status.json()["counts"]["imported"])


def list_page(stack: Stack, mailbox_id: str, limit: int, cursor: str | None = None) -> tuple[float, dict, dict]:
    params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
    started = time.perf_counter()
    response = requests.get(f"{stack.base}/v1/mailboxes/{mailbox_id}/messages", params=params,
                            headers=stack.headers(), timeout=300)
    seconds = time.perf_counter() - started
    response.raise_for_status()
    return seconds, aws_calls(response), response.json()


class MemorySampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.stop = pid, every, threading.Event()
        self.samples: list[tuple[float, int]] = []
        self.peak_hwm = 0

    def run(self) -> None:
        started = time.monotonic()
        while not self.stop.wait(self.every):
            memory = proc_memory(self.pid)
            if "VmRSS" in memory:
                self.samples.append((time.monotonic() - started, memory["VmRSS"]))
                self.peak_hwm = max(self.peak_hwm, memory.get("VmHWM", 0))


def summary(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    return {"count": len(values), "p50": round(statistics.median(ordered), 3),
            "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3),
            "max": round(ordered[-1], 3)}


def run(args) -> dict:
    now = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    started = time.perf_counter()
    corpus = load_corpus(args.messages, args.seed, now)
    total_bytes = sum(len(m.raw) for m in corpus)
    print(f"corpus: {len(corpus)} messages, {total_bytes / 1e6:.1f} MB "
          f"({sum(m.folder == 'Sent' for m in corpus)} in Sent), built/loaded in {time.perf_counter() - started:.1f} s",
          flush=True)
    results: dict = {"when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                     "machine": f"{platform.machine()}, {os.cpu_count()} cpu, Python {platform.python_version()}",
                     "command": "python -m bench.local_stack " + " ".join(sys.argv[1:]),
                     "messages": len(corpus), "megabytes": round(total_bytes / 1e6, 1)}
    work = Path(tempfile.mkdtemp(prefix="mb-bench-stack-"))
    with DovecotServer() as server, for_dovecot(server) as smtp:
        user, password = server.new_user("bench")
        loaded = time.perf_counter()
        for folder in ("INBOX", "Sent"):
            server.append_many(user, folder, ((m.raw, m.flags, m.date) for m in corpus if m.folder == folder))
        print(f"dovecot: loaded in {time.perf_counter() - loaded:.1f} s", flush=True)

        if args.mbsync_rounds:
            runs = [run_mbsync(port=server.tls_port, user=user, password=password, ca_pem=server.ca_pem)
                    for _ in range(args.mbsync_rounds)]
            results["mbsync_seconds_median"] = round(statistics.median(t for t, _ in runs), 2)
            results["mbsync_messages"] = runs[0][1]
            print(f"mbsync: {runs[0][1]} messages, median {results['mbsync_seconds_median']} s "
                  f"of {args.mbsync_rounds} pulls", flush=True)

        stack = Stack(work / "state", work / "stack.log", args.snapshot_interval)
        results["stack_start_seconds"] = round(stack.start(), 2)
        sampler = MemorySampler(stack.process.pid)
        sampler.start()
        try:
            results.update(import_while_listing(stack, server, smtp.port, user, password, now, len(corpus), args))
            walk = walk_pages(stack, results.pop("_mailbox_id"), args.page)
            results.update(walk)
        finally:
            stop_seconds, code = stack.stop()
            sampler.stop.set()
            sampler.join()
        if args.mbsync_rounds and results.get("import_complete"):
            results["ratio_import_to_mbsync_time"] = round(results["import_seconds"]
                                                           / results["mbsync_seconds_median"], 1)
        results["sigterm_to_exit_seconds"] = round(stop_seconds, 2)
        results["exit_code"] = code
        results["stack_peak_rss_mb"] = round(max(sampler.peak_hwm, max((s for _, s in sampler.samples), default=0))
                                             / 1024, 1)
        results["stack_rss_after_import_mb"] = round(results.pop("_rss_after_import_kb", 0) / 1024, 1)
        results["rss_samples_mb"] = [[round(t, 1), round(kb / 1024, 1)]
                                     for t, kb in sampler.samples[::max(1, len(sampler.samples) // 40)]]
        if not args.no_restart:
            results.update(restart_check(stack, walk["listed_messages"]))
    print(f"stack log: {stack.log}", flush=True)
    return results


def import_while_listing(stack: Stack, server, smtp_port: int, user: str, password: str, now: dt.datetime,
                         total: int, args) -> dict:
    if args.directory:
        seed_directory(stack)
    started, cpu_started = time.perf_counter(), cpu_seconds(stack.process.pid)
    mailbox_id = connect_mailbox(stack, server, smtp_port, user, password, (now - dt.timedelta(days=7)).date())
    requests.post(f"{stack.base}/v1/mailboxes/{mailbox_id}/refresh", headers=stack.headers(), timeout=60)
    latencies, dynamodb_calls, progress = [], [], []
    deadline = time.monotonic() + args.timeout
    done = 0
    while time.monotonic() < deadline:
        seconds, calls, body = list_page(stack, mailbox_id, args.page)
        latencies.append(seconds)
        dynamodb_calls.append(calls.get("dynamodb", 0))
        done = imported(stack, mailbox_id)
        elapsed = time.perf_counter() - started
        progress.append((round(elapsed, 1), done))
        if len(progress) % 10 == 1:
            rss = proc_memory(stack.process.pid).get("VmRSS", 0) / 1024
            print(f"  {elapsed:7.1f} s  imported {done:5d}/{total}  list {seconds * 1000:6.0f} ms "
                  f"({len(body['items'])} items, {calls.get('dynamodb', 0)} DynamoDB calls)  RSS {rss:.0f} MB",
                  flush=True)
        if done >= total:
            break
        time.sleep(max(0.0, 1.0 - seconds))
    import_seconds = time.perf_counter() - started
    cpu = cpu_seconds(stack.process.pid) - cpu_started
    return {"_mailbox_id": mailbox_id, "imported": done, "import_complete": done >= total,
            "import_seconds": round(import_seconds, 1),
            "import_messages_per_second": round(done / import_seconds, 1),
            "stack_cpu_seconds_during_import": round(cpu, 1),
            "stack_cpu_ms_per_message": round(1000 * cpu / max(done, 1), 1),
            "list_while_importing_seconds": summary(latencies),
            # the first list also authenticates its key (API key + tenant: `api/auth_cache.py`); later ones
            # find the verified key in the warm API process
            "list_while_importing_dynamodb_calls": {"first": dynamodb_calls[0] if dynamodb_calls else 0,
                                                    "max_after_first": max(dynamodb_calls[1:], default=0),
                                                    "p50": statistics.median(dynamodb_calls) if dynamodb_calls else 0},
            "_rss_after_import_kb": proc_memory(stack.process.pid).get("VmRSS", 0),
            "progress": progress[::max(1, len(progress) // 30)]}


def walk_pages(stack: Stack, mailbox_id: str, page: int) -> dict:
    latencies, calls, cursor, listed = [], [], None, 0
    while True:
        seconds, used, body = list_page(stack, mailbox_id, page, cursor)
        latencies.append(seconds)
        calls.append(used.get("dynamodb", 0))
        listed += len(body["items"])
        cursor = body.get("next_cursor")
        if not cursor:
            break
    return {"listed_messages": listed, "list_all_pages_seconds": summary(latencies),
            "list_all_pages_dynamodb_calls_max": max(calls, default=0), "_mailbox": mailbox_id,
            "mailbox_id": mailbox_id}


def restart_check(stack: Stack, expected: int) -> dict:
    """Start again on the same data dir: every message listed before SIGTERM is there."""
    restart_seconds = stack.start()
    try:
        mailbox_id = next(iter(requests.get(f"{stack.base}/v1/mailboxes", headers=stack.headers(),
                                            timeout=60).json()["items"]))["id"]
        listed = walk_pages(stack, mailbox_id, 100)["listed_messages"]
    finally:
        stop_seconds, _ = stack.stop()
    return {"restart_seconds": round(restart_seconds, 2), "messages_after_restart": listed,
            "nothing_lost_across_restart": listed == expected,
            "second_sigterm_to_exit_seconds": round(stop_seconds, 2)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.local_stack", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--page", type=int, default=100, help="messages per listed page")
    parser.add_argument("--snapshot-interval", type=float, default=10.0, help="the stack's (default 10 s)")
    parser.add_argument("--timeout", type=float, default=3600, help="give up on the import after this long")
    parser.add_argument("--no-restart", action="store_true", help="skip the restart check")
    parser.add_argument("--directory", action="store_true",
                        help="load a company per corpus domain first (imported mail is paired; lists read links)")
    parser.add_argument("--mbsync-rounds", type=int, default=3,
                        help="pull the same account with mbsync this many times first (0: skip); the import's "
                             "time is reported as a ratio to their median")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "local_stack.json"))
    args = parser.parse_args(argv)
    results = run(args)
    results.pop("_mailbox", None)
    width = max(len(k) for k in results)
    for key, value in results.items():
        if key not in ("progress", "rss_samples_mb"):
            print(f"{key:<{width}}  {value}")
    record("local_stack", results, args.out)
    return results


if __name__ == "__main__":
    main()
