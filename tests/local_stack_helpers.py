"""Start and stop the local stack (`python -m infra.local_stack`, what `make run` starts) as a subprocess, for
the tests that drive it over HTTP."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


def start_stack(data_dir: Path, port: int, log: Path, *extra: str,
                env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """(the process, the demo API key from its banner). The test process's MAILBRIDGE_/AWS_ settings are not
    passed on; `env` adds settings (e.g. the fake Microsoft's endpoints)."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILBRIDGE_", "AWS_"))}
    child_env["POWERTOOLS_LOG_LEVEL"] = "WARNING"
    child_env.update(env or {})
    out = log.open("w")
    process = subprocess.Popen([sys.executable, "-m", "infra.local_stack", "--port", str(port), "--moto-port", "0",
                                "--data-dir", str(data_dir), "--snapshot-interval", "300", *extra],
                               cwd=ROOT, env=child_env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        for line in log.read_text().splitlines():
            if line.strip().startswith("demo API key:"):
                requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=5).raise_for_status()
                return process, line.split(":", 1)[1].strip()
        time.sleep(0.3)
    process.kill()
    raise AssertionError("local stack did not start:\n" + log.read_text())


def stop_stack(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


def clear_of_the_half_hour_tick() -> None:
    """The stack's scheduler also ticks at :00 and :30 (one idle check per folder): a test that counts a
    sync's provider calls measures away from it."""
    now = datetime.now(timezone.utc)
    to_tick = (30 - now.minute % 30) * 60 - now.second
    if to_tick < 25:
        time.sleep(to_tick + 15)


def wait_for(probe, what: str, seconds: float = 30):
    """`probe()`'s first truthy answer, polled every 0.3 s; fails naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")
