from __future__ import annotations

import fcntl
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tablehouse.app import create_app
from tablehouse.config import ENV_PREFIX, Settings, environment_variables, load_settings
from tablehouse.core.logging import configure_logging
from tests.support import databases
from tests.support.serving import started

# Analytics fixtures (one chDB path per test process, a database per test) for every module.
pytest_plugins = ["tests.support.analytics_store"]


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


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test``), slow tests first: workers take tests in this order,
    so the long ones start at once and the short ones fill in around them, instead of one
    long test starting last and running alone. A worker's order is the run's order."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@contextmanager
def _one_process_at_a_time(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[None]:
    """A lock shared by the run's xdist workers (their base temp directories' parent)."""
    with (tmp_path_factory.getbasetemp().parent / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


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
    # Each worker migrates a template of its own, one at a time: the first migration on a
    # cluster makes cluster-wide roles, which two at once would both try to create.
    with _one_process_at_a_time(tmp_path_factory, "postgres-template"):
        name = databases.migrated_postgres_template(tmp_path_factory.mktemp("pg-template"))
    yield name
    databases.drop_postgres_database(name)


@pytest.fixture(scope="session")
def postgres_supply(postgres_template: str) -> Iterator[databases.PostgresSupply]:
    supply = databases.PostgresSupply(postgres_template)
    yield supply
    supply.close()


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database of its own for this test, dropped afterwards."""
    if backend == "sqlite":
        yield databases.copy_sqlite(request.getfixturevalue("sqlite_template"), tmp_path)
        return
    supply: databases.PostgresSupply = request.getfixturevalue("postgres_supply")
    name = supply.take()
    yield databases.postgres_url(name)
    supply.give_back(name)


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
