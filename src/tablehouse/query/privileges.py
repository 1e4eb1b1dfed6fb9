"""Layer 3 on PostgreSQL: the role users' SQL runs as must exist and be usable."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tablehouse.core.database import READS_ONLY
from tablehouse.errors import ServiceUnavailable

_ROLE_STATE = text("""
SELECT
    EXISTS (SELECT FROM pg_roles WHERE rolname = :role) AS present,
    EXISTS (
        SELECT FROM pg_roles
        WHERE rolname = :role AND pg_has_role(current_user, oid, 'MEMBER')
    ) AS usable,
    EXISTS (
        SELECT FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member
        WHERE r.rolname = :role
    ) AS inherits
""")


class QueryRoleMissing(ServiceUnavailable):
    code = "query_role_missing"


async def check_query_role(engine: AsyncEngine, role: str) -> None:
    """Refuse to start without a query role that is safe to switch to: it exists, this
    login may SET ROLE to it, and it is a member of no other role (so it inherits nothing)."""
    if engine.dialect.name != "postgresql":
        return
    async with engine.execution_options(**{READS_ONLY: True}).connect() as connection:
        state = (await connection.execute(_ROLE_STATE, {"role": role})).one()
    if not state.present or not state.usable:
        raise QueryRoleMissing(
            f"the PostgreSQL role '{role}' (QUERY_DATABASE_ROLE), which users' SQL runs as, "
            "is missing or not granted to this login: run 'tablehouse db upgrade'"
        )
    if state.inherits:
        raise QueryRoleMissing(
            f"the PostgreSQL role '{role}' is a member of another role and would inherit its "
            f"rights; revoke that membership (\\du {role} shows it)"
        )
