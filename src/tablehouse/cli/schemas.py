"""``tablehouse schemas``: datasets from the command line, through the same services."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from tablehouse.cli.common import fail, in_read_unit_of_work, in_unit_of_work, settings_or_exit
from tablehouse.errors import InvalidInput, TablehouseError

if TYPE_CHECKING:
    from tablehouse.auth.principal import Principal
    from tablehouse.core.database import ReadSession, WriteSession

T = TypeVar("T")
app = typer.Typer(help="List, show and create datasets.", no_args_is_help=True)
OwnerOption = Annotated[
    str, typer.Option("--owner", metavar="EMAIL", help="Email of the dataset's owner")
]


async def _as_owner(session: ReadSession, email: str) -> Principal:
    from tablehouse.auth import service

    user = await service.user_by_email(session, email)
    if user is None:
        raise TablehouseError(f"no user with email {email}")
    return service.acting_as(user)


def _run(unit_of_work: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(unit_of_work)
    except InvalidInput as exc:
        raise fail(
            "; ".join(f"{'.'.join(map(str, loc[1:]))}: {msg}" for loc, msg, _ in exc.problems)
        ) from None
    except TablehouseError as exc:
        raise fail(exc.message) from None


def _reading(work: Callable[[ReadSession], Awaitable[T]]) -> T:
    return _run(in_read_unit_of_work(settings_or_exit(), work))


def _writing(work: Callable[[WriteSession], Awaitable[T]]) -> T:
    return _run(in_unit_of_work(settings_or_exit(), work))


@app.command("list")
def list_schemas(owner: OwnerOption) -> None:
    """The owner's datasets with their row counts."""
    from tablehouse.datasets import service

    async def work(session: ReadSession) -> Table:
        caller = await _as_owner(session, owner)
        counted, total = await service.page(session, caller=caller, limit=10_000, offset=0)
        table = Table(title=f"{total} datasets of {owner}")
        for column in ("name", "version", "fields", "rows", "description"):
            table.add_column(column)
        for dataset, rows in counted:
            table.add_row(
                dataset.name,
                str(dataset.version),
                str(len(dataset.fields)),
                str(rows),
                dataset.description or "",
            )
        return table

    Console().print(_reading(work))


@app.command()
def show(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The dataset's name")],
    owner: OwnerOption,
) -> None:
    """One dataset's definition as JSON."""
    from tablehouse.datasets import service
    from tablehouse.datasets.schemas import SchemaRead

    async def work(session: ReadSession) -> str:
        dataset = await service.load(session, caller=await _as_owner(session, owner), name=name)
        read = SchemaRead.model_validate(dataset).model_copy(
            update={"row_count": await service.row_count(session, dataset)}
        )
        return read.model_dump_json(indent=2)

    typer.echo(_reading(work))


@app.command()
def create(
    file: Annotated[
        Path,
        typer.Option(
            "--file", metavar="FILE", exists=True, dir_okay=False, help="A JSON definition"
        ),
    ],
    owner: OwnerOption,
) -> None:
    """Create a dataset from a JSON definition.

    The file holds what POST /api/v1/schemas takes: a name, a description and fields."""
    from tablehouse.datasets import service
    from tablehouse.datasets.schemas import SchemaCreate

    try:
        spec = SchemaCreate.model_validate(json.loads(file.read_text(encoding="utf-8")))
    except json.JSONDecodeError as exc:
        raise fail(f"{file}: not JSON ({exc})") from None
    except ValidationError as exc:
        raise fail(
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        ) from None
    settings = settings_or_exit()

    async def work(session: WriteSession) -> str:
        caller = await _as_owner(session, owner)
        dataset = await service.create(
            session,
            owner_id=caller.user.id,
            spec=spec,
            max_fields=settings.max_schema_fields,
            query_role=settings.query_database_role,
        )
        return f"created dataset {dataset.name} ({len(dataset.fields)} fields)"

    typer.echo(_writing(work))
