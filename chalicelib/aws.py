"""Lazy AWS clients (created on first use, reused across Lambda invocations), and the botocore session every
AWS client of the process is made from.

The clients are botocore's own (`Session.create_client`), the objects boto3's `client()` returns too: boto3
adds only its resource layer and S3 transfer helpers (`upload_file`, ...), which nothing here uses, and
importing it loads s3transfer and multiprocessing (~0.1 s of an API cold start; docs/benchmarks.md).

Endpoints are left to botocore, which honours `AWS_ENDPOINT_URL`; the local stack runs moto in-process instead
(`infra/local_aws.py`).

Client creation is dominated by botocore reading its JSON service models (`botocore/data`: the service
definition, endpoint rules, partitions) — a fresh `Session` reads them again for every client. PynamoDB makes
one session per model class and thread (`pynamodb.connection.base.Connection.session`), so a worker touching
fifteen tables paid fifteen reads of the DynamoDB model on a cold start. `thread_session()` gives each thread ONE
session, and every session shares one `Loader` (its caches are per instance; botocore `loaders.instance_cache`),
so the models are read once per process. Sessions stay per thread: botocore documents `Session` as not safe to
share between threads ("Multithreading or multiprocessing with resources", boto3 guide). `models/base.py` hands
it to PynamoDB.
"""
from __future__ import annotations

import functools
import threading

import botocore.session
from botocore.config import Config
from botocore.loaders import create_loader

from chalicelib.config import get_settings

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)
_LOADER = create_loader()
_SESSIONS = threading.local()


def new_session() -> botocore.session.Session:
    """A botocore session that reads service models through the process's shared loader."""
    session = botocore.session.get_session()
    session.register_component("data_loader", _LOADER)
    return session


def thread_session() -> botocore.session.Session:
    """This thread's botocore session (created on first use)."""
    session = getattr(_SESSIONS, "session", None)
    if session is None:
        session = _SESSIONS.session = new_session()
    return session


@functools.lru_cache(maxsize=None)
def client(service: str):
    # one session per client: a client registers its handlers on the session it is made from
    return new_session().create_client(service, region_name=get_settings().region, config=_CONFIG)


def sqs():
    return client("sqs")


def s3():
    return client("s3")


def kms():
    return client("kms")


def reset_clients() -> None:
    client.cache_clear()


def reset_sessions() -> None:
    """Forget this thread's session and the loaded service models, as a new process starts (benchmarks)."""
    global _LOADER
    _LOADER = create_loader()
    _SESSIONS.session = None
