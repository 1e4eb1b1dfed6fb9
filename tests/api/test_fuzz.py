"""Schemathesis against the app's own OpenAPI document, in-process, on each backend.

Every operation gets generated requests, valid and invalid, sent as a signed-in user who owns
a dataset (so the dataset's name in paths leads somewhere), and every response must pass every
check: no 5xx, only documented status codes and content types, bodies matching the documented
schema, invalid input refused, valid input accepted (less the refusals the document cannot
state, BEYOND_THE_DOCUMENT), authentication not ignored, and a 405's ``Allow`` naming every
documented method. Requests come from schemathesis's fuzzing phase (``FUZZ_EXAMPLES`` per
operation: a fixed budget in ``make test``, a bigger one in ``make fuzz``) and from its
coverage phase (boundary values, and the methods a path does not serve, OPTIONS among them).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok
from schemathesis.core.transport import Response
from schemathesis.generation.case import Case as GenericCase
from schemathesis.generation.modes import GenerationMode
from schemathesis.python import asgi
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi import checks as openapi_checks

from tablehouse.analytics.service import MAX_BUCKETS
from tablehouse.analytics.store.client import StoreTarget
from tablehouse.app import create_app
from tablehouse.config import Settings
from tests.support import accounts
from tests.support.analytics_store import with_analytics
from tests.support.query_helpers import CUSTOMERS
from tests.support.serving import started

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
OWNER = "fuzz-owner@example.com"
DATASET = str(CUSTOMERS["name"])
SEED_ROWS = [{"id": 1, "name": "Ada", "city": "London"}, {"id": 2, "name": "Grace", "city": None}]

# Everything schemathesis can judge from one response, plus the two that need a stateful
# recorder (use after free, resource availability), which only act when one is present.
Operation = APIOperation[Any, Any, Any, Any]
Case = GenericCase[Any]

Refusal = Callable[[Case, Response], bool]


def _problems(response: Response) -> set[str]:
    """The codes a refusal gives: each problem's type in a validation error, else its code."""
    try:
        body = json.loads(response.content)
    except ValueError:
        return {"(not JSON)"}
    if body.get("code") == "validation_error":
        return {str(problem.get("type")) for problem in body["detail"]}
    return {str(body.get("code"))}


def refused(status: int, *codes: str) -> Refusal:
    """Every problem of the answer is one of ``codes``."""
    return lambda _case, response: (
        response.status_code == status and _problems(response) <= set(codes)
    )


def _moment(text: object) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _from_not_before_to(case: Case, response: Response) -> bool:
    query = case.query or {}
    since = _moment(query["from"]) if "from" in query else None
    until = _moment(query["to"]) if "to" in query else datetime.now(UTC)
    if since is None or until is None:
        return False
    return since >= until and refused(422, "value_error")(case, response)


def _too_many_buckets(case: Case, response: Response) -> bool:
    return (
        "from" in (case.query or {})
        and refused(422, "value_error")(case, response)
        and f"at most {MAX_BUCKETS} buckets" in response.text
    )


def _expires_in_the_past(case: Case, response: Response) -> bool:
    body = case.body if isinstance(case.body, dict) else {}
    expires = _moment(body["expires_at"]) if body.get("expires_at") else None
    return (
        expires is not None
        and expires <= datetime.now(UTC)
        and refused(422, "in_the_past")(case, response)
    )


def _field_specs(body: object) -> list[dict[str, Any]]:
    """The field definitions of a body: a dataset's ``fields``, or its ``changes``' fields."""
    if not isinstance(body, dict):
        return []
    fields, changes = body.get("fields"), body.get("changes")
    specs = list(fields) if isinstance(fields, list) else []
    if isinstance(changes, list):
        specs += [change.get("field") for change in changes if isinstance(change, dict)]
    return [spec for spec in specs if isinstance(spec, dict)]


def _names_repeat(case: Case, response: Response) -> bool:
    """Field names are unique ignoring case (the service compares them lowered)."""
    names = [str(spec.get("name")).lower() for spec in _field_specs(case.body)]
    return len(set(names)) < len(names) and refused(422, "duplicate_name")(case, response)


