"""Shared PynamoDB plumbing: table names and region come from settings (env), endpoints from botocore.

Models are persistence only: no HTTP errors, no scans on request paths (a key or GSI per access pattern).
Tables are defined in `infra/resources.yaml`; `create_table` is used only by tests and the local stack.
The endpoint is left to botocore, which honours `AWS_ENDPOINT_URL(_DYNAMODB)` (the local stack uses moto in-process).
"""
from __future__ import annotations

import functools
from typing import Any

import pynamodb.connection.base as pynamodb_connection
from pynamodb.connection import Connection

from chalicelib.aws import thread_session
from chalicelib.config import get_settings

# PynamoDB makes a botocore session per model class and thread with `botocore.session.get_session`; the
# thread's shared session instead reads botocore's service models once per process (`aws.thread_session`).
pynamodb_connection.get_session = thread_session


def table_meta(suffix: str, **extra: Any) -> type:
    """A PynamoDB `Meta` class for the table `<prefix><suffix>` (names read when the model is imported)."""
    settings = get_settings()
    attrs = {"table_name": settings.table_name(suffix), "region": settings.region,
             "billing_mode": "PAY_PER_REQUEST", **extra}
    return type("Meta", (), attrs)


@functools.lru_cache(maxsize=1)
def transaction_connection() -> Connection:
    """One PynamoDB connection for `TransactWrite`s (creating a botocore client per transaction costs more
    than the transaction)."""
    return Connection(region=get_settings().region)
