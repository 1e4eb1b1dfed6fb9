"""The query domain's own SQL: which of the owner's datasets a statement names (every query),
and whether the PostgreSQL roles users' SQL runs as are usable (at start).

The statements that wrap a user's statement (``BEGIN READ ONLY; SET LOCAL ROLE ...``, the
portal, ``ROLLBACK``) are not here: they go to the driver's connection in the same round
trip as the statement itself, so they live with each backend's executor (``backends``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tablehouse.core.database import READS_ONLY, ReadSession
from tablehouse.core.query_roles import owner_role_pattern
from tablehouse.datasets.models import Schema


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


# A Core statement built once: every query asks it, on the session's connection, skipping
# the ORM.
_DATASETS_NAMED = select(
    Schema.name, Schema.id, Schema.version, Schema.table_name, Schema.fields
).where(
    Schema.owner_id == bindparam("owner_id"),
    func.lower(Schema.name).in_(bindparam("names", expanding=True)),
)


async def datasets_named(
    session: ReadSession, owner_id: uuid.UUID, names: Iterable[str]
) -> list[Source]:
    """The owner's datasets whose names match any of ``names`` ignoring case (the caller
    decides which spelling wins)."""
    connection = await session.connection()
    rows = await connection.execute(
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
