"""What reaches the log at each LOG_LEVEL, and in what shape."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest
import structlog

from tablehouse.config import load_settings
from tablehouse.core.logging import configure_logging


@pytest.fixture
def warning_log() -> Iterator[io.StringIO]:
    """What the log handler writes with LOG_LEVEL=WARNING."""
    configure_logging(load_settings(_env_file=None, log_format="json", log_level="WARNING"))
    written = io.StringIO()
    [handler] = logging.getLogger().handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(written)
    yield written
    configure_logging(load_settings(_env_file=None, log_format="json", log_level="INFO"))


def test_lines_below_the_level_are_dropped_and_the_rest_written_as_json(
    warning_log: io.StringIO,
) -> None:
    log = structlog.get_logger("tablehouse.request")
    with structlog.contextvars.bound_contextvars(request_id="r-1"):
        log.info("request", status=200)
        log.warning("pool.slow", waited_ms=12)
    lines = [orjson.loads(line) for line in warning_log.getvalue().splitlines()]
    assert [(line["event"], line["level"], line["request_id"]) for line in lines] == [
        ("pool.slow", "warning", "r-1")
    ]
    assert lines[0]["waited_ms"] == 12
