"""Schemathesis against the app's own OpenAPI document, in-process, on each backend.

Every operation gets generated requests, valid and invalid, sent as a signed-in user who owns
a dataset (so the dataset's name in paths leads somewhere), and every response must pass every
check: no 5xx, only documented status codes and content types, bodies matching the documented
schema, invalid input refused, authentication not ignored. ``FUZZ_EXAMPLES`` sets the examples
per operation: a fixed budget in ``make test``, a bigger one in ``make fuzz``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok
from schemathesis.generation.case import Case as GenericCase
from schemathesis.generation.modes import GenerationMode
from schemathesis.python import asgi
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi import checks as openapi_checks

from tablehouse.analytics.store import StoreTarget
from tablehouse.app import create_app
from tablehouse.config import Settings
from tests import accounts
from tests.query_helpers import CUSTOMERS
from tests.test_analytics_api import with_analytics

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
OWNER = "fuzz-owner@example.com"
DATASET = str(CUSTOMERS["name"])
SEED_ROWS = [{"id": 1, "name": "Ada", "city": "London"}, {"id": 2, "name": "Grace", "city": None}]

# Everything schemathesis can judge from one response, plus the two that need a stateful
# recorder (use after free, resource availability), which only act when one is present.
Operation = APIOperation[Any, Any, Any, Any]
Case = GenericCase[Any]

CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
    openapi_checks.missing_required_header,
    openapi_checks.unsupported_method,
    openapi_checks.ignored_auth,
    openapi_checks.use_after_free,
    openapi_checks.ensure_resource_availability,
]


@dataclass
class FuzzTarget:
    app: FastAPI
    client: asgi.ASGIClient
    headers: dict[str, str] | None = None

    def signed_in(self) -> dict[str, str]:
        if self.headers is None:
            response = self.client.post(
                "/api/v1/auth/login", json={"email": OWNER, "password": accounts.PASSWORD}
            )
            assert response.status_code == 200, response.text
            self.headers = accounts.bearer(response.json()["access_token"])
        return self.headers

    def restore(self, case: Case, status: int) -> None:
        """Undo what a generated case did to the fixture's state: a logout (or anything
        that answered 401) ends the session; a deleted dataset is defined again."""
        if status == 401 or case.path.startswith("/api/v1/auth/logout"):
            self.headers = None
        if case.method == "DELETE" and case.path == "/api/v1/schemas/{name}" and status == 204:
            created = self.client.post("/api/v1/schemas", json=CUSTOMERS, headers=self.signed_in())
            assert created.status_code == 201, created.text


async def _prepare(app: FastAPI) -> None:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        tokens = await accounts.signed_up(http, OWNER)
        headers = accounts.bearer(tokens["access_token"])
        created = await http.post("/api/v1/schemas", json=CUSTOMERS, headers=headers)
        assert created.status_code == 201, created.text
        loaded = await http.post(f"/api/v1/schemas/{DATASET}/rows", json=SEED_ROWS, headers=headers)
        assert loaded.status_code == 201, loaded.text


@pytest.fixture
def fuzz_target(
    settings: Settings, analytics_target: StoreTarget, tmp_path: Path
) -> Iterator[FuzzTarget]:
    # Analytics on, so the history and analytics endpoints answer from a real chDB.
    settings = with_analytics(settings, analytics_target, tmp_path / "spool")
    asyncio.run(_prepare(create_app(settings)))
    # A new app for schemathesis: its lifespan runs on schemathesis's own event loop thread.
    app = create_app(settings)
    try:
        with asgi.get_client(cast("asgi.ASGIApp", app)) as client:
            yield FuzzTarget(app, client)
    finally:
        asgi.shutdown_lifespans()


def _operations(app: FastAPI) -> list[Operation]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the app's own document must be valid
        operations.append(result.ok())
    return operations


def _fuzz(operation: Operation, target: FuzzTarget, mode: GenerationMode) -> None:
    # Positive cases name the owned dataset, so they reach its rows; negative ones keep
    # whatever name was generated.
    pinned = {"name": DATASET} if mode is GenerationMode.POSITIVE else None
    names = {parameter.name for parameter in operation.path_parameters}
    strategy = operation.as_strategy(
        mode, path_parameters=pinned if pinned and "name" in names else None
    )

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Case) -> None:
        response = case.call(session=target.client, headers=target.signed_in())
        try:
            case.validate_response(response, checks=CHECKS, headers=target.signed_in())
        finally:
            target.restore(case, response.status_code)

    run()


@pytest.mark.parametrize("mode", list(GenerationMode), ids=str)
def test_every_operation_answers_as_documented(
    fuzz_target: FuzzTarget, mode: GenerationMode
) -> None:
    failures: dict[str, str] = {}
    for operation in _operations(fuzz_target.app):
        if mode is GenerationMode.NEGATIVE and not list(operation.iter_parameters()):
            continue  # nothing to make invalid
        try:
            _fuzz(operation, fuzz_target, mode)
        except (Exception, BaseExceptionGroup) as exc:  # collected, then reported together
            failures[operation.label] = f"{type(exc).__name__}: {exc}"
    report = "\n\n".join(f"=== {label}\n{text}" for label, text in failures.items())
    assert not failures, f"{len(failures)} operation(s) failed:\n{report}"
