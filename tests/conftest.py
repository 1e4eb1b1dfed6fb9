from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tablehouse.app import create_app
from tablehouse.config import ENV_PREFIX, Settings, environment_variables, load_settings
from tablehouse.core.logging import configure_logging
from tests import databases
from tests.serving import started

# Analytics fixtures (one chDB path per test process, a database per test) for every module.
pytest_plugins = ["tests.analytics_store"]


def pytest_configure(config: pytest.Config) -> None:
    """Tests see only the settings they set: none from the developer's shell."""
    for name in environment_variables():
        os.environ.pop(name, None)
        os.environ.pop(f"{ENV_PREFIX}{name}", None)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        # @pytest.mark.backends("postgresql"): a behaviour only that backend has.
        marker = metafunc.definition.get_closest_marker("backends")
        wanted = (
            databases.BACKENDS
            if marker is None
            else [name for name in databases.BACKENDS if name in marker.args]
        )
        metafunc.parametrize("backend", wanted, scope="session")


@pytest.fixture(scope="session", autouse=True)
def _json_logging() -> None:
    configure_logging(load_settings(log_format="json", log_level="INFO"))


@pytest.fixture(scope="session")
def postgres_available() -> None:
    try:
        databases.postgres_sql("SELECT 1")
    except Exception as exc:
        pytest.fail(
            f"PostgreSQL is required but not reachable at {databases.POSTGRES_ADMIN_URL} "
            f"({type(exc).__name__}: {exc}). Start it, point TEST_POSTGRES_URL at one, "
            "or run only SQLite with TEST_BACKENDS=sqlite."
        )


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return databases.migrated_sqlite_template(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
def postgres_template(
    postgres_available: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    name = databases.migrated_postgres_template(tmp_path_factory.mktemp("pg-template"))
    yield name
    databases.drop_postgres_database(name)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database of its own for this test, dropped afterwards."""
    if backend == "sqlite":
        yield databases.copy_sqlite(request.getfixturevalue("sqlite_template"), tmp_path)
        return
    name = databases.create_postgres_database(template=request.getfixturevalue("postgres_template"))
    yield databases.postgres_url(name)
    databases.drop_postgres_database(name)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return databases.settings_for(database_url, tmp_path / "data")


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with started(app) as http:
        yield http
