"""``tablehouse query``: run SQL as a user, through the same checks as POST /query, and
log it in the query log as the API does (``source`` cli)."""

from __future__ import annotations

import asyncio
import csv
import sys
from typing import TYPE_CHECKING, Annotated, Any, Literal

import orjson
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tablehouse.cli.common import fail, settings_or_exit
from tablehouse.errors import InvalidInput, TablehouseError

if TYPE_CHECKING:
    from tablehouse.config import Settings
    from tablehouse.core.events import Event, EventSink

OutputFormat = Literal["table", "csv", "json", "ndjson"]
FORMATS: tuple[OutputFormat, ...] = ("table", "csv", "json", "ndjson")


def _parameter(text: str) -> tuple[str, Any]:
    """``name=value``; the value is read as JSON when it is JSON (42, true, null, "x")."""
    name, equals, raw = text.partition("=")
    if not equals or not name:
        raise fail(f"--param {text!r}: expected name=value")
    try:
        value: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = raw
    if isinstance(value, dict | list):
        raise fail(
            f"--param {name}: a parameter takes one value, not a JSON {type(value).__name__}"
        )
    return name, value


def query(
    sql: Annotated[str, typer.Argument(help="One read-only statement over the user's datasets")],
    as_user: Annotated[
        str, typer.Option("--as", metavar="EMAIL", help="Email of the user to run it as")
    ],
    output: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="[table|csv|json|ndjson]",
            help="table; csv (a header row); json (the API's answer); ndjson (an object a row)",
            case_sensitive=False,
        ),
    ] = "table",
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", metavar="NAME=VALUE", help="A value for :name; repeatable"),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(metavar="N", help="At most this many rows", min=1)
    ] = None,
    timeout_ms: Annotated[
        int | None, typer.Option(metavar="MS", help="Stop after this long", min=1)
    ] = None,
) -> None:
    """Run SQL as a user and print the answer (the same rules and limits as the API).

    The query is logged like the API's, with source cli."""
    from tablehouse.core.events import CollectingEventSink

    chosen = output.lower()
    if chosen not in FORMATS:
        raise fail(f"--format {output!r}: expected table, csv, json or ndjson")
    settings = settings_or_exit()
    body: dict[str, Any] = {"sql": sql, "params": dict(_parameter(p) for p in param or [])}
    if limit is not None:
        body["limit"] = limit
    if timeout_ms is not None:
        body["timeout_ms"] = timeout_ms
    events = CollectingEventSink()
    refused: typer.Exit | None = None
    try:
        document = asyncio.run(_answer(settings, as_user, body, events))
    except InvalidInput as exc:
        refused = fail("; ".join(f"{loc[-1]}: {msg}" for loc, msg, _ in exc.problems))
    except TablehouseError as exc:
        refused = fail(f"{exc.message} ({exc.code})")
    else:
        _print(document, chosen)
    # After the answer is out: opening the store takes a moment the user need not wait for.
    _log(settings, events.events)
    if refused is not None:
        raise refused from None


def _log(settings: Settings, events: list[Event]) -> None:
    """Into the query log: directly, or through the spool of a server holding the store."""
    from tablehouse.analytics.handoff import hand_off

    if not events or not settings.analytics_enabled:
        return
    handed = asyncio.run(hand_off(settings, events))
    if handed.lost:
        _warn(f"this query could not be logged: {handed.error}")
    elif handed.spooled and not handed.held_elsewhere:
        _warn(
            f"the analytics store did not answer ({handed.error}); this query's log entry "
            "waits in the spool for the server or 'tablehouse analytics replay'"
        )


def _warn(message: str) -> None:
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"warning: {message}", markup=False)


async def _answer(
    settings: Settings, email: str, body: dict[str, Any], events: EventSink
) -> dict[str, Any]:
    from pydantic import ValidationError

    from tablehouse.auth import repository
    from tablehouse.auth.accounts import normalise_email
    from tablehouse.auth.principal import ALL_SCOPES, Principal
    from tablehouse.core.database import read_uow
    from tablehouse.query import service
    from tablehouse.query.dependencies import standalone_target
    from tablehouse.query.schemas import QueryRequest

    try:
        request = QueryRequest.model_validate(body)
    except ValidationError as exc:
        raise TablehouseError(exc.errors()[0]["msg"], code="invalid_request") from None
    async with (
        standalone_target(settings, events, source="cli") as (sessions, target),
        read_uow(sessions) as session,
    ):
        user = await repository.user_by_email(session, normalise_email(email))
        if user is None or not user.is_active:
            raise TablehouseError(f"no active user with email {email}", code="unknown_user")
        caller = Principal(user=user, scopes=ALL_SCOPES)
        document = await service.answer(session, caller=caller, request=request, target=target)
    parsed: dict[str, Any] = orjson.loads(document)
    return parsed


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list | bool):
        return orjson.dumps(value).decode()
    return str(value)


def _print(document: dict[str, Any], output: OutputFormat) -> None:
    names = [column["name"] for column in document["columns"]]
    if output == "json":
        sys.stdout.write(orjson.dumps(document).decode() + "\n")
    elif output == "ndjson":
        for row in document["rows"]:
            sys.stdout.write(orjson.dumps(dict(zip(names, row, strict=True))).decode() + "\n")
    elif output == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([_cell(value) for value in row] for row in document["rows"])
    else:
        # Text, not str: a value such as "[red]" is data, never rich markup.
        table = Table()
        for name in names:
            table.add_column(Text(name))
        for row in document["rows"]:
            table.add_row(*(Text(_cell(value)) for value in row))
        Console(highlight=False).print(table)
    # One line at most on stderr: the figures beside a table, and a cut answer in any format.
    count = document["row_count"]
    stats = f"{count} row(s) in {document['stats']['execution_time_ms']} ms"
    cut = f"truncated: more rows exist than the {count} shown (see --limit)"
    if document["truncated"]:
        _note(f"{stats}; {cut}" if output == "table" else cut)
    elif output == "table":
        _note(stats)


def _note(line: str) -> None:
    Console(stderr=True, highlight=False, soft_wrap=True).print(line, markup=False)
