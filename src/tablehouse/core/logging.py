"""Structured logging for our code and for the libraries that log through ``logging``.

JSON lines in production or when stderr is not a terminal; coloured key=value lines on a
terminal. Every line logged while a request is handled carries its ``request_id``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog
from structlog.processors import NAME_TO_LEVEL

from tablehouse.config import Settings


def _orjson_dumps(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=str).decode()


class _LevelFirstLogger(structlog.stdlib.BoundLogger):
    """A line below its logger's level is dropped before anything is done for it: no copy of
    the context, no processor chain (structlog's ``filter_by_level`` would run as the chain's
    first step, after both). The same test as ``filter_by_level``."""

    def _proxy_to_logger(
        self, method_name: str, event: str | None = None, *event_args: str, **event_kw: Any
    ) -> Any:
        logger = self._logger
        level = NAME_TO_LEVEL.get(method_name)
        if level is not None and (logger.disabled or level < logger.getEffectiveLevel()):
            return None
        return super()._proxy_to_logger(method_name, event, *event_args, **event_kw)


def wants_json(settings: Settings) -> bool:
    if settings.log_format != "auto":
        return settings.log_format == "json"
    return settings.environment == "production" or not sys.stderr.isatty()


def configure_logging(settings: Settings, *, level: str | None = None) -> None:
    """Logging for this process; ``level`` instead of LOG_LEVEL (the CLI's commands, whose
    stderr is for what their user needs to see)."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if wants_json(settings):
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    else:
        # rich's tracebacks take over a second to render; plain ones are enough in a terminal.
        renderer = structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)

    structlog.configure(
        # The level is checked first, by the wrapper: a line below LOG_LEVEL (the access log
        # at WARNING) then costs one comparison instead of the chain before logging drops it.
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=_LevelFirstLogger,
        cache_logger_on_first_use=False,
    )
    # What no line here shows (the caller's file and line, found by walking the stack; the
    # thread and process), not gathered for every record: the logging HOWTO's "Optimization".
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # the HOWTO's way to skip findCaller for every record
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level or settings.log_level)
    # uvicorn logs through the root handler; its access log is replaced by ours, which
    # knows the request id and the duration.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # Alembic announces each autogenerate plugin at INFO on every command; SQLAlchemy's pool
    # (named after our pool class) says "Pool disposed", "Pool recreating" at INFO whenever
    # an engine is disposed: its echo_pool lines, for debugging the pool, not news.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    if (level or settings.log_level) != "DEBUG":
        logging.getLogger("tablehouse.core.pool").setLevel(logging.WARNING)
