"""The query domain's own SQL: which of the owner's datasets a statement names (every query),
and whether the PostgreSQL roles users' SQL runs as are usable (at start).

The statements that wrap a user's statement (``BEGIN READ ONLY; SET LOCAL ROLE ...``, the
portal, the rows read, ``ROLLBACK``) are not here: they go to the driver's connection
around the statement itself, so they live with each backend's executor (``backends``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import ARRAY, JSON, Text, Uuid, any_, bindparam, column, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tablehouse.core import driver
from tablehouse.core.database import READS_ONLY, Backend, ReadSession
from tablehouse.core.driver import FixedStatement
from tablehouse.core.query_roles import owner_role_pattern
from tablehouse.datasets.models import Dataset


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


# Every query asks this: a fixed statement, sent through the driver (core.driver). The
# names go in as one array (PostgreSQL) or one JSON list (SQLite), so the statement is the
# same whatever their number.
_DATASET_COLUMNS = (Dataset.name, Dataset.id, Dataset.version, Dataset.table_name, Dataset.fields)
_OWNERS = Dataset.owner_id == bindparam("owner_id", type_=Uuid())
_DATASETS_NAMED = FixedStatement(
    {
        Backend.POSTGRESQL: select(*_DATASET_COLUMNS).where(
            _OWNERS,
            func.lower(Dataset.name) == any_(bindparam("names", type_=ARRAY(Text))),
        ),
        Backend.SQLITE: select(*_DATASET_COLUMNS).where(
            _OWNERS,
            func.lower(Dataset.name).in_(
                select(column("value")).select_from(func.json_each(bindparam("names", type_=JSON)))
            ),
        ),
    }
)


async def datasets_named(
    session: ReadSession, owner_id: uuid.UUID, names: Iterable[str]
) -> list[Source]:
    """The owner's datasets whose names match any of ``names`` ignoring case (the caller
    decides which spelling wins)."""
    rows = await driver.fetch(
        session,
        _DATASETS_NAMED,
        {"owner_id": owner_id, "names": sorted({name.lower() for name in names})},
    )
    return [
        Source(
            name,
            schema_id,
            version,
            table_name,
            tuple((str(spec["name"]), str(spec["type"])) for spec in fields),
        )
        for name, schema_id, version, table_name, fields in rows
    ]


@dataclass(frozen=True, slots=True)
class RoleState:
    present: bool  # the shared query role exists
    usable: bool  # and this login may SET ROLE to it
    inherits: bool  # some query role is a member of another role


_ROLE_STATE = text("""
SELECT
    EXISTS (SELECT FROM pg_roles WHERE rolname = :role) AS present,
    EXISTS (
        SELECT FROM pg_roles
        WHERE rolname = :role AND pg_has_role(current_user, oid, 'MEMBER')
    ) AS usable,
    EXISTS (
        SELECT FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member
        WHERE r.rolname = :role OR r.rolname ~ :owner_roles
    ) AS inherits
""")
_CREATES_ROLES = text("SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user")


async def query_role_state(engine: AsyncEngine, role: str) -> RoleState:
    """PostgreSQL only: the shared query role ``role`` and the owners' roles made from it."""
    async with engine.execution_options(**{READS_ONLY: True}).connect() as connection:
        state = (
            await connection.execute(
                _ROLE_STATE, {"role": role, "owner_roles": owner_role_pattern(role)}
            )
        ).one()
    return RoleState(present=state.present, usable=state.usable, inherits=state.inherits)


async def login_creates_roles(engine: AsyncEngine) -> bool:
    """PostgreSQL only: whether ``engine``'s login may create roles."""
    async with engine.execution_options(**{READS_ONLY: True}).connect() as connection:
        return bool(await connection.scalar(_CREATES_ROLES))
