"""Lazy boto3 clients (created on first use, reused across Lambda invocations).

Endpoints are left to botocore, which honours `AWS_ENDPOINT_URL`; the local stack runs moto in-process instead
(`infra/local_aws.py`).
"""
from __future__ import annotations

import functools

import boto3
from botocore.config import Config

from chalicelib.config import get_settings

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)


@functools.lru_cache(maxsize=None)
def client(service: str):
    return boto3.session.Session().client(service, region_name=get_settings().region, config=_CONFIG)


def sqs():
    return client("sqs")


def s3():
    return client("s3")


def kms():
    return client("kms")


def reset_clients() -> None:
    client.cache_clear()
