"""The ASGI application: ``create_app(settings)`` builds it; the lifespan owns the stores."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncEngine

from tablehouse import __version__
from tablehouse.analytics.pipeline.lifecycle import Analytics
from tablehouse.api.bodies import BodyBudgetMiddleware, BodyLimit, LargerBody, Pace
from tablehouse.api.docs import install_docs
from tablehouse.api.errors import install_error_handlers
from tablehouse.api.middleware import RequestContextMiddleware
from tablehouse.api.responses import without_impossible_422
from tablehouse.api.runtime import Runtime
from tablehouse.api.security_schemes import offer_bearer_scheme
from tablehouse.config import Settings, load_settings
from tablehouse.core import migrations
from tablehouse.core.database import (
    backend_of,
    create_engine,
    create_read_engine,
    create_read_session_factory,
    create_session_factory,
    wait_for_database,
)
from tablehouse.core.events import LoggingEventSink
from tablehouse.core.limits import ConcurrencyLimit
from tablehouse.core.logging import configure_logging
from tablehouse.core.mail import create_mailer
from tablehouse.core.metrics import Metrics
from tablehouse.core.security.jwt_secret import jwt_signing_secret
from tablehouse.core.security.passwords import Passwords
from tablehouse.core.security.tokens import TokenCodec
from tablehouse.core.times import Clock, system_clock
from tablehouse.errors import TablehouseError
from tablehouse.query import service as query_service
from tablehouse.query.dependencies import target_of as query_target_of
from tablehouse.query.schemas import state_limits
from tablehouse.routes import include_routers
from tablehouse.rows.router import INGEST_PATHS

# Net allocations between two collections of the youngest generation. At Python's 700 it ran
# every few requests, for 5-15% of a request's CPU (bench/cpu_per_request.py); what a request
# allocates mostly dies with it, so collecting less often finds the same garbage for less.
YOUNG_COLLECTION_THRESHOLD = 20_000

log = structlog.get_logger(__name__)


def create_app(settings: Settings, *, clock: Clock = system_clock) -> FastAPI:
    """The app for ``settings``; ``clock`` tells requests the time (tests move their own)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engines = _Engines(settings)
        metrics.watch_pools(engines.named())
        analytics = Analytics(settings, metrics) if settings.analytics_enabled else None
        try:
            app.state.runtime = await _start(settings, engines, analytics, metrics, clock)
            query_target_of(app.state.runtime)  # made now, not by the first query
            yield
            log.info("app.stopping")
        finally:
            if analytics is not None:
                await analytics.stop()
            await engines.dispose()

    app = FastAPI(
        title="Tablehouse",
        version=__version__,
        summary="Define datasets by schema, load rows, and query them in SQL.",
        lifespan=lifespan,
        # Served by install_docs from the package's own assets, not from a CDN.
        docs_url=None,
        redoc_url=None,
        # operationId = the endpoint's function name (unique; FastAPI warns on a repeat), so
        # generated clients have load_rows, not load_rows_api_v1_schemas_name_rows_post.
        generate_unique_id_function=_operation_id,
        # FastAPI's own OpenTelemetry bridge asks on every request whether a global provider
        # has been set up; nothing here sets one (requests are counted and logged by
        # RequestContextMiddleware), so it is off instead of asked.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    metrics = Metrics()  # before the lifespan: requests are counted even if start-up fails
    # Innermost of the two, so its 413 and 408 carry the request id and are logged.
    app.add_middleware(BodyBudgetMiddleware, **_body_budget(settings))
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    install_error_handlers(app)
    include_routers(app)
    install_docs(app)
    app.openapi = lambda: _document(app, settings)  # type: ignore[method-assign]
    return app


def _operation_id(route: APIRoute) -> str:
    return route.name


def _document(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """FastAPI's OpenAPI document, with the limits this server's settings set, and no 422
    where nothing can be invalid."""
    if app.openapi_schema is None:
        document = FastAPI.openapi(app)  # which keeps it in app.openapi_schema
        state_limits(document, settings)
        offer_bearer_scheme(document)
        without_impossible_422(document)
    assert app.openapi_schema is not None
    return app.openapi_schema


def _body_budget(settings: Settings) -> dict[str, Any]:
    """Every body: MAX_BODY_BYTES, except rows to load (MAX_INGEST_BYTES); the same pace."""
    return {
        "default": BodyLimit(settings.max_body_bytes, "MAX_BODY_BYTES"),
        "pace": Pace(
            read_timeout=settings.body_read_timeout_seconds,
            min_rate=settings.body_min_bytes_per_second,
            grace=settings.body_min_rate_grace_seconds,
        ),
        "larger": [
            LargerBody("POST", path, BodyLimit(settings.max_ingest_bytes, "MAX_INGEST_BYTES"))
            for path in INGEST_PATHS
        ],
    }


class _Engines:
    """Writes, reads, and users' SQL (the reads engine unless DATABASE_READ_URL is set)."""

    def __init__(self, settings: Settings) -> None:
        self.main = create_engine(settings)
        self.reads = create_read_engine(settings)
        self.queries = (
            create_read_engine(settings, replica=True) if settings.database_read_url else self.reads
        )

    def named(self) -> dict[str, AsyncEngine]:
        named = {"main": self.main, "reads": self.reads}
        if self.queries is not self.reads:
            named["replica"] = self.queries
        return named

    async def dispose(self) -> None:
        for engine in {self.main, self.reads, self.queries}:
            await engine.dispose()


async def _start(
    settings: Settings,
    engines: _Engines,
    analytics: Analytics | None,
    metrics: Metrics,
    clock: Clock,
) -> Runtime:
    attempts, delay = settings.db_startup_attempts, settings.db_startup_retry_delay
    try:
        await wait_for_database(engines.main, attempts=attempts, delay=delay)
        await migrations.require_current_schema(engines.main, settings)
        if engines.queries is not engines.reads:
            await wait_for_database(engines.queries, attempts=attempts, delay=delay)
        await query_service.check_query_role(engines.queries, settings.query_database_role)
        await query_service.check_role_creation(engines.main)
        secret = jwt_signing_secret(settings) if settings.jwt_algorithm.startswith("HS") else None
        tokens = TokenCodec(settings, secret)
    except TablehouseError as exc:  # an expected failure: say what, not where
        log.error("app.start_failed", reason=exc.message)
        raise
    except Exception:
        log.exception("app.start_failed")
        raise
    if analytics is not None:
        await analytics.start()
    log.info("app.started", environment=settings.environment, version=__version__)
    # Everything loaded so far lives as long as the process: move it out of the collector's
    # way, or each full collection during a large ingest rescans the whole framework. Once
    # per process (tests start many apps), and after a collection so no garbage is kept.
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()
        _, middle, oldest = gc.get_threshold()
        gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, oldest)
    return Runtime(
        settings=settings,
        clock=clock,
        backend=backend_of(engines.main),
        engine=engines.main,
        session_factory=create_session_factory(engines.main),
        read_session_factory=create_read_session_factory(engines.reads),
        tokens=tokens,
        passwords=Passwords(settings),
        mailer=create_mailer(settings),
        read_engine=engines.reads,
        query_engine=engines.queries,
        query_slots=ConcurrencyLimit(
            settings.query_max_concurrent_per_user,
            what="queries per user",
            code="too_many_concurrent_queries",
        ),
        ingest_slots=ConcurrencyLimit(
            settings.max_concurrent_ingests_per_user,
            what="row loads per user (MAX_CONCURRENT_INGESTS_PER_USER)",
            code="too_many_ingests",
        ),
        query_statements=query_service.statement_cache(settings),
        query_check_threads=query_service.check_threads(),
        events=analytics.writer if analytics is not None else LoggingEventSink(),
        analytics=analytics,
        metrics=metrics,
    )


def create_app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory`` and worker processes: settings from the environment."""
    settings = load_settings()
    configure_logging(settings)
    return create_app(settings)
