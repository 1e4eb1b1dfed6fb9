"""The app in the test process: built from settings, started (its lifespan) and spoken to
over httpx's ASGI transport. The ``app`` and ``client`` fixtures (conftest) use it; a test
that needs other settings, or two apps, calls ``serving`` itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from tablehouse.api.runtime import Runtime
from tablehouse.app import create_app
from tablehouse.config import Settings

BASE_URL = "http://test"


@asynccontextmanager
async def started(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` started, and a client speaking to it; stopped when the block ends."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as http,
    ):
        yield http


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app built from ``settings``, started, and a client speaking to it."""
    app = create_app(settings)
    async with started(app) as http:
        yield app, http


def runtime_of(app: FastAPI) -> Runtime:
    """What the started app's lifespan built."""
    runtime = app.state.runtime
    assert isinstance(runtime, Runtime)
    return runtime
