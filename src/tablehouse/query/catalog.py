"""Which of the caller's datasets a statement names, and the tables behind them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from tablehouse.auth.principal import Principal
from tablehouse.datasets import repository
from tablehouse.errors import NotFound


@dataclass(frozen=True, slots=True)
class Source:
    """A dataset as a statement sees it. Id and version key the statement cache: a dataset
    dropped and made again, or changed, is never served from an older rendering."""

    name: str
    schema_id: uuid.UUID
    version: int
    table_name: str
    # (name, type) of each field, in the table's order; the version stands for them in keys.
    fields: tuple[tuple[str, str], ...] = field(default=(), compare=False)


async def resolve(
    session: AsyncSession, caller: Principal, names: frozenset[str]
) -> dict[str, Source]:
    """Each name as written → the caller's dataset. A name matches exactly, or else ignoring
    case when only one dataset fits (SQL folds unquoted names). Unknown or out-of-reach names
    are 404, all named at once."""
    if not names:
        return {}
    found = await repository.tables_named(session, caller.user.id, names)
    sources: dict[str, Source] = {}
    missing: list[str] = []
    for written in sorted(names):
        candidates = [row for row in found if row[0] == written] or [
            row for row in found if row[0].lower() == written.lower()
        ]
        if len(candidates) != 1 or not caller.may_use_dataset(candidates[0][0]):
            missing.append(written)
            continue
        name, schema_id, version, table_name, fields = candidates[0]
        sources[written] = Source(
            name,
            schema_id,
            version,
            table_name,
            tuple((str(spec["name"]), str(spec["type"])) for spec in fields),
        )
    if missing:
        listed = ", ".join(f"'{name}'" for name in missing)
        raise NotFound(
            f"no dataset named {listed}; a query may read only your own datasets, "
            "by the names you gave them",
            code="schema_not_found",
        )
    return sources
