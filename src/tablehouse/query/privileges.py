"""Layer 3 on PostgreSQL: the roles users' SQL runs as must exist and be usable."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tablehouse.core.database import READS_ONLY
from tablehouse.core.query_roles import QueryRoleMissing, owner_role_pattern

__all__ = ["QueryRoleMissing", "check_query_role", "check_role_creation"]

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


async def check_query_role(engine: AsyncEngine, role: str) -> None:
    """Refuse to start without query roles that are safe to switch to: the shared one exists
    and this login may SET ROLE to it, and no query role is a member of another role (so
    none inherits anything). ``engine`` runs users' SQL (the replica's, if there is one)."""
    if engine.dialect.name != "postgresql":
        return
    async with engine.execution_options(**{READS_ONLY: True}).connect() as connection:
        state = (
            await connection.execute(
                _ROLE_STATE, {"role": role, "owner_roles": owner_role_pattern(role)}
            )
        ).one()
    if not state.present or not state.usable:
        raise QueryRoleMissing(
            f"the PostgreSQL role '{role}' (QUERY_DATABASE_ROLE), which users' SQL runs as, "
            "is missing or not granted to this login: run 'tablehouse db upgrade'"
        )
    if state.inherits:
        raise QueryRoleMissing(
            f"the PostgreSQL role '{role}' or an owner's role ({role}_...) is a member of "
            f"another role and would inherit its rights; revoke that membership (\\du {role}*)"
        )


async def check_role_creation(engine: AsyncEngine) -> None:
    """Refuse to start when ``engine``'s login (the one that creates datasets) may not
    create the role of an owner's first dataset."""
    if engine.dialect.name != "postgresql":
        return
    async with engine.execution_options(**{READS_ONLY: True}).connect() as connection:
        creates_roles = await connection.scalar(_CREATES_ROLES)
    if not creates_roles:
        raise QueryRoleMissing(
            "this PostgreSQL login may not create roles, which each owner's first dataset "
            "needs (its queries run as a role of its own): grant it CREATEROLE"
        )
