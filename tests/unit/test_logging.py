"""Guards against secrets reaching logs: keys, passwords and bearer tokens are scrubbed."""
import json
import threading

from chalicelib.logs import REDACTED, logger, scrub
from tests.log_capture import captured


def test_scrub_nested_secret_keys_and_values():
    record = {"password": "hunter2", "nested": {"refresh_token": "abc", "ok": "fine"},
              "message": "auth Bearer abc.def used key mbk_0123456789ab_" + "A" * 43,
              "list": [{"client_secret": "s"}]}
    cleaned = scrub(record)
    assert cleaned["password"] == REDACTED and cleaned["nested"]["refresh_token"] == REDACTED
    assert cleaned["nested"]["ok"] == "fine" and cleaned["list"][0]["client_secret"] == REDACTED
    assert "hunter2" not in json.dumps(cleaned) and "AAAA" not in cleaned["message"]
    assert "Bearer abc" not in cleaned["message"]


def test_logger_output_is_structured_and_scrubbed():
    with captured() as stream:
        logger.thread_safe_append_keys(tenant_id="tnt_1")
        try:
            logger.info("connecting", extra={"password": "pw-123", "host": "imap.example"})
        finally:
            logger.thread_safe_remove_keys(["tenant_id"])
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["tenant_id"] == "tnt_1" and line["host"] == "imap.example"
    assert line["password"] == REDACTED and "pw-123" not in stream.getvalue()


def test_keys_bound_in_one_thread_never_label_another_threads_lines():
    """The local stack runs the worker and the checker as threads of one process."""
    bound, go = threading.Barrier(2), threading.Event()

    def job(mailbox_id: str) -> None:
        logger.thread_safe_append_keys(mailbox_id=mailbox_id)
        try:
            bound.wait(5)           # both threads have bound their key before either logs
            go.wait(5)
            logger.info("job line", extra={"job": mailbox_id})
        finally:
            logger.thread_safe_remove_keys(["mailbox_id"])

    with captured() as stream:
        threads = [threading.Thread(target=job, args=(name,)) for name in ("mbx_a", "mbx_b")]
        for thread in threads:
            thread.start()
        go.set()
        for thread in threads:
            thread.join(10)
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if '"job line"' in line]
    assert sorted(line["job"] for line in lines) == ["mbx_a", "mbx_b"]
    assert all(line["mailbox_id"] == line["job"] for line in lines)


def test_a_requests_log_keys_end_with_it(api):
    """Guards against a request's keys (its id, route, tenant, the `api` function name) labelling the lines
    its thread logs after it (the local stack runs the API beside the other loops)."""
    before = dict(logger.thread_safe_get_current_keys())
    api("GET", "/v1/health")
    after = dict(logger.thread_safe_get_current_keys())
    assert after == before
