"""PostgreSQL roles users' SQL runs as: one per owner, granted only that owner's tables.

A statement that reads datasets runs as its owner's role (``SET LOCAL ROLE``), so the
database itself refuses another owner's table, whatever got past the guard. A statement that
reads no dataset runs as the shared query role (``QUERY_DATABASE_ROLE``), which is granted
no dataset table at all.

Role names are cluster-wide. An owner's role is named after the owner's id (a random UUID),
so two owners never share one, in this database or in any other of the cluster. Two
databases share a role only when they hold the same account (one copied from the other):
privileges belong to one database, so in each the role still reaches only that owner's
tables there. Every owner role is NOLOGIN NOINHERIT, a member of no other role, and granted
to the application's login, which switches to it per query.

Making a role needs a login with CREATEROLE; without it, nothing falls back to a role that
could read every owner's tables: the migration and start-up refuse, and a new owner's first
dataset is refused with a message saying what to grant.
"""

from __future__ import annotations

import re
import uuid

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from tablehouse.errors import ServiceUnavailable

# The shared role's name is cut to this, so "<base>_<32 hex digits>" fits PostgreSQL's 63.
BASE_LENGTH = 30
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class QueryRoleMissing(ServiceUnavailable):
    code = "query_role_missing"


def owner_role(base: str, owner_id: uuid.UUID) -> str:
    """The role ``owner_id``'s statements run as; ``base`` is QUERY_DATABASE_ROLE."""
    return f"{base[:BASE_LENGTH]}_{owner_id.hex}"


def owner_role_pattern(base: str) -> str:
    """A regular expression (PostgreSQL's) matching every owner role of ``base``."""
    return f"^{base[:BASE_LENGTH]}_[0-9a-f]{{32}}$"


def _checked(role: str) -> str:
    # Names are made from settings validated by pattern and a UUID; checked again because
    # they are written into SQL below.
    if not _NAME.fullmatch(role):
        raise ValueError(f"invalid role name {role!r}")
    return role


# One round trip. Only an owner's first dataset changes anything, and those are made one at
# a time (a transaction lock): catalog rows such as the schema's ACL cannot be updated by two
# transactions at once ("tuple concurrently updated"). The role is made NOLOGIN NOINHERIT,
# may use the current schema as the shared role may, and is granted to this login so it can
# switch to it (PostgreSQL 16 asks for the SET option; 15 has only membership). A role made
# meanwhile from another database (a copy holding the same account) raises duplicate errors.
_ENSURE = """
DO $$
DECLARE
    can_set text := CASE WHEN current_setting('server_version_num')::int >= 160000
        THEN 'SET' ELSE 'MEMBER' END;
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
        IF has_schema_privilege('{role}', current_schema(), 'USAGE')
            AND pg_has_role(current_user, '{role}', can_set) THEN
            RETURN;
        END IF;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('tablehouse.query_roles'));
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
        BEGIN
            CREATE ROLE {role} NOLOGIN NOINHERIT;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE insufficient_privilege USING MESSAGE =
                    'cannot create the query role "{role}": '
                    || current_user || ' may not create roles';
        END;
    END IF;
    IF NOT has_schema_privilege('{role}', current_schema(), 'USAGE') THEN
        BEGIN
            EXECUTE 'GRANT USAGE ON SCHEMA ' || quote_ident(current_schema()) || ' TO {role}';
        EXCEPTION WHEN insufficient_privilege THEN NULL;
        END;
    END IF;
    IF NOT pg_has_role(current_user, '{role}', can_set) THEN
        EXECUTE 'GRANT {role} TO ' || quote_ident(current_user);
    END IF;
END $$
"""

# Privileges live in each database: this database's are taken back first (one change at a
# time, as in _ENSURE), then the role goes, unless another database (a copy holding the same
# account) still grants it something, or this login may not drop roles; either way it can
# read nothing here.
_DROP = """
DO $$
DECLARE
    target text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('tablehouse.query_roles'));  -- as _ENSURE
    FOR target IN
        SELECT c.oid::regclass::text FROM pg_class c, aclexplode(c.relacl) AS acl
        WHERE acl.grantee = '{role}'::regrole
    LOOP
        EXECUTE 'REVOKE ALL ON TABLE ' || target || ' FROM {role}';
    END LOOP;
    FOR target IN
        SELECT n.nspname FROM pg_namespace n, aclexplode(n.nspacl) AS acl
        WHERE acl.grantee = '{role}'::regrole
    LOOP
        EXECUTE 'REVOKE ALL ON SCHEMA ' || quote_ident(target) || ' FROM {role}';
    END LOOP;
    BEGIN
        DROP ROLE {role};
    EXCEPTION WHEN dependent_objects_still_exist OR insufficient_privilege THEN
        RAISE WARNING 'kept role {role}: %', SQLERRM;
    END;
END $$
"""


def ensure(connection: Connection, role: str) -> None:
    """Make ``role`` (an owner role) if it is missing and let this login switch to it."""
    try:
        connection.exec_driver_sql(_ENSURE.format(role=_checked(role)))
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != "42501":  # insufficient_privilege
            raise
        raise QueryRoleMissing(
            "datasets cannot be created now: the database login may not create the role a "
            "new owner's queries run as; an administrator must grant it CREATEROLE"
        ) from None


def grant_select(connection: Connection, role: str, table_name: str) -> None:
    preparer = connection.dialect.identifier_preparer
    connection.exec_driver_sql(
        f"GRANT SELECT ON TABLE {preparer.quote_identifier(table_name)} TO {_checked(role)}"
    )


def revoke_select(connection: Connection, role: str, table_name: str) -> None:
    preparer = connection.dialect.identifier_preparer
    connection.exec_driver_sql(
        f"REVOKE SELECT ON TABLE {preparer.quote_identifier(table_name)} FROM {_checked(role)}"
    )


def drop(connection: Connection, role: str) -> None:
    """Take back what ``role`` holds in this database, and drop it where it holds no more."""
    connection.exec_driver_sql(_DROP.format(role=_checked(role)))
