"""The local stack's Lambda functions, in a process of their own (started by `infra/local_stack.py`).

    python -m infra.local_functions [--sync-interval SECONDS] [--grace SECONDS]

Runs every `on_sqs_message` poller and `schedule` runner app.py declares (`local_stack.start_event_sources`) —
the worker, notifier, checker, scheduler, ... — while the main process keeps the emulator, the API and the
snapshots. Their AWS calls reach the main process's emulator through `infra/local_bridge.py` (address and key in
the environment the main process passes down, with every MAILBRIDGE_* variable it set). In the cloud these are
separate Lambda functions; here the split lets them and the emulator use two cores instead of one GIL.

Stops on SIGTERM/SIGINT: the pollers finish their batch within `--grace` seconds, or are abandoned as a stopped
Lambda's would be (every handler is crash-safe: a batch not deleted is received again). Exits by itself when the
main process is gone.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import time
from pathlib import Path

import boto3

from infra import local_bridge
from infra.local_moto import install_response_parser
from infra.local_stack import ROOT, chalice_stage_config, start_event_sources


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m infra.local_functions",
                                     description="the local stack's Lambda functions (started by local_stack)")
    parser.add_argument("--sync-interval", type=float, default=None,
                        help="also run the scheduler every N seconds (besides :00 and :30)")
    parser.add_argument("--grace", type=float, default=2.0, help="seconds in-flight batches get on SIGTERM")
    return parser.parse_args(argv)


def watch_parent(stop: threading.Event) -> None:
    """Stop when the main process is gone (this process is re-parented then)."""
    parent = os.getppid()
    while not stop.wait(1.0):
        if os.getppid() != parent:
            stop.set()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    # Before the app makes any botocore session: each new session copies the built-in handlers.
    local_bridge.install_client(os.environ[local_bridge.ADDRESS_ENV],
                                bytes.fromhex(os.environ[local_bridge.AUTHKEY_ENV]))
    install_response_parser()
    app_module = importlib.import_module("app")
    session = boto3.session.Session(region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threads = start_event_sources(app_module, session, chalice_stage_config()["functions"],
                                  args.sync_interval, stop)
    threading.Thread(target=watch_parent, args=(stop,), name="parent-watch", daemon=True).start()
    Path(os.environ[local_bridge.READY_ENV]).touch()
    stop.wait()
    deadline = time.monotonic() + args.grace
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)      # abandoned batches (daemon threads) must not hold the exit
