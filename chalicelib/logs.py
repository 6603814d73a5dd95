"""Structured JSON logging (Powertools Logger) with secrets scrubbed before anything is written.

Bind `tenant_id`, `mailbox_id`, `provider`, `request_id` with `logger.thread_safe_append_keys(...)` (per thread:
the local stack runs the API, scheduler and worker as threads of one process, and a Lambda runs one event at a
time, so keys bound for one job never label another's lines). Values under keys that name a secret (password,
token, secret, authorization, key material) and anything that looks like an API key or bearer token are replaced
by "[redacted]" — "never include accessToken here" is enforced, not hoped for.
"""
from __future__ import annotations

import re
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(r"pass(word)?|secret|token|authorization|api_?key|credential|private|cookie|cache",
                         re.IGNORECASE)
_SECRET_VALUE = re.compile(r"(mbk_[A-Za-z0-9]+_[A-Za-z0-9_-]{20,}|mbo_[A-Za-z0-9_-]{20,}|whsec_[A-Za-z0-9_-]{20,}"
                           r"|Bearer\s+\S+)")


def scrub(value: Any, key: str = "") -> Any:
    if key and _SECRET_KEY.search(key) and value not in (None, "", [], {}):
        return REDACTED
    if isinstance(value, dict):
        return {k: scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return _SECRET_VALUE.sub(REDACTED, value)
    return value


class ScrubbingFormatter(LambdaPowertoolsFormatter):
    def serialize(self, log: dict[str, Any]) -> str:
        return super().serialize(scrub(log))


logger = Logger(service="mailbridge", logger_formatter=ScrubbingFormatter(), use_rfc3339=True)
