"""Guards the local stack's rule that API requests go first: a background thread's AWS call waits while a
request is in flight (bounded), and a request's own calls never wait."""
from __future__ import annotations

import collections
import threading
import time

import boto3
from moto import mock_aws

from infra import local_api


def _background_call(done: list[float]) -> None:
    boto3.client("s3", region_name="us-east-1").list_buckets()
    done.append(time.monotonic())


def test_background_calls_wait_for_the_request_in_flight():
    local_api.install_counter()
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").list_buckets()       # clients and models loaded
        done: list[float] = []
        local_api._request_started()
        try:
            worker = threading.Thread(target=_background_call, args=(done,))
            worker.start()
            time.sleep(0.3)
            assert done == []                          # held while the request runs
            finished_at = time.monotonic()
        finally:
            local_api._request_finished()
        worker.join(5)
        assert done and done[0] >= finished_at


def test_a_background_call_waits_at_most_the_bound(monkeypatch):
    local_api.install_counter()
    monkeypatch.setattr(local_api, "BACKGROUND_WAIT_SECONDS", 0.2)
    with mock_aws():
        done: list[float] = []
        local_api._request_started()
        try:
            started = time.monotonic()
            _background_call(done)                     # this thread is no request: it waits, then goes
            assert 0.2 <= done[0] - started < 2
        finally:
            local_api._request_finished()


def test_a_request_thread_calls_without_waiting(monkeypatch):
    """Asserted on the wait itself, not on a time (a loaded machine slows the call, not the rule)."""
    local_api.install_counter()
    waits: list[str] = []
    monkeypatch.setattr(local_api, "wait_for_requests", lambda: waits.append(threading.current_thread().name))
    with mock_aws():
        local_api._request_started()
        local_api._calls.counter = collections.Counter()
        try:
            boto3.client("s3", region_name="us-east-1").list_buckets()
            assert waits == []
            assert local_api._calls.counter["s3"] == 1
        finally:
            local_api._calls.counter = None
            local_api._request_finished()
