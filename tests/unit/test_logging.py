"""Guards against secrets reaching logs: keys, passwords and bearer tokens are scrubbed."""
import io
import json
import logging

from chalicelib.logs import REDACTED, logger, scrub


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
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    logger.addHandler(handler)
    old_level = logger.log_level
    logger.setLevel("INFO")
    try:
        logger.append_keys(tenant_id="tnt_1")
        logger.info("connecting", extra={"password": "pw-123", "host": "imap.example"})
    finally:
        logger.removeHandler(handler)
        logger.remove_keys(["tenant_id"])
        logger.setLevel(old_level)
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["tenant_id"] == "tnt_1" and line["host"] == "imap.example"
    assert line["password"] == REDACTED and "pw-123" not in stream.getvalue()