def _default_too_long(case: Case, response: Response) -> bool:
    """A string default longer than the field's max_length (JSON Schema cannot compare)."""
    too_long = any(
        isinstance(spec.get("default"), str)
        # JSON Schema's integers include 1.0, which the server takes as 1.
        and isinstance(spec.get("max_length"), int | float)
        and len(spec["default"]) > spec["max_length"]
        for spec in _field_specs(case.body)
    )
    return too_long and refused(422, "value_error")(case, response)


def either(*rules: Refusal) -> Refusal:
    return lambda case, response: any(rule(case, response) for rule in rules)


# Requests that fit the document and are still refused, each for a reason OpenAPI cannot
# state, with the answer the server gives for it. positive_data_acceptance is waived for
# exactly these answers; every other check still judges the response.
# - Server state: a one-time token that was never issued, the caller's current password,
#   the SQL itself (read-only, over the caller's datasets, its parameters).
# - The dataset's own schema: the document describes the rows of every dataset, so a
#   field, key, filter or order that this dataset (id, name, city) does not have, or a value
#   of the wrong type for a field, is a 422 naming the field; the fuzzer draws names freely.
# - A rule across values: from before to, at most MAX_BUCKETS buckets, an expiry in the
#   future (relative to now), field names that repeat within one definition.
ROWS = either(
    # Which operators suit a field (like for strings, is.true for booleans) is its type's.
    refused(422, "unknown_field", "invalid_value", "invalid_order", "invalid_rows", "bad_operator"),
    # The document gives a CSV body as text, and rows.csv / rows.ndjson bodies as bytes (which
    # generators turn into a file argument); what CSV is (quotes, line ends), or that the
    # bytes are UTF-8 text, it cannot say.
    refused(400, "invalid_csv", "invalid_encoding"),
)


def _sql_refused(_case: Case, response: Response) -> bool:
    return response.status_code == 400


BEYOND_THE_DOCUMENT: dict[str, Refusal] = {
    "POST /api/v1/query": _sql_refused,
    "POST /api/v1/query.csv": _sql_refused,
    "GET /api/v1/auth/verify/confirm": refused(400, "invalid_token"),
    "POST /api/v1/auth/verify/confirm": refused(400, "invalid_token"),
    "POST /api/v1/auth/password-reset/confirm": refused(400, "invalid_token"),
    "PATCH /api/v1/users/me": refused(422, "wrong_password"),
    # A cursor is the "next" of an earlier page; one made up is refused as malformed.
    "GET /api/v1/schemas/{name}/rows": either(ROWS, refused(400, "invalid_cursor")),
    "POST /api/v1/schemas/{name}/rows": ROWS,
    "POST /api/v1/schemas/{name}/rows.csv": ROWS,
    "POST /api/v1/schemas/{name}/rows.ndjson": ROWS,
    "GET /api/v1/schemas/{name}/rows/{key}": ROWS,
    "PATCH /api/v1/schemas/{name}/rows/{key}": ROWS,
    "DELETE /api/v1/schemas/{name}/rows/{key}": ROWS,
    "POST /api/v1/schemas": either(_names_repeat, _default_too_long),
    # Which fields exist, which are the key and how many there are is the dataset's own.
    "PATCH /api/v1/schemas/{name}": either(
        refused(422, "duplicate_name", "unknown_field", "primary_key", "too_many_fields"),
        _default_too_long,
    ),
    "POST /api/v1/auth/api-keys": _expires_in_the_past,
    "GET /api/v1/queries": _from_not_before_to,
    "GET /api/v1/analytics/queries/summary": either(_from_not_before_to, _too_many_buckets),
    "GET /api/v1/analytics/queries/slowest": _from_not_before_to,
    "GET /api/v1/analytics/queries/by-user": _from_not_before_to,
    "GET /api/v1/analytics/metrics": either(_from_not_before_to, _too_many_buckets),
}


