"""`make run`: the whole service on this machine, no AWS account needed.

    python -m infra.local_stack [--port 8000] [--moto-port 0] [--data-dir .local/state] [--no-seed]
                                [--sync-interval SECONDS] [--snapshot-interval SECONDS] [--one-process]

1. starts moto (AWS emulator) on 127.0.0.1 and deploys `infra/resources.yaml` into it through
   CloudFormation (`Stage=local`: the cloud's tables, queues, bucket and key);
2. restores the data of the previous run from the data dir (`infra/local_state.py`);
3. exports fake credentials and the MAILBRIDGE_* variables (stack outputs + the `local` stage of
   `.chalice/config.json`), then imports `app.py`; the app's own AWS calls reach moto in-process
   (`local_aws.use_in_process_emulator`), the emulator's HTTP endpoint serves outside tools;
4. serves the API on 127.0.0.1:<port> with Chalice's local server; a second process
   (`infra/local_functions.py`) polls the queues into the very SQS handlers Lambda runs and fires the app's
   schedules (`infra/local_events.py`), its AWS calls answered by this process's emulator over a local pipe
   (`infra/local_bridge.py`) — the emulator and the functions use two cores, not one GIL (`--one-process`
   runs them here instead);
5. on first start seeds a demo tenant on the `standard` plan and prints its API key and an operator key;
6. snapshots the data every few seconds and on SIGINT/SIGTERM, so a restart finds everything again
   (incremental: only what was written since the last snapshot; exit within a few seconds of the signal).
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import importlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHALICE_CONFIG = ROOT / ".chalice" / "config.json"
STAGE = "local"
STOP_GRACE_SECONDS = 2.0


def log(message: str) -> None:
    print(f"local-stack: {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m infra.local_stack", description="mailbridge local stack")
    parser.add_argument("--port", type=int, default=8000, help="API port on 127.0.0.1 (default 8000)")
    parser.add_argument("--moto-port", type=int, default=0, help="AWS emulator port (default: a free one)")
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".local" / "state",
                        help="where data survives restarts (default .local/state)")
    parser.add_argument("--no-seed", action="store_true", help="do not create the demo tenant")
    parser.add_argument("--sync-interval", type=float, default=None,
                        help="also run the scheduler every N seconds (besides :00 and :30)")
    parser.add_argument("--snapshot-interval", type=float, default=10.0, help="seconds between data snapshots")
    parser.add_argument("--one-process", action="store_true",
                        help="run the functions (worker, notifier, ...) in this process instead of a second one")
    return parser.parse_args(argv)


def chalice_stage_config() -> dict:
    config = json.loads(CHALICE_CONFIG.read_text())
    stage = config["stages"][STAGE]
    env = {**config.get("environment_variables", {}), **stage.get("environment_variables", {})}
    functions = {**config["stages"].get("dev", {}).get("lambda_functions", {}), **stage.get("lambda_functions", {})}
    return {"env": env, "functions": functions, "raw": config}


def load_or_create_secrets(path: Path) -> dict:
    """Operator key, signing key and demo credentials of this data dir (local stage only; never in git)."""
    if path.exists():
        return json.loads(path.read_text())
    operator_key = "mbo_" + secrets.token_urlsafe(32)[:43]
    data = {"operator_key": operator_key, "signing_key": secrets.token_hex(32)}
    save_secrets(path, data)
    return data


def save_secrets(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def seed_demo_tenant(local_secrets: dict, secrets_path: Path) -> None:
    from chalicelib.tenancy import service
    tenant = service.create_tenant("Demo tenant", "standard", own_domains=["demo.example"])
    key = service.create_key(tenant.tenant_id, "demo key")
    local_secrets.update(demo_tenant_id=tenant.tenant_id, demo_api_key=key.plaintext)
    save_secrets(secrets_path, local_secrets)


def start_event_sources(app_module, session, functions: dict, sync_interval: float | None,
                        stop: threading.Event) -> list[threading.Thread]:
    """A poller per `on_sqs_message` handler and a runner per `schedule` handler declared in app.py (in the
    functions' process, `infra/local_functions.py`, or here with `--one-process`)."""
    from chalice.app import ScheduledEventConfig, SQSEventConfig

    from infra.local_events import ScheduleRunner, SqsPoller
    from infra.local_schedule import Schedule

    sqs = session.client("sqs")
    threads = []
    for source in app_module.app.event_sources:
        handler = getattr(app_module, source.handler_string.split(".", 1)[1])
        settings = functions.get(source.name, {})
        timeout = int(settings.get("lambda_timeout", 60))
        if isinstance(source, SQSEventConfig):
            url = sqs.get_queue_url(QueueName=source.queue)["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            runner = SqsPoller(sqs, url, arn, handler, source.name, timeout, batch_size=source.batch_size,
                               region=session.region_name, log=log,
                               memory_mb=int(settings.get("lambda_memory_size", 128)))
            what = f"{source.name} <- {source.queue}"
        elif isinstance(source, ScheduledEventConfig):
            expression = source.schedule_expression
            expression = expression if isinstance(expression, str) else expression.to_string()
            extra = sync_interval if source.name == "scheduler" else None
            runner = ScheduleRunner(Schedule.parse(expression), handler, source.name, timeout, extra_interval=extra,
                                    region=session.region_name, log=log)
            what = f"{source.name} on {expression}" + (f" and every {extra:g}s" if extra else "")
        else:
            log(f"event source {source.name} ({type(source).__name__}) is not emulated locally")
            continue
        thread = threading.Thread(target=runner.run, args=(stop,), name=source.name, daemon=True)
        thread.start()
        threads.append(thread)
        log(f"running {what}")
    return threads


class FunctionsProcess:
    """`python -m infra.local_functions`: the functions in a second process, their AWS calls answered by this
    process's emulator through `infra/local_bridge.py` (a Unix socket in a private temp dir, a random key)."""

    def __init__(self, sync_interval: float | None) -> None:
        from infra import local_api, local_bridge
        self.directory = tempfile.mkdtemp(prefix="mailbridge-bridge-")
        address, key = os.path.join(self.directory, "bridge.sock"), secrets.token_bytes(32)
        self.listener = local_bridge.serve(address, key, before_each=local_api.wait_for_requests, log=log)
        env = {**os.environ, local_bridge.ADDRESS_ENV: address, local_bridge.AUTHKEY_ENV: key.hex()}
        command = [sys.executable, "-m", "infra.local_functions", "--grace", str(STOP_GRACE_SECONDS)]
        if sync_interval:
            command += ["--sync-interval", str(sync_interval)]
        env[local_bridge.READY_ENV] = os.path.join(self.directory, "ready")
        self.process = subprocess.Popen(command, cwd=ROOT, env=env)
        log(f"functions run in process {self.process.pid} (python -m infra.local_functions)")

    def wait_until_ready(self, timeout: float = 60.0) -> None:
        """Until every poller and schedule runs there (the banner comes after), or fail the start."""
        deadline = time.monotonic() + timeout
        ready = os.path.join(self.directory, "ready")
        while not os.path.exists(ready):
            if self.process.poll() is not None:
                raise SystemExit(f"local-stack: the functions' process exited ({self.process.returncode})")
            if time.monotonic() > deadline:
                raise SystemExit("local-stack: the functions' process did not start")
            time.sleep(0.05)

    def stop(self, deadline: float) -> None:
        """SIGTERM; what has not exited by `deadline` (its batches abandoned, as a stopped Lambda's) is killed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.listener.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def banner(port: int, endpoint: str, data_dir: Path, local_secrets: dict) -> str:
    base = f"http://127.0.0.1:{port}"
    lines = ["", "=" * 72, "mailbridge local stack is up", f"  API:           {base}   (docs: {base}/docs)",
             f"  AWS emulator:  {endpoint}   (aws --endpoint-url {endpoint} ...)",
             f"  data dir:      {data_dir}", f"  operator key:  {local_secrets['operator_key']}"]
    if local_secrets.get("demo_api_key"):
        lines += [f"  demo tenant:   {local_secrets['demo_tenant_id']} (plan standard)",
                  f"  demo API key:  {local_secrets['demo_api_key']}",
                  "  try:", f"    curl -s {base}/v1/health",
                  f"    curl -s -H 'Authorization: Bearer {local_secrets['demo_api_key']}' {base}/v1/keys"]
    lines += ["Stop with Ctrl-C (data is saved; start again to continue).", "=" * 72, ""]
    return "\n".join(lines)


def ensure_port_free(port: int) -> None:
    """Fail in a second, before the emulator starts, when the API port is taken (e.g. another local stack)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise SystemExit(f"local-stack: 127.0.0.1:{port} is in use ({exc.strerror}); pick another with --port")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_port_free(args.port)
    data_dir = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))

    from infra import local_aws, local_moto
    from infra.local_state import LocalState

    local_aws.use_in_process_emulator()
    moto_server, endpoint = local_aws.start_moto(args.moto_port)
    import boto3
    session = boto3.session.Session(region_name=local_aws.REGION)
    outputs = local_aws.deploy_resources(session, STAGE)
    state = LocalState(data_dir, session, outputs["TablePrefix"], key_id=outputs["SecretsKeyId"])
    if state.exists():
        manifest = state.restore(log=log)
        log(f"restored {sum(manifest['tables'].values())} items and "
            f"{sum(len(v) for v in manifest['buckets'].values())} objects from {data_dir}")

    stage = chalice_stage_config()
    secrets_path = data_dir / "local-secrets.json"
    local_secrets = load_or_create_secrets(secrets_path)
    for name, value in stage["env"].items():
        os.environ.setdefault(name, value)
    os.environ.update(local_aws.mailbridge_environment(outputs, STAGE))
    os.environ.update({
        "MAILBRIDGE_PUBLIC_BASE_URL": f"http://127.0.0.1:{args.port}",
        "MAILBRIDGE_OPERATOR_KEY_SHA256": hashlib.sha256(local_secrets["operator_key"].encode()).hexdigest(),
        "MAILBRIDGE_SIGNING_KEY": local_secrets["signing_key"],
    })

    from chalicelib import aws as aws_clients
    from chalicelib.config import reset_settings
    reset_settings()
    aws_clients.reset_clients()
    app_module = importlib.import_module("app")

    snapshot_lock = threading.Lock()

    def snapshot(*, compact: bool = True) -> None:
        with snapshot_lock:
            state.snapshot(compact=compact)

    if not args.no_seed and not local_secrets.get("demo_api_key"):
        seed_demo_tenant(local_secrets, secrets_path)
        snapshot()
        log("seeded the demo tenant")

    from chalice.config import Config

    from infra.local_api import create_server
    server = create_server(app_module.app, Config(chalice_stage=STAGE, config_from_disk=stage["raw"]),
                           "127.0.0.1", args.port)
    threading.Thread(target=server.serve_forever, name="api", daemon=True).start()

    stop = threading.Event()
    workers: list[threading.Thread] = []
    functions: FunctionsProcess | None = None
    if args.one_process:
        workers = start_event_sources(app_module, session, stage["functions"], args.sync_interval, stop)
    else:
        functions = FunctionsProcess(args.sync_interval)
        functions.wait_until_ready()

    def periodic_snapshots() -> None:
        while not stop.wait(args.snapshot_interval):
            try:
                snapshot()
            except Exception as exc:  # noqa: BLE001 - keep serving; the next snapshot retries
                log(f"snapshot failed: {type(exc).__name__}: {exc}")
            # The emulator's store only grows (millions of small objects for a mailbox of a few thousand
            # messages), and every full run of the cyclic garbage collector walked all of it. What survived
            # until now is moved out of its sight (https://docs.python.org/3/library/gc.html#gc.freeze);
            # reference counting still frees what is dropped later.
            gc.freeze()

    threading.Thread(target=periodic_snapshots, name="snapshots", daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(banner(args.port, endpoint, data_dir, local_secrets), flush=True)

    stop.wait()
    stopping_since = time.monotonic()
    log("stopping: saving data")
    # The API stops taking requests at once (its shutdown waits for the server loop's next poll, so it runs
    # beside the grace period). In-flight batches get a moment to finish; one still running is abandoned as if
    # its Lambda were stopped: the worker is crash-safe (a replay completes what a cut-off page owes), and its
    # job is enqueued again by the scheduler's next tick. The final snapshot is incremental, so it takes well
    # under a second. The emulator's HTTP endpoint is not shut down one by one: the process exits right after.
    api_stopped = threading.Thread(target=server.shutdown, name="api-shutdown", daemon=True)
    api_stopped.start()
    deadline = stopping_since + STOP_GRACE_SECONDS
    if functions is not None:
        functions.stop(deadline)
    for thread in workers:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    local_moto.refuse_other_threads()      # what still runs fails at its next DynamoDB call, as on Lambda
    snapshot(compact=False)
    api_stopped.join(timeout=1.0)
    log(f"data saved in {data_dir} ({time.monotonic() - stopping_since:.1f} s after the signal)")
    return 0


if __name__ == "__main__":
    exit_code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is saved and stopped; skip the interpreter's teardown of the emulator's and clients'
    # leftovers, which takes seconds and can add nothing.
    os._exit(exit_code)
