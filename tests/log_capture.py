"""What the service's logger writes, captured as the functions format it."""
from __future__ import annotations

import io
import json
import logging
from contextlib import contextmanager
from typing import Iterator

from chalicelib.logs import logger


@contextmanager
def captured(level: str = "INFO") -> Iterator[io.StringIO]:
    """The formatted lines logged at `level` or above while open, in a stream."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    logger.addHandler(handler)
    old_level = logger.log_level
    logger.setLevel(level)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


@contextmanager
def captured_lines() -> Iterator[list[dict]]:
    """The lines logged while open, parsed (the list is filled when the block ends)."""
    lines: list[dict] = []
    with captured() as stream:
        try:
            yield lines
        finally:
            lines.extend(json.loads(line) for line in stream.getvalue().splitlines() if line.strip())