def positive_data_acceptance(ctx: Any, response: Response, case: Case) -> bool | None:
    """schemathesis's check, less the refusals listed in BEYOND_THE_DOCUMENT."""
    refusal = BEYOND_THE_DOCUMENT.get(case.operation.label)
    if refusal is not None and refusal(case, response):
        return None
    return openapi_checks.positive_data_acceptance(ctx, response, case)


def allow_header_conformance(ctx: Any, response: Response, case: Case) -> bool | None:
    """schemathesis's check, counting the methods of every documented path the URL fits:
    /schemas/validate is also /schemas/{name}, /users/me also /users/{user_id}, and routing
    serves those methods there (the check only looks at the operation's own path)."""
    if response.request.method == "OPTIONS" and _allowed(response) == _documented(response, case):
        return None
    return openapi_checks.allow_header_conformance(ctx, response, case)


def _allowed(response: Response) -> set[str]:
    values = response.headers.get("allow") or []
    return {m.strip().upper() for value in values for m in value.split(",")} - IMPLICIT


def _documented(response: Response, case: Case) -> set[str]:
    sent = urlsplit(str(response.request.url)).path
    paths: dict[str, dict[str, Any]] = case.operation.schema.raw_schema["paths"]
    return {
        method.upper()
        for template, item in paths.items()
        if _template(template).fullmatch(sent)
        for method in item
    } - IMPLICIT


def _template(path: str) -> re.Pattern[str]:
    parts = re.split(r"\{[^}/]+\}", path)
    return re.compile("[^/]+".join(re.escape(part) for part in parts))


IMPLICIT = {"HEAD", "OPTIONS", ""}


CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
    positive_data_acceptance,
    openapi_checks.missing_required_header,
    openapi_checks.unsupported_method,
    allow_header_conformance,
    openapi_checks.ignored_auth,
    openapi_checks.use_after_free,
    openapi_checks.ensure_resource_availability,
]


@schemathesis.serializer("application/x-ndjson")
def _ndjson(_ctx: Any, value: object) -> bytes:
    # The document gives an NDJSON body as text (a JSON row a line): send the text as it is.
    text = value if isinstance(value, str) else json.dumps(value)
    return text.encode("utf-8", "surrogatepass")


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
    async with started(app) as http:
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
        _send(case, target)

    run()


def _cover(operation: Operation, target: FuzzTarget, mode: GenerationMode) -> None:
    """schemathesis's coverage phase: boundary values of every parameter and body, and, in
    negative mode, each method the path does not serve (which is where a 405 is checked)."""
    config = operation.schema.config.generation_for(operation=operation, phase="coverage")
    for case in operation.schema.iter_coverage_cases(
        operation, generation_modes=[mode], generation_config=config
    ):
        if mode is GenerationMode.POSITIVE and "name" in (case.path_parameters or {}):
            case.path_parameters = {**case.path_parameters, "name": DATASET}
        _send(case, target)


def _send(case: Case, target: FuzzTarget) -> None:
    response = case.call(session=target.client, headers=target.signed_in())
    try:
        case.validate_response(response, checks=CHECKS, headers=target.signed_in())
    finally:
        target.restore(case, response.status_code)


def _has_input(operation: Operation) -> bool:
    """Whether a request to it has anything to make invalid."""
    return bool(operation.body) or any(True for _ in operation.iter_parameters())


@pytest.mark.slow  # every operation, 25 examples each: a minute on 2 cores
@pytest.mark.parametrize("mode", list(GenerationMode), ids=str)
def test_every_operation_answers_as_documented(
    fuzz_target: FuzzTarget, mode: GenerationMode
) -> None:
    failures: dict[str, str] = {}
    for operation in _operations(fuzz_target.app):
        try:
            if mode is GenerationMode.POSITIVE or _has_input(operation):
                _fuzz(operation, fuzz_target, mode)
            _cover(operation, fuzz_target, mode)
        except (Exception, BaseExceptionGroup) as exc:  # collected, then reported together
            failures[operation.label] = f"{type(exc).__name__}: {exc}"
    report = "\n\n".join(f"=== {label}\n{text}" for label, text in failures.items())
    assert not failures, f"{len(failures)} operation(s) failed:\n{report}"
